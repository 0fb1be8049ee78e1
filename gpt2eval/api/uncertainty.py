"""Standard errors and 95% confidence intervals over a test set's examples.

A task says, per metric, what its interval is computed from: a `Spread` in `Scored.spread`, built
by one of the constructors below from per-example values. The runner turns each into an interval
(`interval`) and compares protocol variants on the same examples (`paired`):

- `binomial(flags)`: a 0/1 (or 0..1) value per example, the metric being their mean. The standard
  error is lm-evaluation-harness's `mean_stderr` (lm_eval/api/metrics.py): the sample standard
  deviation (n - 1) over sqrt(n), so the two harnesses' numbers can be compared. The interval is
  Wilson's score interval (`wilson`), not mean +- 1.96 standard errors: at 0 or n successes the
  standard error is 0 and that normal interval would be [0, 0] (0 right of 5 is no proof that
  nothing can be right), where Wilson's is [0, 43.4]; its coverage is close to 95% for small n and
  for proportions near 0 or 1 (Brown, Cai & DasGupta 2001), and it needs no beta quantiles.
  Clopper-Pearson would also be non-degenerate, but it is conservative (coverage above 95%, wider)
  and is defined for whole counts only, where a task's per-example values may be fractions (CoQA's
  leave-one-out EM); Wilson takes their mean as the proportion.
- `mean(values)`: any per-example score (F1, ROUGE), the metric being the mean; bootstrapped.
- `ratio(numerators, denominators, transform)`: a metric that is transform(sum num / sum den),
  such as perplexity exp(total NLL / total tokens) or bits per byte; the resampled unit (line,
  passage, document) is a row, and numerator and denominator are resampled together.
- `corpus(examples, statistic)`: a corpus statistic (BLEU) recomputed on each resample of the
  examples; `summed(rows, statistic)` is its fast form for a statistic of the column sums of
  per-example vectors (BLEU's n-gram match and length counts).

Bootstrap: RESAMPLES resamples of n units drawn with replacement by numpy's PCG64 seeded with SEED;
the standard error is the standard deviation of the resampled statistics and the interval is their
2.5th and 97.5th percentiles (the percentile bootstrap). The same seed and n give the same
resamples for every metric of a task, which is what makes `paired` differences paired.

Numbers beyond the float range: `safe_exp` is exp that gives inf where math.exp raises
OverflowError (a perplexity of extreme log-probabilities), and `ratio`'s transform is applied the
same way. The interval of a value that is not finite, or of a spread with fewer than two finite
resampled statistics, is null (stderr, ci_low and ci_high None, with a note), never an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)   # 1.959963984540054
RESAMPLES = 1000
SEED = 20190214                             # fixed, recorded: intervals do not change between runs
_CHUNK_CELLS = 4_000_000                    # resample rows x units drawn at once (memory bound)


@dataclass(frozen=True)
class Spread:
    """What one metric's interval is computed from. `method` is binomial | bootstrap_mean |
    bootstrap_ratio | bootstrap_corpus; `columns` holds the per-unit values (one row per unit);
    `statistic` maps the column sums of a resample (or, for corpus, the resampled examples) to
    the metric; `unit` names what one row is (passage, line, question, article)."""
    method: str
    columns: np.ndarray | None
    statistic: Callable
    unit: str = "example"
    scale: float = 1.0
    examples: Sequence | None = None
    resamples: int = RESAMPLES
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.examples) if self.columns is None else self.columns.shape[0]

    def value(self) -> float:
        """The statistic on the sample itself (must equal the reported metric)."""
        if self.columns is None:
            return float(self.statistic(list(self.examples)))
        return float(self.statistic(self.columns.sum(axis=0), self.n))


def safe_exp(x: float) -> float:
    """math.exp, but inf where the result is beyond the float range (instead of OverflowError)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _array(values, name: str) -> np.ndarray:
    a = np.asarray(list(values), dtype=np.float64)
    if a.ndim != 1 or len(a) == 0:
        raise ValueError(f"{name}: need a non-empty list of numbers, one per example")
    return a


def binomial(flags: Sequence, scale: float = 100.0, unit: str = "example") -> Spread:
    """The mean of 0/1 values (an accuracy, exact match), times `scale` (100: percent)."""
    a = _array(flags, "binomial")
    return Spread("binomial", a[:, None], lambda s, n: scale * s[0] / n, unit, scale)


def mean(values: Sequence, unit: str = "example", resamples: int = RESAMPLES) -> Spread:
    """The mean of per-example scores (F1, ROUGE), bootstrapped."""
    a = _array(values, "mean")
    return Spread("bootstrap_mean", a[:, None], lambda s, n: s[0] / n, unit, resamples=resamples)


