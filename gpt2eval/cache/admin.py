"""`run_eval.py cache`: list the result cache's entries by model, and prune them.

    python run_eval.py cache [--cache PATH]                      # one line per model and code digest
    python run_eval.py cache prune [--cache PATH] --other-code   # answers no current run can use
    python run_eval.py cache prune --model ID_OR_FINGERPRINT --older-than DAYS   # conditions combine
    python run_eval.py cache prune --all

A prune gives the space back (VACUUM) and says by how many bytes the file shrank. Nothing here
loads a model: the code digest of this gpt2eval is read from its source files.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from .disk import file_size, vacuum
from .store import ResultCache, default_path
from ..errors import UserError
from .fingerprint import code_digest, model_label

DAY_S = 86400.0


def add_arguments(p) -> None:
    p.add_argument("action", nargs="?", choices=["show", "prune"], default="show",
                   help="show (default): entries by model; prune: delete the entries matching every condition given")
    p.add_argument("--cache", default=None, metavar="PATH",
                   help=f"the cache file (default {default_path(Path('results') / 'runs' / 'x')}, the runs' default)")
    p.add_argument("--model", action="append", default=None, metavar="ID_OR_FINGERPRINT",
                   help="prune: entries of this model (a hub id, a model folder, or a fingerprint prefix; repeatable)")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="prune: entries written more than DAYS days ago")
    p.add_argument("--other-code", action="store_true",
                   help="prune: entries written by other gpt2eval code (never reused by this one)")
    p.add_argument("--all", action="store_true", help="prune: every entry")


def run(args) -> int:
    path = Path(args.cache).expanduser() if args.cache else default_path(Path("results") / "runs" / "x")
    if not path.is_file():
        raise UserError(f"no result cache at {path} (runs write one beside their --output folder); "
                        "pass --cache PATH")
    selectors = args.model is not None or args.older_than is not None or args.other_code or args.all
    if args.action == "show" and selectors:
        raise UserError("--model, --older-than, --other-code and --all go with `cache prune`")
    if args.action == "prune" and not selectors:
        raise UserError("cache prune: say what to remove: --model ID, --older-than DAYS, --other-code, or --all")
    if args.all and (args.model is not None or args.older_than is not None or args.other_code):
        raise UserError("cache prune --all removes everything; give it alone, or conditions without it")
    if args.older_than is not None and args.older_than < 0:
        raise UserError(f"--older-than must be a number of days >= 0, got {args.older_than}")
    code = code_digest()
    before = file_size(path)
    with ResultCache(path) as cache:
        entries = cache.summary()
        if args.action == "show":
            show(path, entries, code)
            return 0
        models = None if args.model is None else match_models(entries, args.model, path)
        older = None if args.older_than is None else time.time() - args.older_than * DAY_S
        rows, size = cache.prune(models=models, older_than=older, other_code=code if args.other_code else None)
        vacuum(cache)  # also the pages an earlier prune could not give back
    after = file_size(path)
    print(f"removed {rows} entries ({human_bytes(size)} of answers) from {path}; the file shrank by "
          f"{human_bytes(max(0, before - after))}, from {human_bytes(before)} to {human_bytes(after)}")
    return 0


def match_models(entries: list[dict], wanted: list[str], path: Path) -> list[str]:
    """Fingerprints named by a model id (as given to --model/--sizes' hub id) or a fingerprint prefix."""
    found = []
    for w in wanted:
        hits = {e["fingerprint"] for e in entries
                if e["label"] in (w, model_label(w)) or (len(w) >= 6 and e["fingerprint"].startswith(w))}
        if not hits:
            known = sorted({e["label"] or e["fingerprint"][:12] for e in entries})
            raise UserError(f"no entries for model {w!r} in {path}; it holds: {', '.join(known) or 'nothing'}")
        found += sorted(hits)
    return found


def show(path: Path, entries: list[dict], code: str) -> None:
    total = sum(e["entries"] for e in entries)
    print(f"{path}: {total} entries, {human_bytes(sum(e['bytes'] for e in entries))}; this gpt2eval's code "
          f"digest is {code[:12]}")
    if not entries:
        return
    header = ("model", "fingerprint", "dtype/device", "entries", "size", "code", "last written")
    lines = [header]
    for e in entries:
        info = e["info"]
        lines.append((e["label"] or "(unnamed: written before schema 2)", e["fingerprint"][:12],
                      f"{info.get('dtype', '?')}/{info.get('device', '?')}", str(e["entries"]), human_bytes(e["bytes"]),
                      "this code" if e["code"] == code else f"other ({e['code'][:12]})",
                      datetime.fromtimestamp(e["last_written"]).strftime("%Y-%m-%d %H:%M")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
