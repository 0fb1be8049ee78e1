"""Natural Questions and Winograd runs against the paper's rows: the NQ options on the real shared
data (offline the default gold set falls back to NQ-open and says so everywhere), the answers'
probabilities and the most-confident-1% accuracy compared with the paper's 63.1, a zero exact match
whose interval is not [0, 0], and Winograd's 70.70 paired with partial scoring only."""
import csv
import json
import math
import sys

import pytest

from conftest import DATA
from gpt2eval.api.data import DataSource, sha256_text
from gpt2eval.api.plugins import select
from gpt2eval.cli.main import main
from gpt2eval.reporting.compare import comparison_rows, load_references

LIMIT = 5
PAPER_FORMAT = "natural_questions:golds=nq_open,question_format=paper"


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("nq-run")
    assert main(["--model", str(tiny_model_dir), "--tasks", f"natural_questions,{PAPER_FORMAT}", "--data-dir",
                 str(DATA), "--limit", str(LIMIT), "--output", str(out), "--reference-size", "xl", "--no-progress",
                 "--no-cache", "--device", "cpu"]) == 0
    samples = {k: [json.loads(x) for x in (out / "samples" / f"{stem}.jsonl").read_text().splitlines()]
               for k, stem in (("natural_questions", "natural_questions"),
                               (PAPER_FORMAT, "natural_questions@golds=nq_open+question_format=paper"))}
    rows = {(r["task"], r["metric"]): r for r in csv.DictReader(open(out / "comparison.csv"))}
    return json.loads((out / "results.json").read_text())["tasks"], samples, rows


def test_offline_the_default_gold_set_falls_back_to_nq_open_and_says_so(run):
    tasks, _, rows = run
    default, chosen = tasks["natural_questions"], tasks[PAPER_FORMAT]
    assert default["options"] == {"golds": "original", "question_format": "nq"}
    assert default["data"]["golds_used"] == "nq_open" and default["data"]["verified"]
    assert "the original NQ dev annotations could not be read" in default["data"]["fallback"]
    assert default["protocol"]["golds_used"].startswith("NQ-open") and default["protocol"]["golds_used"].endswith(
        "(fallback)")
    assert "golds: NQ-open dev" in rows["natural_questions", "exact_match"]["variant"]
    assert chosen["data"]["golds_used"] == "nq_open" and "fallback" not in chosen["data"]
    assert "fallback" not in chosen["protocol"]["golds_used"]
    assert "golds=nq_open, question_format=paper" in chosen["protocol"]["options"]


def test_question_format_paper_asks_as_table5_prints(run):
    _, samples, _ = run
    task = select([PAPER_FORMAT])[0]
    examples = task.load(DataSource(DATA)).examples[:LIMIT]
    module = sys.modules[type(task).__module__]
    assert [s["prompt_sha256"] for s in samples[PAPER_FORMAT]] == [sha256_text(module.prompt(e)) for e in examples]
    text = module.prompt(examples[0])
    assert text.startswith("Q: When was the last time anyone was on the moon?\nA: 14 December 1972 UTC\n")
    assert text.endswith(f"Q: {examples[0]['question'][:1].upper()}{examples[0]['question'][1:]}?\nA:")
    assert [s["prompt_sha256"] for s in samples["natural_questions"]] != [s["prompt_sha256"] for s in
                                                                         samples[PAPER_FORMAT]]


def test_confidence_and_the_most_confident_one_percent_against_63_1(run):
    tasks, samples, rows = run
    for key in ("natural_questions", PAPER_FORMAT):
        rows_ = samples[key]
        assert all(0 < s["probability"] <= 1 for s in rows_) and len({s["probability"] for s in rows_}) > 1
        (top,) = [s for s in rows_ if s["top1pct"]]  # 5 questions: 1% rounds to the one most probable
        assert top["probability"] == max(s["probability"] for s in rows_)
        assert tasks[key]["metrics"]["exact_match_top1pct"] == top["exact_match"]
        assert tasks[key]["extra"]["n_top1pct"] == 1 and tasks[key]["intervals"]["exact_match_top1pct"]["n"] == 1
        row = rows[key, "exact_match_top1pct"]
        assert float(row["paper"]) == 63.1 and row["reference"] == "natural_questions/exact_match_top1pct"
        assert float(rows[key, "exact_match"]["paper"]) == 4.1


def test_a_zero_exact_match_on_5_questions_has_a_nonzero_upper_bound(run):
    tasks, _, rows = run
    iv, z = tasks["natural_questions"]["intervals"]["exact_match"], 1.959963984540054
    assert tasks["natural_questions"]["metrics"]["exact_match"] == 0.0  # a random model answers nothing right
    assert iv["stderr"] == 0.0 and iv["ci_low"] == 0.0
    assert iv["ci_high"] == pytest.approx(100 * z * z / (LIMIT + z * z)) and iv["ci_high"] > 40
    assert float(rows["natural_questions", "exact_match"]["ci_high"]) == pytest.approx(iv["ci_high"])
    assert math.isclose(float(rows["natural_questions", "exact_match"]["ci_low"]), 0.0)


def test_winograd_70_70_is_paired_with_partial_scoring_only():
    task = select(["winograd"])[0]
    metrics = {"acc_partial": 60.0, "acc_full": 55.0}
    results = {"model": {"id": "m", "size": "xl"}, "tasks": {"winograd": {
        "metrics": metrics, "n_examples": 273, "n_full": 273, "subset": False, "protocol": task.protocol,
        "metric_info": {m: {"reference": i.reference, "variant": i.variant} for m, i in task.metrics.items()}}}}
    rows = {r["metric"]: r for r in comparison_rows(results, load_references())}
    assert rows["acc_partial"]["paper"] == 70.7 and rows["acc_partial"]["delta"] == pytest.approx(-10.7)
    assert rows["acc_full"]["paper"] is None and rows["acc_full"]["reference"] == ""
    assert "GPT-3 paper" in rows["acc_partial"]["variant"] and "no paper value" in rows["acc_full"]["variant"]
    ref = next(r for r in load_references() if (r["task"], r["metric"], r["size"]) == ("winograd", "acc", "xl"))
    assert "Brown et al. 2020" in ref["note"] and "partial" in ref["note"]