def ratio(numerators: Sequence, denominators: Sequence, transform: Callable[[float], float] = lambda x: x,
          unit: str = "line", note: str = "", resamples: int = RESAMPLES) -> Spread:
    """transform(sum numerators / sum denominators), units resampled with both their parts:
    perplexity is ratio(nll, tokens, math.exp), bits per byte ratio(nll / ln 2, bytes)."""
    num, den = _array(numerators, "ratio numerators"), _array(denominators, "ratio denominators")
    if len(num) != len(den):
        raise ValueError("ratio: as many denominators as numerators")

    def statistic(s, n):
        if not s[1]:
            return float("nan")
        try:
            return transform(s[0] / s[1])
        except OverflowError:  # exp of an extreme mean NLL: the statistic is beyond the float range
            return math.inf
    return Spread("bootstrap_ratio", np.stack([num, den], axis=1), statistic, unit, note=note, resamples=resamples)


def summed(rows: Sequence[Sequence[float]], statistic: Callable[[np.ndarray], float], unit: str = "example",
           note: str = "", resamples: int = RESAMPLES) -> Spread:
    """A corpus statistic of the column sums of per-example vectors (BLEU from each sentence's
    n-gram matches, totals and lengths), recomputed on each resample, vectorised."""
    a = np.asarray(rows, dtype=np.float64)
    if a.ndim != 2 or len(a) == 0:
        raise ValueError("summed: need one vector of counts per example")
    return Spread("bootstrap_corpus", a, lambda s, n: statistic(s), unit, note=note, resamples=resamples)


def corpus(examples: Sequence, statistic: Callable[[list], float], unit: str = "example", note: str = "",
           resamples: int = 200) -> Spread:
    """Any statistic of a list of examples, recomputed on each resample (slow: fewer resamples
    by default; prefer `summed` where the statistic is a function of per-example counts)."""
    if not examples:
        raise ValueError("corpus: no examples")
    return Spread("bootstrap_corpus", None, statistic, unit, examples=list(examples), note=note, resamples=resamples)


# ---- from a spread to an interval ----------------------------------------------------------------

def resample_indices(n: int, resamples: int, seed: int = SEED):
    """The units drawn by each resample, in chunks of (resamples_chunk x n) indices; deterministic in
    (n, resamples, seed), so every metric of a task with the same n gets the same resamples."""
    rng = np.random.Generator(np.random.PCG64(seed))
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def replicates(spread: Spread, seed: int = SEED) -> np.ndarray:
    """The statistic on each bootstrap resample."""
    out = []
    for idx in resample_indices(spread.n, spread.resamples, seed):
        for row in idx:
            if spread.columns is None:
                out.append(float(spread.statistic([spread.examples[i] for i in row])))
            else:  # how often each unit was drawn, times its values: the resample's column sums
                sums = np.bincount(row, minlength=spread.n) @ spread.columns
                out.append(float(spread.statistic(sums, spread.n)))
    return np.asarray(out)


