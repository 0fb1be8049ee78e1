"""CNN/Daily Mail summarisation: the paper's Table 4, all four rows from one plugin.

Data: the hub's abisee/cnn_dailymail 3.0.0 test split (11,490 articles; reference = the
highlights), or locally `cnn_dailymail/frank_cnndm_test_250.jsonl` (250 real test articles, a
subset) whose PTB-tokenized references are de-tokenized before ROUGE.

Rows (metric prefixes), as the paper's Summarization section describes them:
- tldr: prompt "{article}\\nTL;DR:"; 100 new tokens by top-k sampling, k = 2; the summary is the
  first 3 sentences of the generated text.
- no_hint: the same with the prompt "{article}" alone.
- random3: 3 sentences of the article drawn at random (in article order), no model; the draw is
  seeded by the article id alone, so it is the same in every run.
- lead3: the first 3 sentences of the article, no model.
The article is stripped of surrounding whitespace. A long article is cut, in whole tokens, so that
article + hint + 100 new tokens fit the 1024-token window (the hint is always kept); the paper does
not say how, and 55 of the 250 local articles (22%) are too long. Option `truncate`: `end` (default)
keeps the article's start and cuts its end (Generation truncate "prefix_end"), `start` keeps its
end and cuts its start ("left"). Samples record the tokens cut; extra["n_truncated"] counts the
articles cut (their TL;DR prompt: the no-hint prompt is shorter) and extra["truncated_tokens"] the
article tokens cut from those prompts. Each sample draws from its own random stream, keyed by run
seed, task, article id and row. Both prompts of an article share its tokens as `prefix`, forwarded
once (unless cut at the start).
Sentences: pysbd, offline. Metrics, in percent: ROUGE-1, ROUGE-2 and summary-level ROUGE-L F1
(rouge-score with Porter stemming; ROUGE-L as ROUGE-1.5.5 computes it, see
gpt2eval.metrics.summarization), and their mean rouge_avg (the paper's R-AVG).

Draws (--samples K): the paper's numbers are one draw. With K > 1 each article and prompt gets K
summaries from independent streams: draw 0 keeps the single-draw seed_key (so earlier and cached
results stay valid), draw k > 0 appends "/draw<k>". A sampled row's metric is the mean over draws;
extra["across_draws"] gives each draw's corpus score and their standard deviation. Intervals:
ROUGE bootstrapped over articles (each article's score being its mean over the draws), so they
hold both the article and the sampling noise; tldr and no_hint are paired on the same articles.
"""
import hashlib
import random
import statistics

from gpt2eval.api.data import Dataset, read_jsonl, sha256_text
from gpt2eval.metrics.summarization import (aggregate_rouge, detokenize_ptb, first_sentences, rouge_scores,
                                            split_sentences)
from gpt2eval.api.requests import Decoding, Generation
from gpt2eval.api.task import Metric, Option, Scored, Task
from gpt2eval.api.uncertainty import mean

LOCAL = "cnn_dailymail/frank_cnndm_test_250.jsonl"
HUB = ("abisee/cnn_dailymail", "3.0.0", "test")
N_ARTICLES = 11490
NEW_TOKENS, TOP_K, N_SENTENCES = 100, 2, 3
HINTS = {"tldr": "\nTL;DR:", "no_hint": ""}
ROWS = {"tldr": "TL;DR:, top-2 sampling, first 3 sentences", "no_hint": "no hint, top-2 sampling, first 3 sentences",
        "random3": "3 random article sentences", "lead3": "first 3 article sentences"}
SCORES = ["rouge1", "rouge2", "rougeL", "rouge_avg"]
ROUGE = SCORES[:3]  # rouge_avg is their mean
TRUNCATE = {"end": "prefix_end", "start": "left"}  # the option -> Generation.truncate


def example_from_hub(row: dict) -> dict:
    return {"id": row["id"], "article": row["article"].strip(), "reference": row["highlights"]}


def example_from_frank(row: dict) -> dict:
    return {"id": row["id"], "article": row["article"].strip(), "reference": detokenize_ptb(row["reference_tokenized"])}


def random_sentences(article: str, key: str, n: int = N_SENTENCES) -> str:
    """n sentences drawn by an RNG seeded from `key` alone (not the run seed: a baseline without
    a model should not change between runs), kept in article order."""
    sentences = split_sentences(article)
    rng = random.Random(int.from_bytes(hashlib.sha256(f"random3/{key}".encode()).digest()[:8], "little"))
    picked = sorted(rng.sample(range(len(sentences)), min(n, len(sentences))))
    return " ".join(sentences[i] for i in picked)


