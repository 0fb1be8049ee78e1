"""Where task plugins are found, and which of them a run selects.

Plugins come from the built-in `tasks/` folder (packaged as `gpt2eval.tasks`), from folders
given with --include-path, and from the entry-point group `gpt2eval.tasks`; a later source
overrides an earlier task of the same name, and says so in one line on stderr (the class keeps
the replaced plugin's file in `replaces`, which results.json records). `--tasks paper` stands for
PAPER_TASKS.

A task is named with its options, if any: `--tasks wikitext103:stride=512,detokenize=none,ptb` is
wikitext103 with two options, then ptb (an item with "=" and no ":" continues the task before it).
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


def _source(cls) -> str:
    try:
        return inspect.getsourcefile(cls) or cls.__module__
    except TypeError:
        return cls.__module__


def _add(found: dict, cls, warn) -> None:
    """found[cls.name] = cls; a task it replaces is named in one line (and kept in cls.replaces)."""
    old = found.get(cls.name)
    if old is not None and old is not cls and _source(old) != _source(cls):
        warn(f"note: task {cls.name} from {_source(cls)} replaces the one from {_source(old)}")
        cls.replaces = _source(old)
    found[cls.name] = cls


def discover(include_paths: list[str] = (), warn=None) -> dict[str, type[Task]]:
    """All task classes by name. A later source overrides an earlier one of the same name, with
    one line to `warn` (default: stderr) naming both files."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
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
                _add(found, cls, warn)
    for ep in importlib.metadata.entry_points(group="gpt2eval.tasks"):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise UserError(f"entry point {ep.name!r} of group gpt2eval.tasks failed to load: {e}") from None
        classes = [obj] if inspect.isclass(obj) else _tasks_in_module(obj)
        for cls in classes:
            _add(found, cls, warn)
    return found


# Every zero-shot experiment of the GPT-2 paper (`--tasks paper`), each with its default options:
# Table 3's nine datasets (LAMBADA also with OpenAI's described preprocessing), then Winograd, CoQA,
# CNN/Daily Mail (Table 4), WMT-14 both ways and Natural Questions. Not here: TriviaQA (the paper
# reports no TriviaQA number) and the other protocol options (stride, detokenize, streams, ...),
# which a user names: `--tasks paper,wikitext2:stride=256`.
PAPER_TASKS = ("lambada", "lambada:preprocess=openai", "cbt_cn", "cbt_ne", "wikitext2", "ptb", "enwik8", "text8",
               "wikitext103", "1bw", "winograd", "coqa", "cnn_dailymail", "wmt14_fr_en", "wmt14_en_fr",
               "natural_questions")

# Task names of gpt2eval 0.1 that are options now: the old name is refused with its new spelling.
RENAMED = {"lambada_openai_preprocessed": "lambada:preprocess=openai", "ptb_n_digit": "ptb:digits=1",
           "wikitext2_per_article": "wikitext2:streams=article",
           "wikitext103_per_article": "wikitext103:streams=article", "coqa_lm_eval_prompt": "coqa:prompt=lm_eval"}


def parse_tasks(text: str) -> list[str]:
    """The --tasks value as task specs, "name" or "name:key=value,key=value"."""
    specs: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item:  # another option of the task before it
            if not specs or ":" not in specs[-1]:
                raise UserError(f"--tasks: option {item} follows no task; write name:{item} (e.g. wikitext2:stride=512)")
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """"name:key=value,key=value" -> (name, {key: value as written})."""
    name, _, rest = spec.partition(":")
    settings = {}
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise UserError(f"--tasks {spec}: {pair!r} is not key=value (e.g. wikitext2:stride=512)")
        settings[key.strip()] = value.strip()
    return name.strip(), settings


def expand(specs: list[str]) -> list[str]:
    """Task specs with "paper" replaced by PAPER_TASKS; each spec once, first mention first."""
    out = []
    for s in specs:
        out += PAPER_TASKS if s == "paper" else [s]
    return list(dict.fromkeys(out))


def select(specs: list[str], include_paths: list[str] = ()) -> list[Task]:
    """The tasks these specs name, each built with its options (one line on an unknown task, option
    or value)."""
    available = discover(include_paths)
    missing_paper = [n for n in PAPER_TASKS if split_spec(n)[0] not in available] if "paper" in specs else []
    if missing_paper:
        raise UserError(f"--tasks paper needs the task(s) {', '.join(missing_paper)}, which this installation "
                        "lacks; install a gpt2eval that has them, or list the tasks you want instead of 'paper'")
    parsed = [split_spec(s) for s in expand(specs)]
    renamed = [n for n, _ in parsed if n in RENAMED and n not in available]
    if renamed:
        raise UserError("; ".join(f"task {n} is now {RENAMED[n]}" for n in dict.fromkeys(renamed))
                        + " (protocol choices are task options: python run_eval.py --list-tasks)")
    unknown = list(dict.fromkeys(n for n, _ in parsed if n not in available))
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(sorted(available))} "
                        "(python run_eval.py --list-tasks)")
    tasks = []
    for name, raw in parsed:
        cls = available[name]
        bad = [k for k in raw if k not in cls.options]
        if bad:
            known = ", ".join(cls.options) or "none"
            raise UserError(f"task {name} has no option {', '.join(bad)} (its options: {known}; "
                            "python run_eval.py --list-tasks)")
        tasks.append(cls(**{k: cls.options[k].parse(name, k, v) for k, v in raw.items()}))
    keys = [t.key for t in tasks]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UserError(f"--tasks names {', '.join(twice)} twice (with the same options); name each task once")
    return tasks
