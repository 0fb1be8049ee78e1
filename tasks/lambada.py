"""LAMBADA (OpenAI's version): predict the last word of a passage.

Data: OpenAI's `lambada_test.jsonl` (5,153 passages, detokenized, the file the GPT-2 authors used),
or the hub's EleutherAI/lambada_openai (the same passages). `lambada` reads the file as it is;
`lambada:preprocess=openai` applies the preprocessing one of the authors described after the paper
(openai/gpt-2 issue 131, comment 492786058, the source cybertronai/bflm's `preprocess` cites): curly
double quotes “ and ” become straight ", and the model sees "\\n" + text.strip(). Curly single
quotes ‘ ’ are left alone. 1,622 of the 5,153 passages contain a curly double quote (1,978 some
curly quote), so their tokens change, and the leading newline changes the first token of every
context. bflm's copy also maps the plain-text file's `` and '' to ", which this file does not need
(0 and 1 occurrences; left as they are). Same split, metrics and paper rows either way; the bflm
filter keeps the leading newline in its context.
Context and target are split as lm-evaluation-harness's lambada_openai: `text.rsplit(" ", 1)`,
target = " " + last piece. ppl is exp(mean over passages of -log p(target | context)) (lm-eval).

Which accuracy the paper reports, and how: the paper gives 63.24% for the largest model with a
stop-word filter and 52.66% without it (Section 3.3), and Table 3's ACC row ends in 63.24, so that
row is a *filtered* accuracy. OpenAI released no LAMBADA evaluation code. So:
- compared with the paper's Table 3 row (`lambada/acc`), the two stop-word-filtered accuracies:
  - acc_stopword_filter: decode greedily up to 5 tokens, never choosing a word-initial token
    (leading space, any case) that spells an NLTK English stop word; the first whitespace word of
    the output, punctuation stripped, must equal the target's first word stripped the same way.
    The paper names no list and no procedure: this is our reading, with NLTK's list.
  - acc_stopword_filter_bflm: the filter of cybertronai/bflm's eval_lambada_slow.py (41.98 for
    the 124M model with this file, per its header): bflm's own 127-word list, *every* token whose
    whitespace-stripped text is exactly such a word is banned (mid-word "s", "t" included;
    " The" is not, as the match is case-sensitive), up to 6 tokens greedy; words are split as
    BERT's basic tokenizer does (whitespace, then every punctuation character alone), the target
    is the passage's last such word, the context what precedes it (right-stripped), and the first
    word of the output is compared lower-cased and accent-folded. Our code, bflm's definition.
  - Both decodes stop once the output holds a complete word: each filter reads the first word
    only, and no later token can change it (the predictions equal those of decoding every token;
    tests/test_fused_decode.py), so the tokens after it are not decoded.
- compared with the paper's unfiltered 52.66 (`lambada/acc_without_stopword_filter`, xl only):
  - acc: every BPE token of the target is the greedy argmax (lm-evaluation-harness's definition).
  - acc_last_token: the target's last BPE token is the argmax. lm-evaluation-harness's
    maintainers describe this as OpenAI's metric (its issue 356, citing openai/gpt-2 issue 131,
    comment 497136199, which reports 46.89 this way); bflm's eval_lambada.py implements it (46.67
    for 124M on this file; 46.89 with its --preprocess --jeff_suggestion options). The attribution
    is contested: in EleutherAI/gpt-neo issue 75 a maintainer thinks that commenter is not
    OpenAI-affiliated and reports that an OpenAI author seemed to agree the whole word should count.
Targets that are stop words themselves: 51 of the 5,153 last words (punctuation stripped,
lower-cased) are NLTK stop words; by each filter's own rule, 54 targets' first words are NLTK stop
words (acc_stopword_filter reads " of\\n\\nPower" as "of") and 48 bflm targets are bflm stop words.
Neither filter exempts them: such a target is matched only when the model spells it without a
banned token (NLTK: after a quote or a newline, or in pieces such as " th"+"em"; bflm: in pieces
none of which is itself a stop word, or capitalised, " Will", since its ban is case-sensitive and
its comparison is not). `target_is_stopword` / `bflm_target_is_stopword` in the samples mark them.
"""
import math
import string
import unicodedata