class CnnDailyMail(Task):
    name = "cnn_dailymail"
    description = "CNN/Daily Mail: TL;DR, no hint, random-3, lead-3; ROUGE F1 (Table 4)"
    metrics = {f"{row}_{s}": Metric(f"cnn_dailymail/{row}_{s}", variant)
               for row, variant in ROWS.items() for s in SCORES}
    samples = 1  # draws per article and prompt (--samples K)
    options = {"truncate": Option("end", "which part of a long article is cut to fit the window: end (its start is "
                                         "kept) or start (its end is kept)", choices=tuple(TRUNCATE))}
    base_protocol = {
        "prompt": "tldr: {article}\\nTL;DR:; no_hint: {article}",
        "decoding": f"top-k sampling k={TOP_K}, {NEW_TOKENS} new tokens; summary = first {N_SENTENCES} sentences "
                    "(pysbd)",
        "baselines": "random3: 3 random sentences, article order, seeded by article id; lead3: first 3 sentences",
        "metric": "rouge-score ROUGE-1/2 and summary-level ROUGE-L (rougeLsum on pysbd sentences) F1, Porter "
                  "stemmer, mean = rouge_avg; percent",
    }

    @property
    def protocol(self):
        draws = (f"{self.samples} independent draws per article and prompt (seed_key + /draw<k>, draw 0 = the "
                 "single-draw key); metric = mean over draws" if self.samples > 1 else "one draw (the paper's)")
        kept = "start" if self.truncate == "end" else "end"
        cut = (f"article cut at its {self.truncate}, its {kept} kept (whole tokens), so that article + hint + "
               f"{NEW_TOKENS} fit 1024")
        return {**self.base_protocol, "truncation": cut, "samples": draws}

    def load(self, data):
        path = data.find(LOCAL)
        if path:
            rows = read_jsonl(path, required=("id", "article", "reference_tokenized"))
            source = data.file_source(path, LOCAL)
            return Dataset([example_from_frank(r) for r in rows], n_full=N_ARTICLES, source=source)
        rows = data.hub(*HUB)
        return Dataset([example_from_hub(r) for r in rows], n_full=N_ARTICLES, source=data.hub_source(*HUB, rows))

    def requests(self, examples):
        decoding = Decoding(top_k=TOP_K)

        def draws(ex, row, hint):
            return [Generation(ex["article"] + hint, NEW_TOKENS, decoding=decoding, prefix=ex["article"],
                               truncate=TRUNCATE[self.truncate], seed_key=seed_key(ex["id"], row, k))
                    for k in range(self.samples)]
        # Per article, each sampled row's draws: {"tldr": [...], "no_hint": [...]}.
        return {"summary": [{row: draws(ex, row, hint) for row, hint in HINTS.items()} for ex in examples]}

    def score(self, examples, answers):
        k = self.samples
        samples, per_row = [], {row: [] for row in ROWS}
        per_draw = {(row, d): [] for row in HINTS for d in range(k)}   # each draw's scores, for the spread
        for ex, generated in zip(examples, answers["summary"], strict=True):  # generated: row -> its k draws
            drawn = {row: [first_sentences(r.text, N_SENTENCES) for r in rs] for row, rs in generated.items()}
            draw_scores = {row: [rouge_scores(x, ex["reference"]) for x in xs] for row, xs in drawn.items()}
            for row, scores in draw_scores.items():
                for d, sc in enumerate(scores):
                    per_draw[(row, d)].append(sc)
            summaries = {row: xs[0] for row, xs in drawn.items()}
            summaries["random3"] = random_sentences(ex["article"], ex["id"])
            summaries["lead3"] = first_sentences(ex["article"], N_SENTENCES)
            scores = {row: {s: statistics.fmean(sc[s] for sc in draw_scores[row]) for s in draw_scores[row][0]}
                      for row in HINTS}
            scores.update({row: rouge_scores(summaries[row], ex["reference"]) for row in ("random3", "lead3")})
            for row in ROWS:
                per_row[row].append(scores[row])
            sample = {"id": ex["id"], "article_chars": len(ex["article"]), "article_sha256": sha256_text(ex["article"]),
                      "prompt_tokens": {row: rs[0].prompt_tokens for row, rs in generated.items()},
                      "truncated_tokens": {row: rs[0].truncated_tokens for row, rs in generated.items()},
                      "generated": {row: rs[0].text for row, rs in generated.items()},
                      "summaries": summaries, "reference": ex["reference"], "rouge": scores}
            if k > 1:  # every draw; "rouge" above is the mean over them
                sample["draws"] = {row: [{"summary": x, "rouge": sc} for x, sc in zip(drawn[row], draw_scores[row])]
                                   for row in HINTS}
            samples.append(sample)
        metrics = {f"{row}_{s}": v for row in ROWS for s, v in aggregate_rouge(per_row[row]).items()}
        spread = {f"{row}_{s}": mean([sc[s] for sc in per_row[row]] if s != "rouge_avg" else
                                     [statistics.fmean(sc[r] for r in ROUGE) for sc in per_row[row]], unit="article")
                  for row in ROWS for s in SCORES}
        cut = [g["tldr"][0].truncated_tokens for g in answers["summary"]]
        extra = {"n_truncated": sum(n > 0 for n in cut), "truncated_tokens": sum(cut), "samples": k}
        if k > 1:
            extra["across_draws"] = across_draws(per_draw, k)
        return Scored(metrics, samples, extra, spread=spread,
                      pairs=[(f"tldr_{s}", f"no_hint_{s}") for s in SCORES])


def seed_key(article_id: str, row: str, draw: int) -> str:
    """Draw 0 is the single-draw key of earlier versions, so its samples (and cache entries) stay."""
    return f"cnn_dailymail/{article_id}/{row}" + (f"/draw{draw}" if draw else "")


def across_draws(per_draw: dict, k: int) -> dict:
    """Each sampled metric's corpus value per draw, their mean and sample standard deviation."""
    out = {}
    for row in HINTS:
        corpus = [aggregate_rouge(per_draw[(row, d)]) for d in range(k)]
        for s in SCORES:
            values = [c[s] for c in corpus]
            out[f"{row}_{s}"] = {"values": values, "mean": statistics.fmean(values), "sd": statistics.stdev(values)}
    return out
