"""LAMBADA (OpenAI's version): predict the last word of a passage.

Data: OpenAI's `lambada_test.jsonl` (5,153 passages, detokenized, the file the GPT-2 authors used),
or the hub's EleutherAI/lambada_openai (the same passages). Context and target are split as
lm-evaluation-harness's lambada_openai: `text.rsplit(" ", 1)`, target = " " + last piece.

Which accuracy the paper's Table 3 reports is not stated, so three are reported, each against the
paper's LAMBADA ACC row:
- acc: every BPE token of the target is the greedy argmax (lm-evaluation-harness).
- acc_last_token: the target's last BPE token is the argmax given everything before it (the
  definition of OpenAI's released evaluation, per the GPT-2 authors).
- acc_stopword_filter: the paper's "stop-word filter": decode greedily up to 5 tokens from the
  context, never choosing a word-initial token (leading space) whose text is an NLTK English
  stop word; the first whitespace-separated word of the output, with surrounding punctuation
  stripped, must equal the target's first word, stripped the same way.
ppl is exp(mean over passages of -log p(target | context)), lm-evaluation-harness's definition.
"""
import math
import string

from gpt2eval.data import Dataset, read_jsonl
from gpt2eval.requests import Decoding, Generation, Loglikelihood
from gpt2eval.stopwords import ENGLISH_STOPWORDS
from gpt2eval.task import Metric, Scored, Task
from gpt2eval.uncertainty import binomial, ratio

PUNCT = string.punctuation + "“”‘’—–…"
STOPWORD_DECODE_TOKENS = 5  # enough for nearly every target word (most are 1-2 BPE tokens)


def split_passage(text: str) -> tuple[str, str]:
    context, word = text.rsplit(" ", 1)
    return context, " " + word


def first_word(text: str) -> str:
    words = text.split()
    return words[0].strip(PUNCT) if words else ""


class Lambada(Task):
    name = "lambada"
    description = "LAMBADA (OpenAI jsonl): last-word prediction, perplexity and three accuracies"
    metrics = {
        "ppl": Metric("lambada/ppl", "exp(mean NLL of the target word), lm-eval definition", False),
        "acc": Metric("lambada/acc", "whole word greedy (lm-eval)"),
        "acc_last_token": Metric("lambada/acc", "last BPE token greedy (OpenAI's released eval)"),
        "acc_stopword_filter": Metric("lambada/acc", "greedy first word, NLTK stop words filtered (paper)"),
    }
    protocol = {
        "data": "OpenAI lambada_test.jsonl, no preprocessing",
        "split": "text.rsplit(' ', 1); target = ' ' + last piece (lm-eval lambada_openai)",
        "stopword_filter": f"greedy <= {STOPWORD_DECODE_TOKENS} tokens, word-initial NLTK English stop-word "
                           "tokens suppressed, first word compared with punctuation stripped",
        "scale": "accuracies in percent",
    }
    def load(self, data):
        path = data.find("lambada/lambada_test.jsonl")
        if path:
            rows, source = read_jsonl(path, required=("text",)), data.file_source(path, "lambada/lambada_test.jsonl")
        else:
            rows = data.hub("EleutherAI/lambada_openai", "default", "test")
            source = data.hub_source("EleutherAI/lambada_openai", "default", "test", rows)
        return Dataset([split_passage(r["text"]) for r in rows], n_full=5153, source=source)

    def requests(self, examples):
        decoding = Decoding(suppress_words=tuple(sorted(ENGLISH_STOPWORDS)))
        reqs = [Loglikelihood(ctx, target) for ctx, target in examples]
        reqs += [Generation(ctx, STOPWORD_DECODE_TOKENS, decoding=decoding) for ctx, _ in examples]
        return reqs

    def score(self, examples, results):
        n = len(examples)
        ll, gen = results[:n], results[n:]
        samples = []
        for (ctx, target), r, g in zip(examples, ll, gen):
            samples.append({"context_tail": ctx[-80:], "target": target, "logprob": r.logprob,
                            "greedy_tokens": r.token_is_greedy, "correct": r.is_greedy,
                            "correct_last_token": r.token_is_greedy[-1],
                            "stopword_filter_prediction": first_word(g.text),
                            "correct_stopword_filter": first_word(g.text) == first_word(target)})
        metrics = {
            "ppl": math.exp(-sum(r.logprob for r in ll) / n),
            "acc": 100 * sum(s["correct"] for s in samples) / n,
            "acc_last_token": 100 * sum(s["correct_last_token"] for s in samples) / n,
            "acc_stopword_filter": 100 * sum(s["correct_stopword_filter"] for s in samples) / n,
        }
        flags = {"acc": "correct", "acc_last_token": "correct_last_token",
                 "acc_stopword_filter": "correct_stopword_filter"}
        spread = {m: binomial([s[flag] for s in samples], unit="passage") for m, flag in flags.items()}
        spread["ppl"] = ratio([-r.logprob for r in ll], [1] * n, math.exp, unit="passage")  # exp(mean NLL)
        return Scored(metrics, samples, extra={"n_target_tokens": sum(len(r.token_logprobs) for r in ll)},
                      spread=spread)
