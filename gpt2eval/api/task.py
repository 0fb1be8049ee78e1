"""The plugin contract: what a task is.

A task plugin is one Python file with a subclass of `Task` that has a `name`. It has three parts,
HELM-style: `load(data)` returns the examples (a `Dataset`). `requests(examples)` says what to ask
the model, as a dict of *named* requests: each value is a request (`Loglikelihood`,
`RollingLoglikelihood`, `Generation`) or a list, tuple or dict of them, nested as deep as the task
likes; the names say what each request is for and the nesting which example it serves (LAMBADA:
{"target": [a Loglikelihood per passage], "stopword_filter": [a Generation per passage], ...}).
`score(examples, answers)` receives the engine's answers under the same names, in exactly the same
nesting, a result wherever a request was (`LoglikelihoodResult`, `RollingResult`,
`GenerationResult`), so a task zips its examples with its answers and never counts positions. It
returns a `Scored`: the metrics, one sample row per example, and what each metric's confidence
interval is computed from. `metrics` says how each reported number relates to the paper's tables;
`protocol` names every choice that can move the numbers (de-tokenizer, windows, prompt, decoding),
and the runner records it in every output. Where plugins are found: gpt2eval.api.plugins; how the
named requests become the engine's one list and its answers come back: gpt2eval.api.answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .data import Dataset, DataSource
from .uncertainty import Spread


@dataclass(frozen=True)
class Metric:
    """How one reported number relates to the reference tables.

    reference: "task/metric" of the reference row it is compared with (None: no reference).
    variant: which definition this is, shown beside the comparison (e.g. "last BPE token greedy").
    """
    reference: str | None = None
    variant: str = ""
    higher_is_better: bool = True


@dataclass
class Scored:
    """A task's verdict: metrics, one sample row per example, and extra files (path -> JSON object, or
    a str written as plain text).

    spread: per metric, what its confidence interval is computed from (gpt2eval.api.uncertainty:
    binomial, mean, ratio, summed, corpus of per-example values). pairs: extra pairs of metrics
    to compare on the same examples (metrics sharing a reference row are paired anyway).
    """
    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    files: dict[str, object] = field(default_factory=dict)
    spread: dict[str, Spread] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)


class Task:
    name: str = ""
    description: str = ""
    metrics: dict[str, Metric] = {}
    protocol: dict[str, str] = {}
    min_context: int = 1024   # the smallest model window the protocol is defined for

    def load(self, data: DataSource) -> Dataset:
        raise NotImplementedError

    def requests(self, examples: list) -> dict:
        """What to ask the engine for these examples: {name: request, or lists, tuples and dicts of
        requests} (one request per example, or several, or one for a whole stream)."""
        raise NotImplementedError

    def score(self, examples: list, answers: dict) -> Scored:
        """Turn the answers, under the names and in the nesting of `requests`, into metrics and samples."""
        raise NotImplementedError
