"""Data parallelism under torchrun: N workers share one evaluation, and the results do not depend on N.

`torchrun --nproc-per-node N run_eval.py ...` starts N copies of the same command (torchrun sets
RANK, WORLD_SIZE, LOCAL_RANK). Every worker loads the data and the model and encodes every request,
so all of them form the same batch list: batching never looks at the world size, and it reads only
the main cache file, which nobody writes while the workers run. Then:
  - each batch is dealt to the worker with the least work of its kind so far (padded tokens), and
    each worker computes only its own. A run of generation batches that continue one shared prefix
    goes to one worker, so the prefix is forwarded once and from the same state as in one process;
  - each worker stores its answers in its own SQLite file in the run's exchange folder, beside the
    cache (`<cache>.workers/<run>/rank<k>.sqlite`, exchange.py): one writer per file;
  - rank 0 alone reads the others' files, by key and by polling, scores every task and writes every
    output. The other workers never wait for anyone: after their share of a task they go on to the
    next one. At the end rank 0 copies every worker's answers into the main cache, so a rerun with
    any number of workers (or one plain process) resumes from them.

torch.distributed serves only the start: the process group (gloo, also for GPU workers: no tensor
is ever exchanged), the exchange folder's name from rank 0, the least free GPU memory (so every
worker batches under the same budget) and one barrier after rank 0 has merged earlier runs'
leftovers. No collective ever waits on a worker that computes.

Each worker keeps a status file, rank<k>.json: pid, host, per-task counts, and running / done /
failed (with its one-line error) / interrupted. A killed worker writes nothing; rank 0 names it when
it finds its process gone while waiting for its answers, or when torchrun stops the run.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import UserError
from .exchange import TERMINAL, RankFiles, exchange_root, gone, merge_folder, merge_leftovers, open_rank_file, read_status
from ..io import write_json

KILL_ENV = "GPT2EVAL_TEST_KILL"  # "RANK:N": that worker SIGKILLs itself after storing N batches (tests only)
INIT_TIMEOUT = timedelta(hours=2)  # the start barrier waits for rank 0's merge of a large cache
STOP_WAIT_S = 5.0  # after a stop: how long rank 0 waits for the others to say why


class WorkerFailed(UserError):
    """A worker failed or died; the message names its rank and how to resume (the CLI prints one line)."""


class ShareDone(Exception):
    """Raised on a worker other than rank 0 once it has computed its share of an engine call."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _resume_hint() -> str:
    return "finished batches are in the result cache; run the same command again (with any number of workers) to resume"


