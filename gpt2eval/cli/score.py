"""`run_eval.py score`: score a predictions file against a gold file, no model, for every
generation task.

The metrics are computed by the same functions, in the same order, as the tasks, so scoring a
run's predictions file against the run's gold data gives the run's numbers exactly, and
predictions of any other system are scored identically. Formats: CoQA and TriviaQA, the official
ones; Natural Questions, the original release's development file (`nq-dev-*.jsonl.gz`, or the
same lines uncompressed) or the NQ-open JSONL, and a JSON object from question to answer; WMT-14,
plain text, one segment per line (sacrebleu's convention); CNN/Daily Mail, a JSONL of articles
(`id` and `reference`, `reference_tokenized` or `highlights`) and a JSON object from id to summary.

Every metric gets the interval the task gives it (gpt2eval.api.uncertainty, through the same
`summarize` the runner calls): exact match binomial over questions, F1 and ROUGE bootstrapped means
over questions and articles, BLEU recomputed on resampled segments. A missing prediction counts
as a 0 in the spread, as it does in the metric.
"""
from __future__ import annotations

import argparse
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..api import uncertainty
from ..api.data import read_json, read_jsonl, read_text, sha256_of
from ..errors import DataError, UserError
from ..io import check_output, write_json
from ..metrics import coqa, nq_golds, squad, triviaqa
from ..metrics.bleu import bleu_spread, corpus_bleu, multibleu, multibleu_spread
from ..api.uncertainty import binomial, mean


def coqa_spreads(gold: dict, preds: dict) -> dict:
    """Per-question EM and F1 spreads for every CoQA metric, grouped as the coqa task groups them."""
    spread = {}
    turns = {k: coqa.score_turn(g["golds"], preds[k]) if k in preds else (0.0, 0.0) for k, g in gold.items()}
    for group in ["", "_in_domain", "_out_domain"] + [f"_{d}" for d in coqa.DOMAIN_NAMES.values()]:
        keys = [k for k, g in gold.items() if group in (
            "", f"_{coqa.DOMAIN_NAMES[g['source']]}", "_in_domain" if g["source"] in coqa.IN_DOMAIN else "_out_domain")]
        if keys:
            spread[f"f1{group}"] = mean([100 * turns[k][1] for k in keys], unit="question")
            spread[f"em{group}"] = binomial([turns[k][0] for k in keys], unit="question")
    spread["f1_domain_mean"] = coqa.domain_mean_spread([(g["source"], 100 * turns[k][1]) for k, g in gold.items()])
    for suffix, (_, extract) in coqa.EXTRACTIONS.items():
        scored = [coqa.score_turn(g["golds"], extract(preds[k])) if k in preds else (0.0, 0.0) for k, g in gold.items()]
        spread[f"f1_{suffix}"] = mean([100 * f1 for _, f1 in scored], unit="question")
        spread[f"em_{suffix}"] = binomial([em for em, _ in scored], unit="question")
    return spread


def score_coqa(gold_path: Path, pred_path: Path) -> tuple[dict, dict, dict]:
    obj = read_json(gold_path)
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise DataError(f"{gold_path}: not CoQA gold data; expected the official dev JSON, an object with a 'data' "
                        "list of stories")
    try:
        gold = coqa.load_gold(obj)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise DataError(f"{gold_path}: a story is not in the official CoQA format ({type(e).__name__}: {e})") from None
    records = read_json(pred_path)
    fields = {"id", "turn_id", "answer"}
    bad = next((n for n, r in enumerate(records, 1) if not isinstance(r, dict) or not fields <= r.keys()
                or not isinstance(r["answer"], str)), None) if isinstance(records, list) else 0
    if bad is not None:
        where = f"record {bad}" if bad else "the file"
        raise DataError(f"{pred_path}: {where} is not in the official CoQA prediction format, a JSON list of "
                        '{"id": str, "turn_id": int, "answer": str}')
    preds = {(r["id"], r["turn_id"]): r["answer"] for r in records}  # a repeated turn keeps the last
    try:
        report = coqa.score_predictions(gold, preds, ndigits=None)
    except ValueError as e:
        raise DataError(f"{gold_path}: {e}") from None
    extra = {"official_report": coqa.score_predictions(gold, preds), "n_gold": len(gold),
             "n_missing": len(coqa.missing_predictions(gold, preds))}
    return ({**coqa.flat_metrics(report), "f1_domain_mean": coqa.domain_mean(report),
             **coqa.extraction_metrics(gold, preds)}, extra, coqa_spreads(gold, preds))


