"""CoQA scoring with the semantics of the official ``evaluate-v1.0.py``.

GPT-2 reports CoQA dev F1 as computed by the dataset authors' script, so every
choice here follows that script rather than what might seem nicer:

* Gold answers of a turn are the ``answers`` entry plus the entry at the same
  position in every ``additional_answers`` list (4 answers on dev).  Entries are
  matched by position; a ``turn_id`` mismatch only produces a warning.
* "unknown" gets no special treatment: it is an ordinary answer string, kept as
  a gold answer and matched like any other text.
* A turn with several gold answers is scored leave-one-out: for each gold
  answer i, take the best match among the *other* golds, then average over i.
  Predicting one of the golds verbatim therefore need not give 100.
* A gold turn without a prediction scores 0 but still counts in the denominator
  (the official script logs it to stderr and moves on).  Predictions for turns
  that are not in the gold data are ignored.
* Scores are percentages rounded to one decimal, per source domain, for the
  in-domain and out-of-domain groups, and overall.
* One departure, on by default (``guard=False`` restores the script): a gold
  answer that normalisation erases (only punctuation and articles, "A+") is
  compared only lower-cased (:func:`gpt2eval.metrics.guarded`), so an answer
  such as "A" or "!" no longer matches it. No gold of the dev story in the
  shared data is erased.

Answer extraction variants (``EXTRACTIONS``), scored the same way on the same
answers: the first sentence of the answer line (pysbd), and its first
``ANSWER_WORD_CAP`` words. Length is the known failure of zero-shot GPT-2 on
CoQA: openai/gpt-2 issue 307 reports 28.7 F1 for gpt2-xl with the official
script, the answers "good" but scored low because they are long; CoQA's
free-form answers average 2.7 words (Reddy et al. 2019), so a 5-word cap keeps
nearly every gold answer whole.
"""

from __future__ import annotations

import json
import re
import string
import warnings
from pathlib import Path

from . import guarded, token_f1
from .summarization import split_sentences

IN_DOMAIN = ("mctest", "gutenberg", "race", "cnn", "wikipedia")
OUT_DOMAIN = ("reddit", "science")
DOMAIN_NAMES = {
    "mctest": "children_stories",
    "gutenberg": "literature",
    "race": "mid-high_school",
    "cnn": "news",
    "wikipedia": "wikipedia",
    "science": "science",
    "reddit": "reddit",
}

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

Key = tuple  # (story_id: str, turn_id: int)


def normalize_answer(s: str) -> str:
    """Lower-case, delete punctuation, blank out articles, collapse spaces.

    The order matters and is the official one: punctuation is *deleted* (not
    replaced by a space) before articles are removed, so "farmer's" becomes
    "farmers" and "the-end" becomes "theend".
    """
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(gold: str, pred: str, guard: bool = True) -> int:
    """1 if the normalized strings are identical, else 0."""
    pred_norm, gold_norm = guarded(normalize_answer, pred, gold, guard)
    return int(gold_norm == pred_norm)


def f1(gold: str, pred: str, guard: bool = True) -> float:
    """Token-multiset F1 between normalized answers.

    When either side normalizes to no tokens the official script returns
    ``int(gold_toks == pred_toks)``: 1 only if both are empty.
    """
    pred_norm, gold_norm = guarded(normalize_answer, pred, gold, guard)
    gold_toks, pred_toks = gold_norm.split(), pred_norm.split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    return token_f1(pred_toks, gold_toks)


def score_turn(golds: list[str], pred: str) -> tuple[float, float]:
    """(EM, F1) of one turn in [0, 1], leave-one-out when there are >1 golds."""
    if not golds:
        raise ValueError("a CoQA turn needs at least one gold answer")
    if len(golds) == 1:
        return float(exact_match(golds[0], pred)), f1(golds[0], pred)
    em_sum = f1_sum = 0.0
    for i in range(len(golds)):
        others = golds[:i] + golds[i + 1:]
        em_sum += max(exact_match(g, pred) for g in others)
        f1_sum += max(f1(g, pred) for g in others)
    return em_sum / len(golds), f1_sum / len(golds)


def load_gold(coqa_json: dict) -> dict:
    """Map (story_id, turn_id) -> {"golds": [...], "source": str}.

    Accepts the parsed official dev/train JSON (``{"data": [story, ...]}``).
    Mirrors the official collection: ``answers[i]`` first, then
    ``additional_answers[k][i]`` for each k in file order.
    """
    gold: dict = {}
    for story in coqa_json["data"]:
        answer_lists = [story["answers"], *story.get("additional_answers", {}).values()]
        for i, question in enumerate(story["questions"]):
            turn_id = question["turn_id"]
            if turn_id != i + 1:
                warnings.warn(f"turn id {turn_id} at position {i + 1} in story {story['id']}")
            golds = []
            for answers in answer_lists:
                answer = answers[i]
                if answer["turn_id"] != turn_id:
                    warnings.warn(f"answer turn id {answer['turn_id']} != question turn id {turn_id}")
                golds.append(answer["input_text"])
            key = (story["id"], turn_id)
            if key in gold:
                warnings.warn(f"duplicate story/turn {key}; keeping the later one")
            gold[key] = {"golds": golds, "source": story["source"]}
    return gold


ANSWER_WORD_CAP = 5


def first_sentence(answer: str) -> str:
    sentences = split_sentences(answer)
    return sentences[0] if sentences else ""


