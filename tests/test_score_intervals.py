"""`run_eval.py score` records every metric's 95% interval, as a run does: on the real files in
../shared/data, the interval brackets the metric, is computed the way the task computes it, and
is the same on a second run (fixed seed)."""
import json

import pytest

from conftest import DATA
from gpt2eval.cli.main import main
from gpt2eval.api.data import read_json, read_jsonl
from gpt2eval.metrics import coqa, triviaqa
from gpt2eval.metrics.summarization import first_sentences


def coqa_files(tmp_path):
    gold = DATA / "coqa" / "coqa-dev-v1.0_first_story.json"
    story = read_json(gold)["data"][0]
    # every other turn answered with the gold answer, the rest with a wrong one; the last one missing
    preds = [{"id": story["id"], "turn_id": a["turn_id"], "answer": a["input_text"] if i % 2 else "no idea"}
             for i, a in enumerate(story["answers"][:-1])]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    return gold


def triviaqa_files(tmp_path):
    gold = DATA / "triviaqa" / "llmfoundry_triviaqa_small.jsonl"
    qs = triviaqa.read_gold_file(gold)
    (tmp_path / "p.json").write_text(json.dumps({q["id"]: q["aliases"][0] if i % 3 else "Paris"
                                                 for i, q in enumerate(qs[:-2])}))
    return gold


def nq_files(tmp_path):
    rows = (DATA / "nq_open" / "NQ-open.dev.jsonl").read_text().splitlines(True)[:60]
    (tmp_path / "g.jsonl").write_text("".join(rows))
    preds = {r["question"]: (r["answer"][0] + " " + "it is" * (i % 4 == 1)) if i % 2 else "nothing"
             for i, r in enumerate(map(json.loads, rows))}
    (tmp_path / "p.json").write_text(json.dumps(preds))
    return tmp_path / "g.jsonl"


def wmt_files(tmp_path):
    from test_score_paper_gen import perturb, references
    refs = references(n=200)
    (tmp_path / "g.txt").write_text("\n".join(refs) + "\n")
    (tmp_path / "p.json").write_text("\n".join(perturb(refs)) + "\n")
    return tmp_path / "g.txt"


def cnndm_files(tmp_path):
    rows = read_jsonl(DATA / "cnn_dailymail" / "frank_cnndm_test_250.jsonl")[:20]
    (tmp_path / "g.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "p.json").write_text(json.dumps({r["id"]: first_sentences(r["article"].strip(), 3) for r in rows}))
    return tmp_path / "g.jsonl"


CASES = {"coqa": (coqa_files, "question", {"f1": "bootstrap_mean", "em": "binomial"}),
         "triviaqa": (triviaqa_files, "question", {"f1": "bootstrap_mean", "exact_match": "binomial"}),
         "natural_questions": (nq_files, "question", {"f1": "bootstrap_mean", "exact_match": "binomial"}),
         "wmt14_fr_en": (wmt_files, "segment", {"bleu": "bootstrap_corpus"}),
         "cnn_dailymail": (cnndm_files, "article", {"rouge1": "bootstrap_mean", "rouge_avg": "bootstrap_mean"})}


@pytest.mark.parametrize("task", sorted(CASES))
def test_score_records_reproducible_intervals_that_bracket_each_metric(tmp_path, capsys, task):
    make, unit, methods = CASES[task]
    gold = make(tmp_path)
    runs = []
    for out in ("a", "b"):
        assert main(["score", "--task", task, "--gold", str(gold), "--predictions", str(tmp_path / "p.json"),
                     "--output", str(tmp_path / out)]) == 0
        runs.append(json.loads((tmp_path / out / "results.json").read_text())["tasks"][task])
    printed = capsys.readouterr().out
    first, second = runs
    metrics, intervals = first["metrics"], first["intervals"]
    assert set(intervals) == set(metrics)
    assert intervals == second["intervals"]  # fixed seed: the same interval every time
    for name, value in metrics.items():
        iv = intervals[name]
        assert "point_mismatch" not in iv, name  # the spread reproduces the metric itself
        assert iv["unit"] == unit and iv["level"] == 0.95
        assert iv["ci_low"] <= value <= iv["ci_high"] and iv["stderr"] >= 0, name
    for name, method in methods.items():
        iv = intervals[name]
        assert iv["method"] == method
        assert iv["ci_low"] < metrics[name] < iv["ci_high"], name  # not degenerate on these predictions
    name = next(iter(methods))
    assert f"{task} {name}: {metrics[name]:.4f} [{intervals[name]['ci_low']:.2f}, " in printed


def test_coqa_score_interval_counts_every_gold_turn(tmp_path):
    gold = coqa_files(tmp_path)
    assert main(["score", "--task", "coqa", "--gold", str(gold), "--predictions", str(tmp_path / "p.json"),
                 "--output", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["coqa"]
    n_turns = len(coqa.load_gold(read_json(gold)))
    assert result["intervals"]["em"]["n"] == n_turns == result["extra"]["n_gold"]
    assert result["extra"]["n_missing"] == 1