def score_triviaqa(gold_path: Path, pred_path: Path) -> tuple[dict, dict, dict]:
    # Read exactly as the triviaqa task reads it (JSONL rows have no ids: both number them).
    gold = {q["id"]: q["aliases"] for q in triviaqa.read_gold_file(gold_path)}
    if not gold:
        raise DataError(f"{gold_path}: no TriviaQA questions in the file")
    preds = read_json(pred_path)
    if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
        raise DataError(f"{pred_path}: not in the official TriviaQA prediction format, a JSON object from question "
                        "id to answer string")
    scores = triviaqa.score_predictions(gold, preds)
    per = [(triviaqa.best_exact_match(preds[q], a), triviaqa.best_f1(preds[q], a)) if q in preds else (0.0, 0.0)
           for q, a in gold.items()]
    spread = {"exact_match": binomial([em for em, _ in per], unit="question"),
              "f1": mean([100 * f1 for _, f1 in per], unit="question")}
    return ({"exact_match": scores["exact_match"], "f1": scores["f1"]},
            {"n_gold": scores["n"], "n_missing": scores["n_missing"]}, spread)


def _answers_by_key(pred_path: Path, what: str) -> dict:
    preds = read_json(pred_path)
    if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
        raise DataError(f"{pred_path}: not a predictions file; expected a JSON object from {what} to answer string")
    return preds


def score_natural_questions(gold_path: Path, pred_path: Path) -> tuple[dict, dict, dict]:
    # Either gold set, read as the natural_questions task reads it (the original release: every
    # annotator's short answers and yes/no answers, questions without either left out).
    gold, gold_format = nq_golds.read_gold_file(gold_path)
    if not gold:
        raise DataError(f"{gold_path}: no question with a gold answer in the file")
    preds = _answers_by_key(pred_path, "question text")
    found = [q for q in gold if q["question"] in preds]
    per = [(squad.best_exact_match(preds[q["question"]], q["answers"]),
            squad.best_f1(preds[q["question"]], q["answers"])) if q["question"] in preds else (0.0, 0.0) for q in gold]
    em, f1 = sum(e for e, _ in per), sum(f for _, f in per)
    spread = {"exact_match": binomial([e for e, _ in per], unit="question"),
              "f1": mean([100 * f for _, f in per], unit="question")}
    return ({"exact_match": 100 * em / len(gold), "f1": 100 * f1 / len(gold)},
            {"n_gold": len(gold), "n_missing": len(gold) - len(found), "gold_format": gold_format}, spread)


def read_lines(path: Path) -> list[str]:
    """One segment per line, as sacrebleu reads a file: split at newlines, the final one optional."""
    lines = read_text(path).split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def score_translation(gold_path: Path, pred_path: Path, target: str) -> tuple[dict, dict, dict]:
    """sacrebleu's corpus BLEU with its defaults, and multi-bleu.perl's on Moses-tokenized text in the
    `target` language, as the wmt14 tasks report them."""
    refs, hyps = read_lines(gold_path), read_lines(pred_path)
    if len(refs) != len(hyps):
        raise DataError(f"{pred_path} has {len(hyps)} lines but {gold_path} has {len(refs)}; give one translation "
                        "per reference segment, one segment per line, in the same order")
    bleu, signature = corpus_bleu(hyps, refs)
    moses, moses_signature = multibleu(hyps, refs, target)
    return ({"bleu": bleu, "bleu_multibleu": moses},
            {"n_segments": len(refs), "bleu_signature": signature, "bleu_multibleu_signature": moses_signature},
            {"bleu": bleu_spread(hyps, refs), "bleu_multibleu": multibleu_spread(hyps, refs, target)})


