"""Where task plugins are found, and which of them a run selects.

Plugins come from the built-in `tasks/` folder (packaged as `gpt2eval.tasks`), from folders
given with --include-path, and from the entry-point group `gpt2eval.tasks`; a later source
overrides an earlier task of the same name. `--tasks paper` stands for PAPER_TASKS.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import sys
from pathlib import Path

from ..errors import UserError
from ..paths import builtin_tasks_dir
from .task import Task


def _tasks_in_module(module) -> list[type[Task]]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Task) and obj is not Task and obj.name
            and obj.__module__ == module.__name__]


def _load_file(path: Path, namespace: str):
    name = f"{namespace}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - a broken plugin is the user's to fix, say which
        del sys.modules[name]
        raise UserError(f"task plugin {path} failed to import: {type(e).__name__}: {e}") from None
    return module


def discover(include_paths: list[str] = ()) -> dict[str, type[Task]]:
    """All task classes by name. A later source overrides an earlier one of the same name."""
    found: dict[str, type[Task]] = {}
    sources = [(builtin_tasks_dir(), "gpt2eval.tasks")]
    for p in include_paths:
        folder = Path(p).expanduser()
        if not folder.is_dir():
            raise UserError(f"--include-path {p} is not a folder of task plugin files")
        sources.append((folder, f"gpt2eval_plugins_{abs(hash(str(folder.resolve())))}"))
    for folder, namespace in sources:
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for cls in _tasks_in_module(_load_file(path, namespace)):
                found[cls.name] = cls
    for ep in importlib.metadata.entry_points(group="gpt2eval.tasks"):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise UserError(f"entry point {ep.name!r} of group gpt2eval.tasks failed to load: {e}") from None
        classes = [obj] if inspect.isclass(obj) else _tasks_in_module(obj)
        for cls in classes:
            found[cls.name] = cls
    return found


# Every zero-shot experiment of the GPT-2 paper (`--tasks paper`): Table 3's nine datasets (LAMBADA
# also with OpenAI's described preprocessing), then Winograd, CoQA, CNN/Daily Mail (Table 4), WMT-14
# both ways and Natural Questions. Not here: TriviaQA (the paper reports no TriviaQA number) and
# the protocol-variant tasks of experiments already listed (ptb_n_digit, wikitext*_per_article,
# coqa_lm_eval_prompt), which run by name.
PAPER_TASKS = ("lambada", "lambada_openai_preprocessed", "cbt_cn", "cbt_ne", "wikitext2", "ptb", "enwik8", "text8",
               "wikitext103", "1bw", "winograd", "coqa", "cnn_dailymail", "wmt14_fr_en", "wmt14_en_fr",
               "natural_questions")


def expand(names: list[str]) -> list[str]:
    """Task names with "paper" replaced by PAPER_TASKS; each name once, first mention first."""
    out = []
    for n in names:
        out += PAPER_TASKS if n == "paper" else [n]
    return list(dict.fromkeys(out))


def select(names: list[str], include_paths: list[str] = ()) -> list[Task]:
    available = discover(include_paths)
    missing_paper = [n for n in PAPER_TASKS if n not in available] if "paper" in names else []
    if missing_paper:
        raise UserError(f"--tasks paper needs the task(s) {', '.join(missing_paper)}, which this installation "
                        "lacks; install a gpt2eval that has them, or list the tasks you want instead of 'paper'")
    names = expand(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(sorted(available))} "
                        "(python run_eval.py --list-tasks)")
    return [available[n]() for n in names]
