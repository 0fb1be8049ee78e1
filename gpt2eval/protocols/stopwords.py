"""English stop words, used by the LAMBADA stop-word filters.

The GPT-2 paper's 63.24% LAMBADA accuracy comes from restricting the
prediction to words that are not stop words. The paper does not name its
list; the usual choice in reproductions is the English list of the NLTK
stopwords corpus, which is written out here as data because the NLTK data
package cannot be downloaded in this environment.

Source: NLTK stopwords corpus, english (the 179-word list returned by
``nltk.corpus.stopwords.words("english")`` in NLTK 3.x), in the
corpus file's order. All entries are lowercase; the apostrophe-less
fragments ("don", "ll", "ve", ...) are there because NLTK's tokenizers split
contractions that way.
"""

_WORDS = """
i me my myself we our ours ourselves you you're you've you'll
you'd your yours yourself yourselves he him his himself she she's her
hers herself it it's its itself they them their theirs themselves what
which who whom this that that'll these those am is are was
were be been being have has had having do does did doing
a an the and but if or because as until while of
at by for with about against between into through during before after
above below to from up down in out on off over under
again further then once here there when where why how all any
both each few more most other some such no nor not only
own same so than too very s t can will just don
don't should should've now d ll m o re ve y ain
aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan
shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
"""

ENGLISH_STOPWORDS: frozenset[str] = frozenset(_WORDS.split())

# cybertronai/bflm's eval_lambada_slow.py writes out a shorter list: NLTK's older 127-word English
# list, i.e. the list above up to "now" without the words that contain an apostrophe (the
# contraction forms and fragments "d", "ll", ..., "wouldn't" came later). Derived, not copied; a
# test checks the 127 words.
_ORDER = _WORDS.split()
BFLM_STOPWORDS: frozenset[str] = frozenset(w for w in _ORDER[: _ORDER.index("now") + 1] if "'" not in w)