def score_summaries(gold_path: Path, pred_path: Path) -> tuple[dict, dict, dict]:
    from ..metrics.summarization import ROUGE_TYPES, aggregate_rouge, detokenize_ptb, rouge_scores
    gold = {}
    for n, row in enumerate(read_jsonl(gold_path, required=("id",)), 1):
        ref = row.get("reference") or row.get("highlights") or detokenize_ptb(row.get("reference_tokenized") or "")
        if not ref:  # the cnn_dailymail task de-tokenizes FRANK's PTB-tokenized references the same way
            raise DataError(f"{gold_path}, article {n}: no 'reference', 'highlights' or 'reference_tokenized' text")
        gold[str(row["id"])] = ref
    preds = _answers_by_key(pred_path, "article id")
    per = [rouge_scores(preds.get(i, ""), ref) for i, ref in gold.items()]
    scores = aggregate_rouge(per)
    for sc in per:  # rouge_avg is each article's mean of the three, averaged over articles
        sc["rouge_avg"] = sum(sc[r] for r in ROUGE_TYPES) / len(ROUGE_TYPES)
    spread = {s: mean([sc[s] for sc in per], unit="article") for s in scores}
    return scores, {"n_gold": len(gold), "n_missing": sum(i not in preds for i in gold)}, spread


SCORERS = {"coqa": score_coqa, "triviaqa": score_triviaqa, "natural_questions": score_natural_questions,
           "wmt14_fr_en": partial(score_translation, target="en"), "wmt14_en_fr": partial(score_translation, target="fr"),
           "cnn_dailymail": score_summaries}


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, choices=sorted(SCORERS), help="which task's metrics")
    p.add_argument("--gold", required=True, help="gold file: the CoQA dev JSON; a TriviaQA JSON ({'Data': [...]}) "
                   "or llm-foundry JSONL; an original NQ dev file (nq-dev-*.jsonl.gz, or uncompressed) or the "
                   "NQ-open JSONL; WMT-14 references, plain text, one per line; CNN/DM articles as JSONL with id "
                   "and reference")
    p.add_argument("--predictions", required=True, help="predictions (what a run writes to predictions/<task>.*): "
                   "CoQA's and TriviaQA's official formats; for natural_questions a JSON object question -> answer; "
                   "for WMT-14 plain text, one translation per line; for cnn_dailymail a JSON object id -> summary")
    p.add_argument("--output", default=None, help="folder to write results.json to (checked before scoring)")


def run_score(args) -> int:
    gold_path, pred_path = Path(args.gold), Path(args.predictions)
    for flag, path in (("--gold", gold_path), ("--predictions", pred_path)):
        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    if args.output:  # before any scoring or printing: a bad place is one line, nothing written
        check_output(args.output, f"--output {args.output}", folder=True)
        check_output(Path(args.output) / "results.json", f"--output {args.output}")
    metrics, extra, spread = SCORERS[args.task](gold_path, pred_path)
    intervals = uncertainty.summarize(metrics, spread, []).intervals  # as the runner records them
    for name, value in metrics.items():
        ci = uncertainty.format_ci(intervals.get(name))
        print(f"{args.task} {name}: {value:.4f}" + (f" {ci}" if ci else ""))
    if extra.get("n_missing"):
        print(f"{extra['n_missing']} of {extra['n_gold']} gold questions have no prediction (scored 0)")
    if args.output:
        files = {"gold": gold_path, "predictions": pred_path}
        path = write_json(Path(args.output) / "results.json", {
            "schema": 1, "command": "score", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gpt2eval": __version__,
            "files": {k: {"path": str(p.resolve()), "sha256": sha256_of(p)} for k, p in files.items()},
            "tasks": {args.task: {"metrics": metrics, "intervals": intervals, "extra": extra}}})
        print(f"wrote {path}")
    return 0
