"""`run_eval.py score`: score an official-format predictions file against a gold file, no model.

The metrics are computed by the same functions, in the same order, as the coqa and triviaqa
tasks, so scoring a run's predictions file against the run's gold data gives the run's numbers
exactly, and predictions of any other system are scored identically.
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .data import read_json, sha256_of
from .errors import DataError, UserError
from .io import write_json
from .metrics import coqa, triviaqa


def score_coqa(gold_path: Path, pred_path: Path) -> tuple[dict, dict]:
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
    return {**coqa.flat_metrics(report), **coqa.extraction_metrics(gold, preds)}, extra


def score_triviaqa(gold_path: Path, pred_path: Path) -> tuple[dict, dict]:
    # Read exactly as the triviaqa task reads it (JSONL rows have no ids: both number them).
    gold = {q["id"]: q["aliases"] for q in triviaqa.read_gold_file(gold_path)}
    if not gold:
        raise DataError(f"{gold_path}: no TriviaQA questions in the file")
    preds = read_json(pred_path)
    if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
        raise DataError(f"{pred_path}: not in the official TriviaQA prediction format, a JSON object from question "
                        "id to answer string")
    scores = triviaqa.score_predictions(gold, preds)
    return {"exact_match": scores["exact_match"], "f1": scores["f1"]}, {"n_gold": scores["n"],
                                                                          "n_missing": scores["n_missing"]}


SCORERS = {"coqa": score_coqa, "triviaqa": score_triviaqa}


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, choices=sorted(SCORERS), help="which task's metrics")
    p.add_argument("--gold", required=True, help="gold file: the CoQA dev JSON; a TriviaQA JSON ({'Data': [...]}) "
                   "or llm-foundry JSONL")
    p.add_argument("--predictions", required=True, help="predictions in the official format (what a run writes "
                   "to predictions/<task>.json)")
    p.add_argument("--output", default=None, help="folder to write results.json to")


def run_score(args) -> int:
    gold_path, pred_path = Path(args.gold), Path(args.predictions)
    for flag, path in (("--gold", gold_path), ("--predictions", pred_path)):
        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    metrics, extra = SCORERS[args.task](gold_path, pred_path)
    for name, value in metrics.items():
        print(f"{args.task} {name}: {value:.4f}")
    if extra.get("n_missing"):
        print(f"{extra['n_missing']} of {extra['n_gold']} gold questions have no prediction (scored 0)")
    if args.output:
        files = {"gold": gold_path, "predictions": pred_path}
        path = write_json(Path(args.output) / "results.json", {
            "schema": 1, "command": "score", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gpt2eval": __version__,
            "files": {k: {"path": str(p.resolve()), "sha256": sha256_of(p)} for k, p in files.items()},
            "tasks": {args.task: {"metrics": metrics, "extra": extra}}})
        print(f"wrote {path}")
    return 0
