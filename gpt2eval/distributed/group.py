"""Data parallelism under torchrun: this process's place among the workers of a run (`Group`), and
the two exchanges the engine makes over torch.distributed. No folder is shared between workers.

`torchrun ... run_eval.py ...` starts the same command on every worker and sets RANK, WORLD_SIZE
and LOCAL_RANK. `join()` makes the workers into a gloo process group. Only Python objects travel
(answers, cached answers, counts, token budgets), never a model tensor, so gloo serves GPU workers
too. If an embedding program has already made an NCCL default group, the objects go over a gloo
group of their own. The engine makes two exchanges (engine/schedule.py):
  - `broadcast`: rank 0's cached answers to the keys of an engine call. Every worker then forms the
    same batches from the same work left to do, whatever its own disk holds;
  - `gather`: after each chunk of work, every worker's answers and counts, on every worker.
Rank 0 alone opens the result cache and writes outputs. A process outside torchrun is a group of
one: it exchanges nothing.

A worker that fails or dies stops the run with one line: watch.py says how, and within what time.
Every exchange gives up after EXCHANGE_TIMEOUT. That bounds the wait on a worker that is alive but
stuck, or unreachable.
"""
from __future__ import annotations

import os
from datetime import timedelta

from ..errors import UserError
from .watch import RunStopped, Watch

# An exchange waits for the slowest worker's share of a chunk. Model loading before the first
# exchange counts too, so pre-fetch hub weights on every node.
EXCHANGE_TIMEOUT = timedelta(minutes=30)
WATCH_TIMEOUT = timedelta(days=30)  # the status messages of watch.py are awaited for the whole run


class Group:
    """This process's rank among `world_size` workers (LOCAL_RANK: its GPU on its node). The engine
    and scheduler take it at construction. `Group()`: one process, exchanges are the identity."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, objects=None, watch=None):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.objects = objects  # the torch.distributed group the objects travel over (None: the default)
        self.watch = watch  # watch.Watch: the other workers' news (None in one process)

    def device(self, asked: str) -> str:
        """One GPU per worker: cuda:LOCAL_RANK; other devices as asked."""
        import torch
        if self.world_size > 1 and asked in ("auto", "cuda") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(f"worker local rank {self.local_rank} has no GPU: this node has "
                                f"{torch.cuda.device_count()}; start at most that many (--nproc-per-node)")
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return asked

    def broadcast(self, obj):
        """Rank 0's `obj`, on every worker (the others pass None)."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist
        box = [obj]
        self._exchange(dist.broadcast_object_list, box, src=0, group=self.objects)
        return box[0]

    def gather(self, obj) -> list:
        """Every worker's `obj`, in rank order, on every worker."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.world_size
        self._exchange(dist.all_gather_object, out, obj, group=self.objects)
        return out

    def _exchange(self, collective, *args, **kw) -> None:
        self.check()
        try:
            collective(*args, **kw)
        except RuntimeError as e:  # a worker's connection closed (it ended), or EXCHANGE_TIMEOUT passed
            raise RunStopped(f"an exchange between the workers failed: {str(e).splitlines()[0]}") from None

    def check(self) -> None:
        """Raise RunStopped once another worker has failed or died, or rank 0 has stopped the run:
        the scheduler asks before each batch, so a worker stops within one batch of the news."""
        if self.watch is not None and self.watch.bad_news():
            raise RunStopped("another worker stopped")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def join() -> Group:
    """One process: a group of one. Under torchrun with WORLD_SIZE > 1: join the workers' process
    group and start watching the others (watch.py)."""
    if world_size() <= 1:
        return Group()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=EXCHANGE_TIMEOUT)
    # Objects are pickled into CPU tensors: gloo carries them; NCCL would need them on a GPU.
    objects = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=EXCHANGE_TIMEOUT)
    rank, world = dist.get_rank(), dist.get_world_size()
    watch = Watch(rank, world, dist.new_group(backend="gloo", timeout=WATCH_TIMEOUT))
    return Group(rank, world, int(os.environ.get("LOCAL_RANK", "0")), objects, watch)