class Workers:
    """This process's place among the workers, and the exchange folder they share."""

    def __init__(self, rank: int, world: int, local_rank: int, folder: Path, free_memory: int | None):
        self.rank, self.world, self.local_rank, self.folder = rank, world, local_rank, folder
        self.free_memory = free_memory  # least free CUDA memory over all workers at the start, bytes
        self.loads: dict[str, list[int]] = {}  # kind of batch -> padded tokens dealt to each worker so far
        self.owner: int | None = None  # the worker of the batch dealt last
        self.status = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "status": "running",
                       "error": None, "tasks": {}}
        self.files: list = []  # this worker's open rank files
        self.readers = RankFiles(folder)
        self.stored_batches = 0
        self.kill_after = _kill_after(rank)

    # ---- devices and the engine's hooks ----------------------------------------------------
    def device(self, asked: str) -> str:
        """One GPU per worker: cuda:LOCAL_RANK; other devices as asked."""
        import torch
        if asked in ("auto", "cuda") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(f"worker local rank {self.local_rank} has no GPU: this node has "
                                f"{torch.cuda.device_count()}; start at most that many (--nproc-per-node)")
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return "cpu" if asked == "auto" else asked

    def attach(self, engine, fingerprint: str) -> None:
        """Make the engine compute only this worker's batches and store them in this worker's file."""
        if not self.files:  # one file for all the models of the run
            self.files.append(open_rank_file(self.folder, self.rank))
        rank_file = self.files[0]
        engine.scheduler.cache = WorkerCache(self, engine.scheduler.cache, rank_file.for_model(fingerprint))
        engine.scheduler.share = Share(self, fingerprint)
        # A decode continued from a scoring forward would be computed by whichever worker scored its
        # item, outside the dealt generation batches: under torchrun every prompt is prefilled instead.
        engine.share_context = False
        if self.free_memory is not None and engine.device.type == "cuda":
            weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
            engine.scheduler.free_memory = max(0, self.free_memory - weights)

    # ---- status files ----------------------------------------------------------------------
    def write_status(self, **changes) -> None:
        self.status.update(changes, updated=time.time())
        write_json(self.folder / f"rank{self.rank}.json", self.status)

    def read_status(self, rank: int) -> dict:
        return read_status(self.folder, rank)

    def record(self, task_key: str, counts: dict) -> None:
        """A worker's counts for one task, read by rank 0 for results.json."""
        self.write_status(tasks={**self.status["tasks"], task_key: counts})

    def others(self) -> range:
        return range(1, self.world)

    def check(self, ranks) -> None:
        """Raise WorkerFailed if one of these workers failed, was stopped or died."""
        for r in ranks:
            s = self.read_status(r)
            if s["status"] == "failed":
                raise WorkerFailed(f"worker rank {r} failed: {s.get('error')}; {_resume_hint()}")
            if s["status"] == "interrupted":
                raise WorkerFailed(f"worker rank {r} was interrupted; {_resume_hint()}")
            if s["status"] == "running" and gone(s):
                raise WorkerFailed(f"worker rank {r} (pid {s.get('pid')}) died without a word (killed, or out of "
                                   f"memory); {_resume_hint()}")

    def counts_by_worker(self, task_key: str, own: dict) -> list[dict]:
        """Rank 0: every worker's counts for this task (each writes them when its share is done)."""
        out, delay = {0: own}, 0.02
        while len(out) < self.world:
            for r in self.others():
                if r not in out and task_key in (t := self.read_status(r)["tasks"]):
                    out[r] = t[task_key]
            if len(out) < self.world:
                self.check(r for r in self.others() if r not in out)
                time.sleep(delay)
                delay = min(1.0, 2 * delay)
        return [out[r] for r in range(self.world)]

    # ---- answers of the others -------------------------------------------------------------
    def answers(self, keys: list[str], fingerprint: str) -> dict:
        """Rank 0: the answers to these keys from the other workers' files, waiting until all are there."""
        missing, found, delay = set(keys), {}, 0.02
        while True:
            # Read before the files: a worker stores its last answers before it says "done".
            all_done = all(self.read_status(r)["status"] == "done" for r in self.others())
            for r in self.others():
                if missing:
                    got = self.readers.get_many(r, sorted(missing), fingerprint)
                    found.update(got)
                    missing.difference_update(got)
            if not missing:
                return found
            if all_done:
                raise WorkerFailed(f"every worker is done but {len(missing)} answers are missing: the workers formed "
                                   "different batches (did a cache file change during the run?); "
                                   + _resume_hint())
            self.check(self.others())
            time.sleep(delay)
            delay = min(1.0, 2 * delay)

    # ---- the end ---------------------------------------------------------------------------
    def finish(self) -> None:
        """Rank 0: wait for every worker to be done, then keep their answers in the main cache."""
        delay = 0.02
        while not all(self.read_status(r)["status"] == "done" for r in self.others()):
            self.check(self.others())
            time.sleep(delay)
            delay = min(1.0, 2 * delay)

    def close(self, cache) -> None:
        self.readers.close()
        for f in self.files:
            f.close()
        self.files = []
        if self.rank == 0:
            if cache is not None:
                merge_folder(cache, self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)
            try:
                self.folder.parent.rmdir()  # the exchange root, once no run uses it
            except OSError:
                pass

    def diagnose(self, ranks) -> str | None:
        """Stopped by a signal: why? A failed or silent worker among `ranks` (torchrun stops all
        when one dies), else None (an ordinary Ctrl-C or kill of the whole run)."""
        deadline = time.monotonic() + STOP_WAIT_S
        while True:
            states = {r: self.read_status(r) for r in ranks}
            if all(s["status"] in TERMINAL or gone(s) for s in states.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for r, s in states.items():
            if s["status"] == "failed":
                return f"worker rank {r} failed: {s.get('error')}; {_resume_hint()}"
        silent = [r for r, s in states.items() if s["status"] not in TERMINAL]
        if silent:
            return (f"worker rank {', '.join(map(str, silent))} died without a word (killed, or out of memory), and "
                    f"the run was stopped; {_resume_hint()}")
        return None


class Share:
    """The scheduler's view of the workers for one model."""

    def __init__(self, workers: Workers, fingerprint: str):
        self.workers, self.fingerprint = workers, fingerprint

    def mine(self, kind: str, cost: int, continues: bool = False) -> bool:
        """Is the next batch this worker's? Each batch goes to the worker with the least work of its
        kind so far (`cost`: its padded tokens), the lowest rank on a tie: every worker deals the
        same batches the same way. `continues`: it reuses the previous batch's shared prefix, so it
        goes to the same worker."""
        w = self.workers
        load = w.loads.setdefault(kind, [0] * w.world)
        if not continues or w.owner is None:
            w.owner = min(range(w.world), key=lambda r: (load[r], r))
        load[w.owner] += cost
        return w.owner == w.rank

    def collect(self, keys: list[str]) -> dict:
        """The answers computed by the other workers: rank 0 waits for them; the others stop."""
        if not keys:
            return {}
        if self.workers.rank != 0:
            raise ShareDone
        return self.workers.answers(keys, self.fingerprint)


class WorkerCache:
    """Reads the main cache (nobody writes it during the run), writes this worker's own file."""

    def __init__(self, workers: Workers, main, own):
        self.workers, self.main, self.own = workers, main, own
        self.stats = main.stats if main is not None else own.stats

    def get_many(self, keys: list[str]) -> dict:
        return self.main.get_many(keys) if self.main is not None else {}

    def put_many(self, results: dict) -> None:
        self.own.put_many(results)
        if self.main is not None:
            self.main.stats["writes"] += len(results)
        w = self.workers
        w.stored_batches += 1
        if w.kill_after is not None and w.stored_batches >= w.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # the fault tests/test_distributed.py injects


def _kill_after(rank: int) -> int | None:
    spec = os.environ.get(KILL_ENV, "")
    if spec and int(spec.split(":")[0]) == rank:
        return int(spec.split(":")[1])
    return None


# ---- start, and the exchange folders --------------------------------------------------------
def start(cache, output: Path, log) -> Workers | None:
    """One process: merge earlier runs' leftovers into the cache and return None. Under torchrun
    with WORLD_SIZE > 1: set up this worker (see the module docstring) and return it."""
    root = exchange_root(cache.path if cache is not None else None, output)
    if world_size() <= 1:
        if cache is not None:
            merge_leftovers(cache, root, None, log)
        return None
    import torch
    import torch.distributed as dist
    rank, world, local_rank = int(os.environ["RANK"]), world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    dist.init_process_group("gloo", timeout=INIT_TIMEOUT)
    try:
        name = [datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8] if rank == 0 else None]
        dist.broadcast_object_list(name, src=0)
        folder = root / name[0]
        if rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            if cache is not None:
                merge_leftovers(cache, root, folder, log)
                # Everything into the main file itself: a worker on another host cannot read the
                # write-ahead log's index (SQLite's WAL needs its readers on one host).
                cache.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free = torch.tensor([-1], dtype=torch.int64)
        if torch.cuda.is_available():
            free[0] = torch.cuda.mem_get_info(local_rank)[0]
        dist.all_reduce(free, op=dist.ReduceOp.MIN)
        dist.barrier()
    finally:
        dist.destroy_process_group()  # nothing collective happens after the start
    workers = Workers(rank, world, local_rank, folder, int(free[0]) if free[0] >= 0 else None)
    workers.write_status()
    return workers


@contextmanager
def guarded(workers: Workers | None, cache):
    """Around the whole run: status files, rank 0's wait and merge at the end, and one clear line
    naming the rank when a worker fails or dies."""
    if workers is None:
        yield
        return
    try:
        yield
        if workers.rank == 0:
            workers.finish()
        workers.write_status(status="done")
    except KeyboardInterrupt:
        # Rank 0 speaks for the run; rank 1 only when rank 0 is the one that died.
        reason = (workers.diagnose(workers.others()) if workers.rank == 0 else
                  workers.diagnose([0]) if workers.rank == 1 else None)
        workers.write_status(status="interrupted")
        if reason:
            raise WorkerFailed(reason) from None
        if workers.rank != 0:
            raise SystemExit(130) from None  # quietly: rank 0 says what to do
        raise
    except WorkerFailed:
        workers.write_status(status="failed", error="stopped: another worker failed")
        raise
    except BaseException as e:
        workers.write_status(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    finally:
        workers.close(cache)


