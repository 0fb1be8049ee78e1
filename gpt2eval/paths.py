"""Folders that live at the top of the checkout but inside the package once installed.

`tasks/` ships in the wheel as `gpt2eval.tasks` and `results/reference/` as `gpt2eval.reference`
(pyproject's package-dir), so a plain `pip install .` has the built-in plugins and the paper's
numbers; a checkout uses the top-level folders directly.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def packaged_dir(subpackage: str, in_checkout: str) -> Path:
    checkout = REPO / in_checkout
    if checkout.is_dir() and (REPO / "pyproject.toml").is_file():
        return checkout
    spec = importlib.util.find_spec(f"gpt2eval.{subpackage}")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    raise FileNotFoundError(f"gpt2eval.{subpackage} is not installed and {checkout} does not exist")


def builtin_tasks_dir() -> Path:
    return packaged_dir("tasks", "tasks")


def reference_dir() -> Path:
    return packaged_dir("reference", "results/reference")