def first_words(answer: str, n: int = ANSWER_WORD_CAP) -> str:
    return " ".join(answer.split()[:n])


# metric suffix -> (what it keeps of the answer line, the function)
EXTRACTIONS = {"first_sentence": ("the first sentence (pysbd) of the answer line", first_sentence),
               f"first{ANSWER_WORD_CAP}words": (f"the first {ANSWER_WORD_CAP} words of the answer line", first_words)}


def extraction_metrics(gold: dict, preds: dict) -> dict:
    """``f1_<suffix>`` and ``em_<suffix>`` (overall, percent, unrounded) for every extraction
    variant, computed from the answer lines ``preds`` (the official prediction answers)."""
    metrics = {}
    for suffix, (_, extract) in EXTRACTIONS.items():
        overall = score_predictions(gold, {k: extract(a) for k, a in preds.items()}, ndigits=None)["overall"]
        metrics[f"f1_{suffix}"], metrics[f"em_{suffix}"] = overall["f1"], overall["em"]
    return metrics


def missing_predictions(gold: dict, preds: dict) -> list:
    """Gold keys with no prediction; these score 0 in :func:`score_predictions`."""
    return [key for key in gold if key not in preds]


def _percent(total: float, count: int, ndigits: int | None) -> float:
    value = total / max(1, count) * 100
    return value if ndigits is None else round(value, ndigits)


def score_predictions(gold: dict, preds: dict, ndigits: int | None = 1) -> dict:
    """Official-style report: per-domain, in_domain, out_domain, overall.

    Each entry is ``{"em", "f1", "turns"}`` with em/f1 in percent, rounded to
    ``ndigits`` like the official script (``None`` keeps full precision).
    All seven domains are always present, with zeros when they have no turns.
    """
    totals = {source: [0.0, 0.0, 0] for source in IN_DOMAIN + OUT_DOMAIN}
    for key, entry in gold.items():
        source = entry["source"]
        if source not in totals:
            raise ValueError(f"unknown CoQA source {source!r} for {key}")
        em, f1_value = score_turn(entry["golds"], preds[key]) if key in preds else (0.0, 0.0)
        totals[source][0] += em
        totals[source][1] += f1_value
        totals[source][2] += 1

    def block(sources: tuple) -> dict:
        em_total = sum(totals[s][0] for s in sources)
        f1_total = sum(totals[s][1] for s in sources)
        turns = sum(totals[s][2] for s in sources)
        return {"em": _percent(em_total, turns, ndigits),
                "f1": _percent(f1_total, turns, ndigits),
                "turns": turns}

    report = {DOMAIN_NAMES[s]: block((s,)) for s in IN_DOMAIN + OUT_DOMAIN}
    report["in_domain"] = block(IN_DOMAIN)
    report["out_domain"] = block(OUT_DOMAIN)
    report["overall"] = block(IN_DOMAIN + OUT_DOMAIN)
    return report


def read_predictions_file(path: str | Path) -> dict:
    """Read the official prediction format: a JSON list of {"id", "turn_id", "answer"}.

    A repeated (id, turn_id) keeps the last answer, as the official script does.
    """
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    return {(r["id"], r["turn_id"]): r["answer"] for r in records}


def prediction_records(preds: dict) -> list:
    """Turn {(story_id, turn_id): answer} into the official list-of-dicts format."""
    return [{"id": story_id, "turn_id": turn_id, "answer": answer}
            for (story_id, turn_id), answer in preds.items()]


def flat_metrics(report: dict) -> dict:
    """A :func:`score_predictions` report as flat metric names: ``f1``/``em`` overall, then
    ``f1_in_domain`` ... and ``f1_<domain>`` for every group that has turns (a subset run
    would otherwise report an official 0.0 for domains it never saw)."""
    metrics = {"f1": report["overall"]["f1"], "em": report["overall"]["em"]}
    for group, entry in report.items():
        if group != "overall" and entry["turns"]:
            metrics[f"f1_{group}"] = entry["f1"]
            metrics[f"em_{group}"] = entry["em"]
    return metrics


def domain_mean(report: dict, metric: str = "f1") -> float:
    """The unweighted mean over the source domains that have turns of each domain's score, from a
    :func:`score_predictions` report. The paper's section 4: "CoQA's development set metric reports
    the average performance over 5 different domains" (the dev set's five in-domain sources); the
    official script's ``overall`` instead weights every turn alike, so a domain with more turns
    counts more there."""
    scores = [report[DOMAIN_NAMES[s]][metric] for s in IN_DOMAIN + OUT_DOMAIN if report[DOMAIN_NAMES[s]]["turns"]]
    if not scores:
        raise ValueError("no domain has turns")
    return sum(scores) / len(scores)


def domain_mean_spread(scored: list[tuple[str, float]]):
    """The interval's spread for :func:`domain_mean` of F1, from (source, F1 in percent) per question:
    per question its F1 and a 1 in its domain's columns; on each resample of the questions, the mean
    over the domains drawn of their mean F1."""
    from ..api.uncertainty import summed
    domains = sorted({source for source, _ in scored})
    rows = [[f1 * (source == d) for d in domains] + [float(source == d) for d in domains] for source, f1 in scored]

    def statistic(sums):
        per_domain = [f / n for f, n in zip(sums[:len(domains)], sums[len(domains):]) if n]
        return sum(per_domain) / len(per_domain)
    return summed(rows, statistic, unit="question", note="per-domain F1 sums and counts, resampled")
