"""Between a task's named requests and the engine's one list: `flatten` lays the requests out in
one list (dict insertion order, depth first: the order batching sees, so it must not change) and
checks that the task kept the contract, with one line naming the task and the place that broke
it; `unflatten` puts the engine's answers, in that order, back under the same names and nesting.
"""
from __future__ import annotations

from ..errors import UserError
from .requests import Request, Result

CONTRACT = ("a task returns a dict of named requests and score() gets the answers under the same names, "
            "in the same nesting (see docs/plugins.md)")


def flatten(task: str, named) -> list[Request]:
    """Every request of `named` (a task's `requests()`), in order."""
    if isinstance(named, (list, tuple)):  # the contract before names: say what changed
        raise UserError(f"task {task}: requests() returned a {type(named).__name__}; the plugin contract "
                        f"changed in gpt2eval 0.2: {CONTRACT}")
    if not isinstance(named, dict):
        raise UserError(f"task {task}: requests() returned a {type(named).__name__}, not a dict of named "
                        "requests (see docs/plugins.md)")
    flat = []

    def walk(node, where: str):
        if isinstance(node, Request):
            flat.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}[{key!r}]")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        else:
            raise UserError(f"task {task}: {where} is a {type(node).__name__}, not a request (Loglikelihood, "
                            "RollingLoglikelihood, Generation) nor a list, tuple or dict of them")

    for name, value in named.items():
        if not isinstance(name, str):
            raise UserError(f"task {task}: requests() has the key {name!r}, not a name (a str); {CONTRACT}")
        walk(value, f"requests()[{name!r}]")
    return flat


def unflatten(named: dict, results: list[Result]) -> dict:
    """The answers to `flatten(task, named)` under the names and in the nesting of `named`."""
    used = 0

    def rebuild(node):
        nonlocal used
        if isinstance(node, dict):
            return {key: rebuild(value) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            rebuilt = [rebuild(value) for value in node]
            return tuple(rebuilt) if isinstance(node, tuple) else rebuilt
        used += 1
        return results[used - 1]

    out = rebuild(named)
    if used != len(results):
        raise ValueError(f"{len(results)} answers to {used} requests")
    return out
