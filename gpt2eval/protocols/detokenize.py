"""De-tokenizers for the word-level test sets (PTB, WikiText; CBT and One Billion Word at the end).

The GPT-2 paper scores PTB, WikiText-2 and WikiText-103 after running
"invertible de-tokenizers" that undo the datasets' tokenization artifacts
(spaces around punctuation, `@-@` number splitting, ...), because GPT-2 was
trained on ordinary web text and pays a perplexity penalty for odd spacing.
Perplexity is then normalised by the number of ORIGINAL dataset tokens, which
`count_original_tokens` computes.

Design rules shared by both de-tokenizers:

* Line structure is kept: the output has exactly as many lines as the input,
  so per-line token counts of the original file still line up.
* They are token-preserving: apart from spaces, the only characters removed
  are the `@` of WikiText's `@-@`, `@,@`, `@.@` markers. Every decision is
  "space or no space between two tokens" (plus re-joining the markers), so
  the text keeps every original token, which is what "invertible" asks for;
  the tests check this over the whole test files.
* Placeholders are kept as literal text. The paper reports different
  perplexities for WikiText-2 and WikiText-103, which differ only in `<unk>`,
  so it scored the files with `<unk>` in place; PTB's `N` and `<unk>` are
  kept by the same default (nothing suggests the paper replaced them).
"""

from __future__ import annotations

# --- WikiText ---------------------------------------------------------------

# WikiText splits hyphens, thousands separators and decimal points inside
# words/numbers into separate `@x@` tokens: "mid @-@ 1950s", "1 @,@ 000".
_WIKITEXT_MARKERS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}

# Tokens that attach to the previous token (no space before them).
_ATTACH_LEFT = {",", ".", ";", ":", "!", "?", "%", ")", "]", "...", "”", "’"}
# Tokens that attach to the next token (no space after them).
_ATTACH_RIGHT = {"(", "[", "“"}
# Currency/number signs glued to a following number: "$ 3" -> "$3".
_NUMBER_PREFIXES = {"$", "£", "¥", "₱", "₩", "#"}
# How far ahead (in tokens) a closing `'` may be for a quoted phrase.
_QUOTE_SPAN = 8
# Word endings split off after a curly apostrophe: "don ’ t" -> "don’t".
_CURLY_CLITICS = {"s", "t", "re", "ve", "m", "ll", "d"}


def _split_heading(tokens: list[str]) -> tuple[int, list[str]] | None:
    """Return (level, title tokens) if the line is a `= = Title = =` heading."""
    n = len(tokens)
    lead = 0
    while lead < n and tokens[lead] == "=":
        lead += 1
    trail = 0
    while trail < n - lead and tokens[n - 1 - trail] == "=":
        trail += 1
    # Table legends such as " = National record " have no closing run, so
    # require equal runs on both sides and a non-empty title.
    if lead == 0 or lead != trail or lead + trail >= n:
        return None
    return lead, tokens[lead : n - trail]


def _join_wikitext_tokens(tokens: list[str]) -> str:
    """Decide, for every pair of neighbouring tokens, whether to keep a space.

    Straight quotes carry no open/close information, so they are paired
    left to right within the line: an odd-numbered `"` opens (glues to the
    next token), an even-numbered one closes (glues to the previous token).
    A lone `'` after a word ending in "s" is read as a plural possessive
    ("ships ' guns" -> "ships' guns") unless a single quote is open or
    another lone `'` follows within a few tokens ("as ' floating ' guns"
    is a quoted phrase, not "as'").
    """
    out: list[str] = []
    double_open = single_open = False
    glue_next = False  # the previous token was an opener
    last_was_open_quote = False
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        attach = glue_next
        glue_next = False
        last_was_open_quote = False
        if tok == '"':
            if double_open:
                attach = True
            else:
                glue_next = last_was_open_quote = True
            double_open = not double_open
        elif tok == "'":
            if single_open:
                attach, single_open = True, False
            elif prev[-1:] in ("s", "S") and "'" not in tokens[i + 2 : i + _QUOTE_SPAN]:
                attach = True
            else:
                glue_next = last_was_open_quote = single_open = True
        elif tok in _ATTACH_LEFT:
            attach = True
        elif tok in _ATTACH_RIGHT:
            glue_next = True
        elif tok[0] == "'" and len(tok) > 1 and tok[1].isalpha():
            # Split-off clitics and elisions: "Teddy 's", "don 't",
            # "d 'affaires", "Chang 'an".
            attach = True
        elif prev == "’" and tok in _CURLY_CLITICS:
            attach = True
        elif prev in _NUMBER_PREFIXES and tok[0].isdigit():
            attach = True
        if out and not attach:
            out.append(" ")
        out.append(tok)
    if last_was_open_quote and len(out) > 1 and out[-2] == " ":
        # A quote that opens at the very end of a line has nothing to its
        # right; it closes the text before it instead (drop the space).
        out.pop(-2)
    return "".join(out)


