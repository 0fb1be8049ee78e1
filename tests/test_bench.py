"""The benchmark against lm-evaluation-harness still runs, and both harnesses agree on the numbers.

A tiny N on the tiny random model: this proves the side-by-side benchmark works end to end (each run
in its own process, lm-eval through its `hf` model and the local task YAMLs) and that gpt2eval's
LAMBADA and WikiText numbers equal lm-eval's. No timing is asserted.
"""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import DATA, REPO, TOKENIZER_DIR


def test_benchmark_runs_and_harnesses_agree(tiny_model_dir, tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_vs_lm_eval.py"), "--data-dir", str(DATA),
           "--tokenizer", str(TOKENIZER_DIR), "--model-dir", str(tiny_model_dir), "--out", str(out),
           "--lambada-n", "6", "--wikitext-k", "1", "--dtypes", "float32,bfloat16", "--lm-eval-batch-sizes", "1",
           "--gen-limit", "1", "--peak-seconds", "0.2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "bench.json").read_text())
    assert tuple(summary["model_shape"]) == (2, 64)  # FLOPs counted for the model actually benchmarked
    runs = {(r["workload"], r["harness"], r["dtype"]): r for r in summary["runs"]}
    assert set(runs) == {(w, h, d) for w in ("lambada", "wikitext")
                         for h, d in (("lm_eval", "float32"), ("gpt2eval", "float32"), ("gpt2eval", "bfloat16"))}
    for workload in ("lambada", "wikitext"):
        ours, theirs = runs[workload, "gpt2eval", "float32"], runs[workload, "lm_eval", "float32"]
        assert ours["tokens"] == theirs["tokens"] > 0
        assert len(ours["per_doc"]) == len(theirs["per_doc"]) == (6 if workload == "lambada" else 1)
        for a, b in zip(ours["per_doc"], theirs["per_doc"]):
            assert abs(a - b) <= 1e-4 * abs(b)
        for name, value in theirs["metrics"].items():
            if name in ours["metrics"]:
                assert abs(ours["metrics"][name] - value) <= 1e-4 * abs(value), (workload, name)
        assert ours["decisions"] == theirs["decisions"]
        assert 0 < ours["mfu"] and ours["peak_flops"] >= max(ours["peak_flops_before"], ours["peak_flops_after"]) > 0
        around = ours["flops"] / ours["eval_s"] / ((ours["peak_flops_before"] + ours["peak_flops_after"]) / 2)
        assert ours["mfu_around"] == around >= ours["mfu"]  # the best peak is never below the two around a run
    assert "word_perplexity" in runs["wikitext", "gpt2eval", "float32"]["metrics"]
    assert {"perplexity", "acc"} <= set(runs["lambada", "lm_eval", "float32"]["metrics"])
    gen = summary["generation"]["rows"]
    assert {row["workload"] for row in gen} == {"coqa", "triviaqa", "cnn_dailymail"}
    assert all(row["same_outputs"] for row in gen)
    text = (out / "bench.md").read_text()
    assert "gpt2eval float32 against lm-eval float32" in text and "the MFU ceiling" in text


def test_forward_profile_splits_a_window(tiny_model_dir):
    """benchmarks/profile_forward.py: one full window, its time split by kind of work; the shares
    cover the whole profiled time, and the matmuls and the attention are found by name."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "profile_forward.py"), "--model-dir",
                           str(tiny_model_dir), "--repeat", "1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in proc.stdout.splitlines()
            if line.startswith("| ") and line.rstrip().endswith("% |")}
    assert {"matmul", "attention"} <= set(rows)
    assert abs(sum(int(v.rstrip("%")) for v in rows.values()) - 100) <= len(rows)  # rounded shares
    assert "every position scored" in proc.stdout and "matmuls alone" in proc.stdout
