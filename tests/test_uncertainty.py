"""Confidence intervals: the binomial standard error as lm-evaluation-harness computes it, bootstrap
reproducibility, coverage in simulation, paired differences, and intervals from a real run of the
tiny trained model on LAMBADA (accuracies well above zero, so the errors are not trivially zero)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gpt2eval.api import uncertainty as u
from gpt2eval.cli.main import main

from conftest import DATA, SHARED

TINY = SHARED / "models" / "tiny-lambada"


def test_binomial_standard_error_by_hand_and_as_lm_eval_computes_it():
    flags = [1, 0, 0, 1, 1, 0, 0, 0, 1, 0]            # 4 of 10
    # by hand: sample variance = (4 * 0.6^2 + 6 * 0.4^2) / 9 = 2.4 / 9; stderr = sqrt(2.4 / 9 / 10)
    se = math.sqrt(2.4 / 9 / 10)
    iv = u.interval(u.binomial(flags), 40.0)
    assert iv["stderr"] == pytest.approx(100 * se, rel=1e-12)
    assert iv["method"] == "binomial" and iv["n"] == 10 and "point_mismatch" not in iv
    from lm_eval.api.metrics import mean_stderr
    assert iv["stderr"] == pytest.approx(100 * mean_stderr(flags), rel=1e-12)
    # The interval is Wilson's, not 40 +- 1.96 stderr ([7.99, 72.01]): its bounds are the p' at which
    # |0.4 - p'| = z sqrt(p'(1 - p') / n); by hand, centre (0.4 + z^2/20) / (1 + z^2/10) = 0.42775
    # and half-width z / (1 + z^2/10) * sqrt(0.024 + z^2/400) = 0.25957.
    z = 1.959963984540054
    for bound in (iv["ci_low"] / 100, iv["ci_high"] / 100):
        assert abs(0.4 - bound) == pytest.approx(z * math.sqrt(bound * (1 - bound) / 10), rel=1e-9)
    assert (iv["ci_low"], iv["ci_high"]) == pytest.approx((16.818, 68.732), abs=1e-3)
    assert "Wilson" in iv["formula"]
    # At 0 or n of n the standard error is 0 (lm-eval's, kept for parity), the interval is not:
    # 0 of 5 has the upper bound z^2 / (n + z^2) = 43.45%, 5 of 5 the lower bound 100 - 43.45.
    none, every = u.interval(u.binomial([0] * 5), 0.0), u.interval(u.binomial([1] * 5), 100.0)
    assert none["stderr"] == every["stderr"] == 0.0
    assert none["ci_low"] == 0.0 and none["ci_high"] == pytest.approx(100 * z * z / (5 + z * z)) and none["ci_high"] > 43
    assert every["ci_high"] == 100.0 and every["ci_low"] == pytest.approx(100 - none["ci_high"])
    assert u.format_ci(none) == "[0.00, 43.45]"
    # a wrong point value is recorded, not hidden
    assert u.interval(u.binomial(flags), 41.0)["point_mismatch"] == pytest.approx(40.0)


def test_bootstrap_is_reproducible_from_its_seed_and_moves_with_it():
    rng = np.random.default_rng(0)
    values = list(rng.exponential(10, size=300))
    a = u.interval(u.mean(values), float(np.mean(values)))
    b = u.interval(u.mean(values), float(np.mean(values)))
    c = u.interval(u.mean(values), float(np.mean(values)), seed=u.SEED + 1)
    assert a == b and a["seed"] == u.SEED and a["resamples"] == u.RESAMPLES == 1000
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    assert a["ci_low"] < np.mean(values) < a["ci_high"]
    # the bootstrap standard error of a mean is close to the analytic one
    assert a["stderr"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(300), rel=0.1)


def test_ratio_and_corpus_statistics_resample_whole_units():
    nll, tokens = [10.0, 20.0, 5.0, 30.0], [5, 10, 2, 20]
    s = u.ratio(nll, tokens, math.exp, unit="line")
    assert s.value() == pytest.approx(math.exp(65 / 37))
    reps = u.replicates(s)
    assert len(reps) == 1000 and reps.min() >= math.exp(min(n / t for n, t in zip(nll, tokens))) - 1e-9
    # summed (vectorised) and corpus (a function of the examples) agree on the same resamples
    rows = list(zip(nll, tokens))
    fast = u.replicates(u.summed(rows, lambda sums: sums[0] / sums[1]))
    slow = u.replicates(u.corpus(rows, lambda ex: sum(a for a, _ in ex) / sum(b for _, b in ex), resamples=1000))
    assert np.allclose(fast, slow)


@pytest.mark.parametrize("kind", ["binomial", "mean", "ratio"])
def test_95_percent_intervals_cover_the_true_value_about_95_percent_of_the_time(kind):
    rng = np.random.default_rng(1)
    trials, n, covered = 300, 200, 0
    for t in range(trials):
        if kind == "binomial":
            x = rng.random(n) < 0.3
            truth, spread, value = 30.0, u.binomial(x), 100 * x.mean()
        elif kind == "mean":
            x = rng.exponential(2.0, n)
            truth, spread, value = 2.0, u.mean(x, resamples=400), x.mean()
        else:  # perplexity-like: exp(sum nll / sum tokens) over lines of random length
            tokens = rng.integers(1, 30, n)
            nll = rng.gamma(tokens * 3.0, 1.0)              # E[nll / token] = 3
            truth, spread, value = math.exp(3.0), u.ratio(nll, tokens, math.exp, resamples=400), \
                math.exp(nll.sum() / tokens.sum())
        iv = u.interval(spread, float(value), seed=t)
        covered += iv["ci_low"] <= truth <= iv["ci_high"]
    assert 0.90 <= covered / trials <= 0.985, covered / trials


def test_paired_differences_analytic_and_bootstrap():
    a, b = [1, 1, 0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0, 1, 0]
    d = u.paired(u.binomial(a), u.binomial(b), 62.5, 37.5)
    diffs = np.array(a) - np.array(b)
    assert d["diff"] == 25.0 and d["method"].startswith("paired analytic")
    assert d["stderr"] == pytest.approx(100 * np.std(diffs, ddof=1) / math.sqrt(8))
    # paired is far tighter than unpaired when the two variants agree on most examples
    rng = np.random.default_rng(2)
    x = rng.normal(50, 10, 500)
    y = x + rng.normal(1, 0.5, 500)
    p = u.paired(u.mean(x), u.mean(y), x.mean(), y.mean())
    assert p["method"] == "paired percentile bootstrap" and p["ci_high"] < 0
    assert p["stderr"] < 0.1 * u.interval(u.mean(x), x.mean())["stderr"]
    assert u.paired(u.mean(x), u.mean(y[:10]), 0, 0) is None          # not the same examples
    assert u.variant_pairs({"acc": "l/acc", "acc2": "l/acc", "ppl": "l/ppl", "acc3": "l/acc"},
                           {"acc": 1, "acc2": 1, "acc3": 1, "ppl": 1}) == [("acc", "acc2"), ("acc", "acc3"),
                                                                            ("acc2", "acc3")]


def test_tiny_lambada_run_records_intervals_and_paired_differences(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--model", str(TINY), "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "150",
                 "--output", str(out), "--no-cache", "--no-progress", "--device", "cpu", "--reference-size", "small"]) == 0
    t = json.loads((out / "results.json").read_text())["tasks"]["lambada"]
    samples = [json.loads(line) for line in (out / "samples" / "lambada.jsonl").read_text().splitlines()]
    for metric, flag in [("acc", "correct"), ("acc_last_token", "correct_last_token"),
                         ("acc_stopword_filter", "correct_stopword_filter")]:
        iv, p = t["intervals"][metric], t["metrics"][metric] / 100
        assert p > 0.1 and iv["n"] == 150 and "point_mismatch" not in iv
        assert p == pytest.approx(sum(s[flag] for s in samples) / 150)
        assert iv["stderr"] == pytest.approx(100 * math.sqrt(p * (1 - p) * 150 / 149 / 150), rel=1e-9)
        assert iv["stderr"] > 2 and iv["ci_low"] < t["metrics"][metric] < iv["ci_high"]
    ppl = t["intervals"]["ppl"]
    assert ppl["method"] == "bootstrap_ratio" and ppl["unit"] == "passage" and ppl["resamples"] == 1000
    assert ppl["ci_low"] < t["metrics"]["ppl"] < ppl["ci_high"] and "point_mismatch" not in ppl
    pairs = {(d["a"], d["b"]): d for d in t["paired"]}
    assert set(pairs) == {("acc", "acc_last_token"), ("acc_stopword_filter", "acc_stopword_filter_bflm"),
                          ("acc", "acc_stopword_filter")}  # two paper rows' variants, and the filter's effect
    d = pairs[("acc", "acc_last_token")]
    assert d["diff"] == pytest.approx(t["metrics"]["acc"] - t["metrics"]["acc_last_token"])
    assert 0 < d["stderr"] < t["intervals"]["acc"]["stderr"]           # paired: the shared noise cancels
    import pandas as pd
    rows = pd.read_csv(out / "comparison.csv").set_index("metric")
    assert rows.loc["acc", "ci_low"] == pytest.approx(t["intervals"]["acc"]["ci_low"])
    assert not rows.loc["acc_stopword_filter", "paper_in_ci"]           # 45.99 is far above a tiny model
    assert "95% CI" in capsys.readouterr().out


def test_every_task_wires_its_intervals_and_cnn_dailymail_draws_k_samples(tiny_model_dir, tmp_path, capsys):
    """Each metric of every existing task has an interval whose statistic is the metric itself; CNN/DM's
    --samples 2 keeps draw 0 equal to the single draw (read back from the cache) and averages the draws."""
    common = ["--model", str(tiny_model_dir), "--data-dir", str(DATA), "--limit", "3", "--no-progress",
              "--device", "cpu", "--cache", str(tmp_path / "cache.sqlite")]
    tasks = "ptb,coqa,triviaqa,cnn_dailymail,cbt_cn,winograd"
    assert main([*common, "--tasks", tasks, "--output", str(tmp_path / "one")]) == 0
    assert main([*common, "--tasks", "cnn_dailymail", "--samples", "2", "--output", str(tmp_path / "two")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())["tasks"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["tasks"]["cnn_dailymail"]
    for name, t in [*one.items(), ("cnn_dailymail K=2", two)]:
        assert set(t["intervals"]) == set(t["metrics"]), name
        for metric, iv in t["intervals"].items():
            assert "point_mismatch" not in iv, (name, metric, iv)
            assert iv["ci_low"] <= t["metrics"][metric] <= iv["ci_high"], (name, metric)
    assert one["ptb"]["intervals"]["ppl"]["unit"] == "line of the test file"
    assert {(d["a"], d["b"]) for d in one["ptb"]["paired"]} == {("ppl", "token_ppl"), ("ppl", "word_ppl")}
    assert [(d["a"], d["b"]) for d in one["winograd"]["paired"]] == [("acc_partial", "acc_full")]  # Scored.pairs
    assert [(d["a"], d["b"]) for d in one["cbt_cn"]["paired"]] == [("acc", "acc_token_mean")]
    assert {(d["a"], d["b"]) for d in two["paired"]} >= {("tldr_rouge_avg", "no_hint_rouge_avg")}
    assert two["items_cached"] == 6 and two["items_computed"] == 6      # draw 0 of 3 articles x 2 prompts
    assert "2 independent draws" in two["protocol"]["samples"]
    assert "one draw" in one["cnn_dailymail"]["protocol"]["samples"]

    def read(run):
        return [json.loads(x) for x in (tmp_path / run / "samples" / "cnn_dailymail.jsonl").read_text().splitlines()]
    for a, b in zip(read("one"), read("two")):
        assert a["generated"] == b["generated"]                          # draw 0 is the single draw
        assert b["draws"]["tldr"][0]["summary"] == a["summaries"]["tldr"]
        assert b["draws"]["tldr"][0]["summary"] != b["draws"]["tldr"][1]["summary"]
    across = two["extra"]["across_draws"]["tldr_rouge1"]
    assert across["values"][0] == pytest.approx(one["cnn_dailymail"]["metrics"]["tldr_rouge1"])
    assert two["metrics"]["tldr_rouge1"] == pytest.approx(np.mean(across["values"]))
    assert across["sd"] == pytest.approx(np.std(across["values"], ddof=1))
    assert two["metrics"]["lead3_rouge1"] == one["cnn_dailymail"]["metrics"]["lead3_rouge1"]  # no model, no draws
    capsys.readouterr()
    assert main([*common, "--tasks", "ptb", "--samples", "2", "--output", str(tmp_path / "x")]) == 2
    assert "none of the chosen tasks" in capsys.readouterr().err