from gpt2eval.api.data import Dataset, read_jsonl
from gpt2eval.api.requests import Decoding, Generation, Loglikelihood
from gpt2eval.protocols.stopwords import BFLM_STOPWORDS, ENGLISH_STOPWORDS
from gpt2eval.api.task import Metric, Option, Scored, Task
from gpt2eval.api.uncertainty import binomial, ratio, safe_exp

PUNCT = string.punctuation + "“”‘’—–…"
STOPWORD_DECODE_TOKENS = 5  # enough for nearly every target word (most are 1-2 BPE tokens)
BFLM_DECODE_TOKENS = 6      # eval_lambada_slow.py's predict(context, 6)
UNFILTERED = "lambada/acc_without_stopword_filter"


def split_passage(text: str) -> tuple[str, str]:
    context, word = text.rsplit(" ", 1)
    return context, " " + word


def first_word(text: str) -> str:
    words = text.split()
    return words[0].strip(PUNCT) if words else ""


# ---- bflm's word definition (BERT's basic tokenizer, as eval_lambada_slow.py uses it) ----------

def is_punctuation(ch: str) -> bool:
    """ASCII symbols count as punctuation too, as in BERT's basic tokenizer."""
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith("P")


def basic_words(text: str) -> list[str]:
    """Whitespace-separated pieces, each punctuation character split off as its own word."""
    words = []
    for piece in text.split():
        run = ""
        for ch in piece:
            if is_punctuation(ch):
                words += [run, ch] if run else [ch]
                run = ""
            else:
                run += ch
        if run:
            words.append(run)
    return words


def fold(word: str) -> str:
    """Lower-cased, accents removed: the basic tokenizer's normal form."""
    return "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")


def bflm_split(passage: str) -> tuple[str, str]:
    """(context, target word): the last basic word and what precedes it, right-stripped."""
    text = passage.rstrip()
    word = basic_words(text)[-1]
    return text[: len(text) - len(word)].rstrip(), word


