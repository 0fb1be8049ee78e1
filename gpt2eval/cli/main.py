"""The command line: `python run_eval.py [run options]`, or a subcommand (make-random-model, ...).

Every user mistake ends as one line on stderr and exit status 2 (1 for other failures, 130 for
Ctrl-C or SIGTERM); --debug shows the traceback instead.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..cache import admin as cache_admin
from . import plan
from ..reporting import report
from ..cache.store import default_path as default_cache_path
from ..errors import UserError
from ..models.formats import expand_models
from ..models.sizes import DTYPE_NAMES, SIZES
from .score import add_score_arguments, run_score


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


class ArgumentParser(argparse.ArgumentParser):
    """A usage mistake is a user error like any other: one line and exit 2, not argparse's usage block."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def run_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="gpt2eval", description="Reproduce GPT-2's zero-shot results and compare "
                       "them with the paper's. Subcommands: " + ", ".join(SUBCOMMANDS) + ".")
    p.add_argument("--sizes", default=None, help="comma-separated: small,medium,large,xl (the four public GPT-2s)")
    p.add_argument("--model", default=None, help="instead of --sizes: a hub id, a model folder, a nanoGPT ckpt.pt or an "
                   "llm.c model_*.bin (told apart by content), or random:SIZE (tiny, small, medium, large, xl: a "
                   "randomly initialised GPT-2 built in memory, to try the pipeline offline; its numbers are "
                   "meaningless); several, each its own run: comma-separated, or a quoted glob such as "
                   "\"log124M/model_*.bin\"")
    p.add_argument("--tokenizer", default=None, metavar="DIR_OR_ID", help="tokenizer folder or hub id to score with "
                   "(default: the model folder's own; for a checkpoint or random:SIZE, which carry none, GPT-2's "
                   "openai-community/gpt2, from the local hub cache when the hub cannot be reached)")
    p.add_argument("--tasks", default="lambada,ptb,wikitext103,wikitext2", help="comma-separated task names")
    p.add_argument("--output", default=None, help="output folder (default results/runs/<timestamp>); the same "
                   "command again resumes there, another run's files there stop the run (see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="remove another run's files from --output first")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N examples (a subset)")
    p.add_argument("--data-dir", default=None, help="folder of upstream data files (else $GPT2EVAL_DATA_DIR, else hub)")
    p.add_argument("--skip-unavailable", action="store_true", help="leave out the tasks whose data cannot be read "
                   "(offline, not downloaded), naming each under 'skipped' in results.json, instead of stopping")
    p.add_argument("--batch-size", type=batch_size, default="auto", help="N or auto (default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--dtype", choices=list(DTYPE_NAMES), default="float32", help="float32 is the reference precision")
    p.add_argument("--reference-size", choices=list(SIZES), default=None,
                   help="compare a --model whose shape matches no GPT-2 size with this size's paper values")
    p.add_argument("--seed", type=int, default=1234, help="run seed for sampled generation (and for the weights of "
                   "--model random:SIZE)")
    p.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="draws per example for tasks that sample (cnn_dailymail): mean and spread over K draws")
    p.add_argument("--include-path", action="append", default=[], help="folder of extra task plugins (repeatable)")
    p.add_argument("--list-tasks", action="store_true", help="list the available tasks and exit")
    p.add_argument("--cache", default=None, metavar="PATH", help="result cache file, shared by runs and reused "
                   "on a rerun (default: .cache/gpt2eval-cache.sqlite beside the --output folder)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def cmd_run(args) -> int:
    from ..runner import RunConfig, evaluate
    from ..api.plugins import discover, parse_tasks, select
    if args.list_tasks:
        from .listing import task_table
        print(task_table(discover(args.include_path)))
        return 0
    if args.model and args.sizes:
        raise UserError("give either --model or --sizes, not both")
    if args.model:
        from ..models.random import is_random, shape_of
        models = expand_models(args.model)
        for m in filter(is_random, models):
            shape_of(m)  # an unknown shape: one line before any data is read
    else:
        models = [s.strip() for s in (args.sizes or "small").split(",") if s.strip()]
        unknown = [s for s in models if s not in SIZES]
        if unknown:
            raise UserError(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    tasks = select(parse_tasks(args.tasks), args.include_path)
    if not tasks:
        raise UserError("--tasks is empty; name at least one task (python run_eval.py --list-tasks)")
    if args.cache and args.no_cache:
        raise UserError("give either --cache or --no-cache, not both")
    output = Path(args.output) if args.output else default_output()
    cache = None if args.no_cache else Path(args.cache) if args.cache else default_cache_path(output)
    try:
        evaluate(RunConfig(models=models, tasks=tasks, output=output, data_dir=args.data_dir, limit=args.limit,
                           batch_size=args.batch_size, device=args.device, dtype=args.dtype, seed=args.seed,
                           progress=not args.no_progress, reference_size=args.reference_size,
                           settings={"argv": sys.argv[1:]}, cache=cache, samples=args.samples,
                           tokenizer=args.tokenizer, skip_unavailable=args.skip_unavailable,
                           overwrite=args.overwrite))
    except KeyboardInterrupt:  # the runner has closed the cache by now: finished batches are on disk
        kept = (f"finished batches are in the result cache {cache}" if cache else
                "the result cache was off (--no-cache), so unfinished tasks start over")
        again = "run the same command again" + ("" if args.output else f" with --output {output}")
        print(f"interrupted: outputs so far are in {output}; {kept}; {again} to resume", file=sys.stderr)
        return 130
    return 0


def default_output() -> Path:
    from datetime import datetime
    return Path("results") / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _make_random_model_args(p):
    p.add_argument("output", help="folder to write the model and tokenizer to")
    p.add_argument("--tokenizer", required=True, help="folder with the GPT-2 tokenizer (vocab.json, merges.txt)")
    p.add_argument("--size", choices=list(SIZES), default="small", help="shape to copy (default small, 124M)")
    p.add_argument("--n-layer", type=positive_int, default=None, help="override the number of layers")
    p.add_argument("--n-embd", type=positive_int, default=None, help="override the width")
    p.add_argument("--reference-size", choices=list(SIZES), default=None,
                   help="compare a --model whose shape matches no GPT-2 size with this size's paper values")
    p.add_argument("--seed", type=int, default=0)


def _make_random_model(args) -> int:
    import json

    from ..models.load import make_random_model
    from ..models.random import describe_shape
    path = make_random_model(args.output, args.tokenizer, size=args.size, n_layer=args.n_layer,
                             n_embd=args.n_embd, seed=args.seed)
    config = json.loads((path / "config.json").read_text())  # the shape as written, overrides included
    shape = describe_shape(config["n_layer"], config["n_embd"], config["n_head"])
    print(f"wrote a randomly initialised GPT-2 ({shape}) to {path}")
    return 0


# name -> (help, add_arguments(parser), handler(args) -> exit status)
SUBCOMMANDS = {
    "make-random-model": ("write a randomly initialised GPT-2 with the real tokenizer (tests, demos)",
                          _make_random_model_args, _make_random_model),
    "compare": ("merge finished runs into one table beside the paper's (and other references'): "
                "tidy and Table 3/4 CSVs, scaling plots, Markdown, HTML", report.add_arguments, report.run),
    "score": ("score a generation task's predictions file against a gold file, without a model",
              add_score_arguments, run_score),
    "cache": ("show the result cache's entries by model (count, size, code digest, last written), or prune them "
              "(by model, age, entries written by other code, or all)", cache_admin.add_arguments, cache_admin.run),
    "plan": ("count a run's examples, tokens and FLOPs per size and task, and its lower-bound time on a device "
             "(tokenizer and data only, no weights)", plan.add_arguments, plan.run),
}


def _terminate(signum, frame):
    """SIGTERM (a scheduler's kill, `timeout`) takes the Ctrl-C path: cache closed, resume hint."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the program (not called from Python): SIGTERM behaves like Ctrl-C
        signal.signal(signal.SIGTERM, _terminate)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug and argv and argv[0] in SUBCOMMANDS:
        argv.remove("--debug")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            help_text, add_arguments, handler = SUBCOMMANDS[argv[0]]
            p = ArgumentParser(prog=f"gpt2eval {argv[0]}", description=help_text)
            add_arguments(p)
            return handler(p.parse_args(argv[1:]))
        return cmd_run(run_parser().parse_args(argv))
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished tasks are in results.json; run the same command again to redo the rest",
              file=sys.stderr)
        return 130