def _merge_between(tokens: list[str]) -> list[str]:
    """Join `a SEP b` into one token where both neighbours decide it.

    Times "3 : 04" -> "3:04", number ranges "1934 – 37" -> "1934–37" and
    slashes "km / h" -> "km/h": the tokenizer split these off, but a spaced
    colon or en dash is also ordinary punctuation, so only digit/word
    neighbours trigger the join.
    """
    merged: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        left = merged[-1][-1:] if merged else ""
        digits = tok in (":", "–") and left.isdigit() and nxt[:1].isdigit()
        slash = tok == "/" and left.isalnum() and nxt[:1].isalnum()
        if digits or slash:
            merged[-1] += tok + nxt
            i += 2
        else:
            merged.append(tok)
            i += 1
    return merged


def _wikitext_line(line: str) -> str:
    for marker, char in _WIKITEXT_MARKERS.items():
        line = line.replace(marker, char)
    tokens = line.split()
    if not tokens:
        return ""  # blank separator line (a single space in the file)
    heading = _split_heading(tokens)
    if heading is None:
        return _join_wikitext_tokens(_merge_between(tokens))
    # MediaWiki markup ("== Career ==") keeps the heading level, so the step
    # stays invertible, and it is how headings look in wiki source text on
    # the web; dropping the "=" runs would lose the level.
    level, title = heading
    bar = "=" * level
    return f"{bar} {_join_wikitext_tokens(_merge_between(title))} {bar}"


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText tokenization, line by line, keeping the line count.

    Examples (between the bars):
      | = = Early life = = |  ->  |== Early life ==|
      | a guest @-@ starring role as " Craig " ( 2004 ) , in Teddy 's Story . |
      ->  |a guest-starring role as "Craig" (2004), in Teddy's Story.|
    Works for both `wiki.test.tokens` and `wiki.test.raw` (same artifacts).
    """
    return "\n".join(_wikitext_line(line) for line in text.split("\n"))


# --- Penn Treebank (Mikolov's preprocessed version) --------------------------

# PTB is lowercased with punctuation removed, so only contractions, the
# possessive apostrophe and currency signs carry tokenization spaces.
# "%" never occurs; contexts like "fell N N on" suggest it became a second
# "N", which cannot be told apart from two numbers, so "N N" is left alone.
_PTB_CLITICS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "'"}


def _ptb_line(line: str, number: str = "N") -> str:
    out: list[str] = []
    prev = ""
    for tok in line.split():
        attach = bool(out) and (
            tok in _PTB_CLITICS
            # "$ N", "c$ N", "hk$ N", "us$ N", and "# N" (pounds sterling).
            or (tok == "N" and (prev.endswith("$") or prev == "#"))
        )
        if out and not attach:
            out.append(" ")
        out.append(number if tok == "N" else tok)
        prev = tok
    return "".join(out)


def ptb_detokenize(text: str) -> str:
    """Undo PTB tokenization, line by line, keeping the line count.

    Example (between the bars):
      | it was n't worth $ N to the company 's investors ' owners |
      ->  |it wasn't worth $N to the company's investors' owners|
    Lowercasing, `N` and `<unk>` are kept: the information to undo them is
    gone, and there is no evidence the paper replaced them.
    """
    return "\n".join(_ptb_line(line) for line in text.split("\n"))


def ptb_detokenize_n_digit(text: str) -> str:
    """`ptb_detokenize`, with every `N` token (PTB's number placeholder) written as the digit 1.

    A variant after Megatron-LM's zero-shot PTB de-tokenizer (tasks/zeroshot_gpt/detokenizer.py),
    which replaces " N " by "1 " (its WikiText one: " N " by " 1 "). Megatron's plain string
    replacement also drops the space before the number and, not overlapping, leaves every second N
    of "N N" alone; here each N token becomes "1" and the spacing is `ptb_detokenize`'s. PTB test
    has no token "1", so the step stays invertible.
      | it was n't worth $ N to N of them |  ->  |it wasn't worth $1 to 1 of them|
    """
    return "\n".join(_ptb_line(line, number="1") for line in text.split("\n"))


# --- Normalisation ----------------------------------------------------------


def count_original_tokens(text: str) -> int:
    """Whitespace tokens plus one `<eos>` per line of the ORIGINAL text.

    This is the standard word-level count (82,430 for PTB test, 245,569 for
    WikiText test). Blank lines still get an `<eos>`; the empty string after
    a final newline is not a line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return sum(len(line.split()) + 1 for line in lines)


# --- Children's Book Test (Stanford CoreNLP's PTB-style tokenization) --------

# CoreNLP escapes brackets and writes quotes LaTeX-style; the books print them as below. A quote's
# direction survives in the spacing (an opening quote glues to the next word, a closing one to
# the previous), so the mapping is as invertible as the tokenization itself.
_CBT_ESCAPES = {"``": '"', "''": '"', "`": "'", "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]",
                "-LCB-": "{", "-RCB-": "}"}
_CBT_ATTACH_LEFT = {",", ".", ";", ":", "?", "!", "''", "-RRB-", "-RSB-", "-RCB-", "--"}
_CBT_ATTACH_RIGHT = {"``", "`", "-LRB-", "-LSB-", "-LCB-", "--"}
# Split-off contractions, compared lower-cased: "king 's", "do n't", "I 'll", "DO N'T".
_CBT_CLITICS = {"'s", "n't", "'ll", "'m", "'d", "'ve", "'re", "'t"}
_CBT_PUNCT = {",", ".", ";", ":", "?", "!", "--", "''"}


def cbt_detokenize(text: str) -> str:
    """Undo CBT's tokenization, keeping the line count (one sentence a line in the books).

    Example (between the bars):
      | ` Oh , do not speak to me of marrying , ' sobbed the king 's son ; `` Do n't ! '' |
      ->  |'Oh, do not speak to me of marrying,' sobbed the king's son; "Don't!"|
    Only spaces change, apart from the escapes above. A `--` dash glues to both neighbours, as
    Project Gutenberg prints it ("word--word"). A lone `'` closes an open single quote (opened by
    a backtick, maybe lines before: the state carries across lines); else, as a line's last token,
    it opens the next sentence's quote (the sentence splitter leaves it there: "... godmother . '"
    then "I know what you have come to tell me , ' said the fairy"; it keeps the space before it,
    and a caller that joins the lines glues it to the next one); else it is a plural possessive
    after a word ending in s ("two days ' journey" -> "days'"); else it closes a quote opened
    before the text seen when it follows punctuation; else it opens a quote.
    """
    out_lines, single_open = [], False
    for line in text.split("\n"):
        out: list[str] = []
        glue_next = False
        prev = ""
        tokens = line.split()
        for i, tok in enumerate(tokens):
            attach = glue_next or tok in _CBT_ATTACH_LEFT or tok.lower() in _CBT_CLITICS
            glue_next = tok in _CBT_ATTACH_RIGHT
            if tok == "`":
                single_open = True
            elif tok == "'":
                if single_open:
                    attach, single_open = True, False
                elif i == len(tokens) - 1 and i > 0:
                    single_open = True
                elif prev[-1:] in ("s", "S") or prev in _CBT_PUNCT:
                    attach = True
                else:
                    glue_next = single_open = True
            if out and not attach:
                out.append(" ")
            out.append(_CBT_ESCAPES.get(tok, tok))
            prev = tok
        out_lines.append("".join(out))
    return "\n".join(out_lines)


# --- One Billion Word benchmark (news, WMT-11 style tokenization) -----------


def one_billion_word_detokenize(text: str) -> str:
    """Undo 1BW's tokenization, line by line, keeping the line count.

    Its tokenization is WikiText's without the `@x@` markers (spaces around punctuation, straight
    quotes, split-off "'s"), plus "n't" split off as PTB does; so the WikiText rules apply, with
    " n't" glued back. Example (between the bars):
      | Mr Barofsky said the lawsuit would send a " powerful message " , and it does n't stop . |
      ->  |Mr Barofsky said the lawsuit would send a "powerful message", and it doesn't stop.|
    """
    out = []
    for line in text.split("\n"):
        tokens: list[str] = []
        for tok in line.split():
            if tok in ("n't", "N'T") and tokens:
                tokens[-1] += tok
            else:
                tokens.append(tok)
        out.append(_join_wikitext_tokens(_merge_between(tokens)) if tokens else "")
    return "\n".join(out)