def _lm_eval_stderr(values: np.ndarray) -> float:
    """lm-evaluation-harness's mean_stderr: sample standard deviation (n - 1) / sqrt(n)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(n))


def wilson(p: float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval for a proportion p observed on n examples, as fractions in [0, 1]:
    the p' whose normal test statistic |p - p'| / sqrt(p'(1 - p') / n) is at most z."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _percentiles(reps: np.ndarray) -> tuple[float, float] | None:
    """The interval's bounds from the finite replicates; None with fewer than two of them."""
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2:
        return None
    lo, hi = np.percentile(reps, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(lo), float(hi)


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


NOT_FINITE = {"stderr": None, "ci_low": None, "ci_high": None}


def interval(spread: Spread, value: float, seed: int = SEED, reps: np.ndarray | None = None) -> dict:
    """stderr, ci_low, ci_high of the reported `value`, and how they were computed (`reps`: the
    bootstrap replicates, when already computed)."""
    base = {"level": LEVEL, "method": spread.method, "n": spread.n, "unit": spread.unit}
    if spread.note:
        base["note"] = spread.note
    if not _finite(value):
        return {**NOT_FINITE, **base, "note": f"no interval: the value is {value} (not a finite number)"}
    check = spread.value()
    if not math.isclose(check, value, rel_tol=1e-6, abs_tol=1e-9):
        base["point_mismatch"] = check  # a wiring mistake in the task: visible, not fatal
    if spread.method == "binomial":  # stderr for parity with lm-eval; the interval Wilson's (never [0, 0])
        se = spread.scale * _lm_eval_stderr(spread.columns[:, 0])
        if not math.isfinite(se):
            return {**NOT_FINITE, **base, "note": "no interval: a per-example value is not a finite number"}
        lo, hi = wilson(check / spread.scale, spread.n)
        return {"stderr": se, "ci_low": spread.scale * lo, "ci_high": spread.scale * hi, **base,
                "formula": "Wilson score interval; stderr: lm-eval mean_stderr"}
    reps = replicates(spread, seed) if reps is None else reps
    bounds = _percentiles(reps)
    if bounds is None:
        return {**NOT_FINITE, **base, "note": "no interval: fewer than two resampled statistics are finite numbers"}
    return {"stderr": float(np.std(reps[np.isfinite(reps)], ddof=1)), "ci_low": bounds[0], "ci_high": bounds[1],
            **base, "resamples": spread.resamples, "seed": seed, "formula": "percentile bootstrap"}


def paired(a: Spread, b: Spread, value_a: float, value_b: float, seed: int = SEED,
           reps: dict | None = None) -> dict | None:
    """The difference a - b of two metrics on the same examples, with its interval: analytic when
    both are binomial (lm-eval's mean_stderr of the per-example differences, +- 1.96 of it: the
    differences are -1, 0 or 1, not a proportion, so Wilson's interval does not apply), else the
    paired bootstrap (both statistics on the same resamples). None when the units differ."""
    if a.n != b.n or a.unit != b.unit:
        return None
    diff = value_a - value_b if _finite(value_a) and _finite(value_b) else None
    base = {"diff": diff, "level": LEVEL, "n": a.n, "unit": a.unit}
    if diff is None:
        return {**base, **NOT_FINITE, "method": "none (a value is not a finite number)",
                "note": "no interval: a value is not a finite number"}
    if a.method == b.method == "binomial" and a.scale == b.scale:
        se = a.scale * _lm_eval_stderr(a.columns[:, 0] - b.columns[:, 0])
        return {**base, "stderr": se, "ci_low": diff - Z * se, "ci_high": diff + Z * se,
                "method": "paired analytic (lm-eval mean_stderr of differences)"}
    resamples = min(a.resamples, b.resamples)
    ra, rb = (replicates(Spread(**{**s.__dict__, "resamples": resamples}), seed)
              if (reps or {}).get(id(s)) is None or s.resamples != resamples else reps[id(s)] for s in (a, b))
    d = ra - rb
    bounds = _percentiles(d)
    if bounds is None:
        return {**base, **NOT_FINITE, "method": "paired percentile bootstrap", "resamples": resamples, "seed": seed,
                "note": "no interval: fewer than two resampled differences are finite numbers"}
    return {**base, "stderr": float(np.std(d[np.isfinite(d)], ddof=1)), "ci_low": bounds[0], "ci_high": bounds[1],
            "method": "paired percentile bootstrap", "resamples": resamples, "seed": seed}


@dataclass
class Summary:
    intervals: dict = field(default_factory=dict)
    paired: list = field(default_factory=list)


def summarize(metrics: dict, spreads: dict, pairs: Sequence[tuple[str, str]]) -> Summary:
    """Every metric's interval, and the paired differences asked for (pairs of metric names)."""
    reps = {id(s): replicates(s) for m, s in spreads.items() if m in metrics and s.method != "binomial"}
    out = Summary({m: interval(s, metrics[m], reps=reps.get(id(s))) for m, s in spreads.items() if m in metrics})
    for m1, m2 in pairs:
        if m1 in spreads and m2 in spreads:
            d = paired(spreads[m1], spreads[m2], metrics[m1], metrics[m2], reps=reps)
            if d is not None:
                out.paired.append({"a": m1, "b": m2, **d})
    return out


def variant_pairs(references: dict[str, str | None], spreads: dict) -> list[tuple[str, str]]:
    """Every pair of metrics compared with the same reference row (protocol variants of one
    number, such as LAMBADA's three accuracies), in declaration order."""
    groups: dict[str, list[str]] = {}
    for metric, ref in references.items():
        if ref and metric in spreads:
            groups.setdefault(ref, []).append(metric)
    return [(g[i], g[j]) for g in groups.values() for i in range(len(g)) for j in range(i + 1, len(g))]


def format_ci(iv: dict | None) -> str:
    """"[lo, hi]" for a terminal line or a table cell; "" without an interval."""
    if not iv or iv.get("ci_low") is None:
        return ""
    fmt = (lambda v: f"{v:.4g}") if max(abs(iv["ci_low"]), abs(iv["ci_high"])) >= 1e4 else (lambda v: f"{v:.2f}")
    return f"[{fmt(iv['ci_low'])}, {fmt(iv['ci_high'])}]"
