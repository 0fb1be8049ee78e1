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
and the runner records it in every output. `options` are the protocol choices a user may set
(`--tasks wikitext2:stride=512`): each becomes an attribute of the task instance, and the
non-default ones are part of the task's identity (`key`). Where plugins are found:
gpt2eval.api.plugins; how the named requests become the engine's one list and its answers come
back: gpt2eval.api.answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .data import Dataset, DataSource
from .uncertainty import Spread


@dataclass(frozen=True)
class Option:
    """A protocol choice a user may set on the command line: `--tasks name:key=value`.

    default: the value the task has unless asked otherwise (its type, int or str, is the type a value
    is read as; None means "not set" and reads values as `kind`). choices: the allowed values
    (empty: any value of that type). help: one line for --list-tasks and docs/tasks.md."""
    default: object
    help: str
    choices: tuple = ()
    kind: type = str

    def parse(self, task: str, key: str, text: str):
        kind = self.kind if self.default is None else type(self.default)
        try:
            value = kind(text)
        except ValueError:
            raise UserError(f"task {task}: option {key}={text} is not {'an integer' if kind is int else 'valid'}; "
                            f"{key}: {self.help}") from None
        if self.choices and value not in self.choices:
            raise UserError(f"task {task}: option {key}={text} is not one of {', '.join(map(str, self.choices))}")
        return value


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
    options: dict[str, Option] = {}
    min_context: int = 1024   # the smallest model window the protocol is defined for

    def __init__(self, **settings):
        """`settings`: option name -> value (already of the option's type); the rest keep their default."""
        unknown = [k for k in settings if k not in self.options]
        if unknown:
            known = ", ".join(self.options) or "none"
            raise UserError(f"task {self.name} has no option {', '.join(unknown)} (its options: {known}; "
                            "python run_eval.py --list-tasks)")
        self.settings = {k: settings.get(k, opt.default) for k, opt in self.options.items()}
        for k, value in self.settings.items():
            setattr(self, k, value)

    @property
    def key(self) -> str:
        """The task's identity in results.json, comparison.csv and reports: its name, then the options
        set to other than their default ("wikitext2:stride=512"), in the order the task declares them."""
        changed = [f"{k}={v}" for k, v in self.settings.items() if v != self.options[k].default]
        return f"{self.name}:{','.join(changed)}" if changed else self.name

    @property
    def file_stem(self) -> str:
        """`key` as a file name (samples/<file_stem>.jsonl): no ':' or ',' in it."""
        return self.key.replace(":", "@").replace(",", "+")

    def load(self, data: DataSource) -> Dataset:
        raise NotImplementedError

    def requests(self, examples: list) -> dict:
        """What to ask the engine for these examples: {name: request, or lists, tuples and dicts of
        requests} (one request per example, or several, or one for a whole stream)."""
        raise NotImplementedError

    def score(self, examples: list, answers: dict) -> Scored:
        """Turn the answers, under the names and in the nesting of `requests`, into metrics and samples."""
        raise NotImplementedError