class Lambada(Task):
    name = "lambada"
    description = "LAMBADA (OpenAI jsonl): last-word prediction, perplexity and four accuracies"
    metrics = {
        "ppl": Metric("lambada/ppl", "exp(mean NLL of the target word), lm-eval definition", False),
        "acc": Metric(UNFILTERED, "no stop-word filter: whole word greedy (lm-eval)"),
        "acc_last_token": Metric(UNFILTERED, "no stop-word filter: last BPE token greedy (called OpenAI's in "
                                             "lm-eval issue 356; bflm eval_lambada.py)"),
        "acc_stopword_filter": Metric("lambada/acc", "stop-word filter: word-initial NLTK stop-word tokens banned, "
                                                     "greedy first word (our reading of the paper)"),
        "acc_stopword_filter_bflm": Metric("lambada/acc", "stop-word filter: any token that is a bflm stop word "
                                                          "banned, lower-cased word (bflm eval_lambada_slow.py)"),
    }
    options = {"preprocess": Option("none", "none: the file as it is; openai: straight double quotes, the model "
                                            "sees '\\n' + text.strip() (openai/gpt-2 issue 131)",
                                    choices=("none", "openai"))}
    base_protocol = {
        "split": "text.rsplit(' ', 1); target = ' ' + last piece (lm-eval lambada_openai)",
        "stopword_filter": f"greedy <= {STOPWORD_DECODE_TOKENS} tokens, word-initial NLTK English stop-word "
                           "tokens (any case) suppressed, first word compared with punctuation stripped",
        "stopword_filter_bflm": f"greedy <= {BFLM_DECODE_TOKENS} tokens, every token whose stripped text is one of "
                                "bflm's 127 stop words (case-sensitive) suppressed; target = last basic word, "
                                "context right-stripped; first basic word compared lower-cased",
        "decode_stop": "both decodes stop once the output holds a complete word (Generation.stop_after_word): "
                       "the first word, all either filter reads, is then final (tested equal to decoding every token)",
        "stopword_targets": "51 targets are NLTK stop words (54 by the NLTK filter's first-word rule, 48 bflm stop "
                            "words by bflm's rule); neither filter exempts them: they count only when spelled "
                            "without a banned token",
        "paper_rows": "stop-word-filtered accuracies vs Table 3 ACC; acc, acc_last_token vs the unfiltered 52.66 (xl)",
        "scale": "accuracies in percent",
    }

    @property
    def protocol(self):
        data = ("OpenAI lambada_test.jsonl, preprocessed: “ ” -> \", model sees '\\n' + text.strip() "
                "(openai/gpt-2 issue 131, comment 492786058)" if self.preprocess == "openai" else
                "OpenAI lambada_test.jsonl, no preprocessing")
        return {"data": data, **self.base_protocol}

    def passage(self, text: str) -> str:
        """The text the model sees for one line of the file."""
        if self.preprocess == "openai":
            return "\n" + text.replace("“", '"').replace("”", '"').strip()
        return text

    def load(self, data):
        path = data.find("lambada/lambada_test.jsonl")
        if path:
            rows, source = read_jsonl(path, required=("text",)), data.file_source(path, "lambada/lambada_test.jsonl")
        else:
            rows = data.hub("EleutherAI/lambada_openai", "default", "test")
            source = data.hub_source("EleutherAI/lambada_openai", "default", "test", rows)
        return Dataset([split_passage(self.passage(r["text"])) for r in rows], n_full=5153, source=source)

    def requests(self, examples):
        nltk = Decoding(suppress_words=tuple(sorted(ENGLISH_STOPWORDS)))
        bflm = Decoding(suppress_words=tuple(sorted(BFLM_STOPWORDS)), suppress_mode="stripped_text")
        # Both filters read only the output's first word: decoding stops once it is complete.
        return {"target": [Loglikelihood(ctx, target) for ctx, target in examples],
                "stopword_filter": [Generation(ctx, STOPWORD_DECODE_TOKENS, decoding=nltk, stop_after_word=True)
                                    for ctx, _ in examples],
                "stopword_filter_bflm": [Generation(bflm_split(ctx + target)[0], BFLM_DECODE_TOKENS, decoding=bflm,
                                                    stop_after_word=True) for ctx, target in examples]}

    def score(self, examples, answers):
        n, ll = len(examples), answers["target"]
        samples = []
        for (ctx, target), r, g, b in zip(examples, ll, answers["stopword_filter"], answers["stopword_filter_bflm"],
                                          strict=True):
            bflm_target = bflm_split(ctx + target)[1]
            bflm_pred = (basic_words(b.text) or [""])[0]
            samples.append({"context_tail": ctx[-80:], "target": target, "logprob": r.logprob,
                            "greedy_tokens": r.token_is_greedy, "correct": r.is_greedy,
                            "correct_last_token": r.token_is_greedy[-1],
                            "target_is_stopword": first_word(target).lower() in ENGLISH_STOPWORDS,
                            "stopword_filter_prediction": first_word(g.text),
                            "correct_stopword_filter": first_word(g.text) == first_word(target),
                            "bflm_target": bflm_target, "bflm_target_is_stopword": fold(bflm_target) in BFLM_STOPWORDS,
                            "stopword_filter_bflm_prediction": bflm_pred,
                            "correct_stopword_filter_bflm": fold(bflm_pred) == fold(bflm_target)})
        metrics = {
            "ppl": safe_exp(-sum(r.logprob for r in ll) / n),
            "acc": 100 * sum(s["correct"] for s in samples) / n,
            "acc_last_token": 100 * sum(s["correct_last_token"] for s in samples) / n,
            "acc_stopword_filter": 100 * sum(s["correct_stopword_filter"] for s in samples) / n,
            "acc_stopword_filter_bflm": 100 * sum(s["correct_stopword_filter_bflm"] for s in samples) / n,
        }
        flags = {"acc": "correct", "acc_last_token": "correct_last_token",
                 "acc_stopword_filter": "correct_stopword_filter",
                 "acc_stopword_filter_bflm": "correct_stopword_filter_bflm"}
        spread = {m: binomial([s[flag] for s in samples], unit="passage") for m, flag in flags.items()}
        spread["ppl"] = ratio([-r.logprob for r in ll], [1] * n, math.exp, unit="passage")  # exp(mean NLL)
        return Scored(metrics, samples, extra={"n_target_tokens": sum(len(r.token_logprobs) for r in ll)},
                      spread=spread, pairs=[("acc", "acc_stopword_filter")])  # the filter's effect, paired

