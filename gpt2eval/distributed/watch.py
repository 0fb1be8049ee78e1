"""How the workers of a run learn that one of them stopped, and who says so in one line.

Rank 0 and each other worker exchange one last message in each direction. The worker sends its
status when it ends: done, failed (with its one-line error) or stopped (interrupted, or told to
stop). Rank 0 sends its word when it ends the run: done, or stop. The messages go over a gloo
group of their own. Each side posts its receives at the start and waits on them in background
threads. A process that dies (SIGKILL, the out-of-memory killer, a crash) closes its connections,
so the waiting side learns of it at once: gloo reports "connection closed by peer" on the receive
from that rank, and that names the rank.

The main thread reads the news before each batch and after a failed exchange (group.Group.check).
Then it stops with one line, and the CLI exits with status 2:
  - rank 0 names a worker that failed (with the worker's own line), died without a word, or was
    interrupted alone, and tells the other workers to stop; they exit quietly;
  - when rank 0 itself died, rank 1 names it.
Bound: a death or failure is named within one batch of rank 0's work. If the main thread has not
begun to stop HARD_EXIT_S (30 s) after the news, because it is in a long computation or a stuck
exchange, the watch prints the line and ends the process. A worker that is alive but stuck, or
unreachable without a closed connection, is caught when an exchange times out
(group.EXCHANGE_TIMEOUT).

A process ends normally only after both of its messages have passed. If it exited while a receive
was still pending, the receive could wake up during interpreter shutdown and abort the process.
So a process that stops while its peer's message has not come (the peer is still in a batch, or
blocked in an exchange with this process) ends through os._exit, after its line. It does not wait
for that peer.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UserError

DONE, FAILED, STOPPED, STOP = 1, 2, 3, 4
WORDS = {DONE: "done", FAILED: "failed", STOPPED: "stopped", STOP: "stop"}
MESSAGE_BYTES = 1024  # code, length (2 bytes), UTF-8 text
STOP_WAIT_S = 5.0  # after a stop: how long to wait for the news that says who stopped and why
HARD_EXIT_S = 30.0  # bad news that the main thread has not acted on by then ends the process here
FINISH_WAIT_S = 60.0  # at the end of a run: how long each side waits for the other's last message
RESUME = ("finished batches are in rank 0's result cache; run the same command again (with any number of workers) "
          "to resume")


class RunStopped(Exception):
    """An exchange failed, or the watch has bad news (group.Group.check): `verdict` says what to report."""


class WorkerFailed(UserError):
    """A worker failed or died: the message names its rank and how to resume (one line, exit 2)."""


def _encode(code: int, text: str) -> torch.Tensor:
    raw = text.encode()[:MESSAGE_BYTES - 3]
    return torch.tensor([code, len(raw) % 256, len(raw) // 256, *raw], dtype=torch.uint8)


def _decode(buf: torch.Tensor) -> tuple[str, str]:
    b = bytes(buf.tolist())
    return WORDS.get(b[0], "unknown"), b[3:3 + b[1] + 256 * b[2]].decode(errors="replace")


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class Watch:
    """The news from the other end(s): rank 0 hears from every worker, a worker from rank 0."""

    def __init__(self, rank: int, world_size: int, channel):
        self.rank, self.channel = rank, channel
        self.peers = list(range(1, world_size)) if rank == 0 else [0]
        self.news: dict[int, tuple[str, str]] = {}  # peer -> (done/failed/stopped/stop, or died; its line)
        self.cond = threading.Condition()
        self.ending = False  # the main thread has begun to end the run
        self.bad = False
        for peer in self.peers:
            buf = torch.zeros(MESSAGE_BYTES, dtype=torch.uint8)
            work = dist.irecv(buf, src=peer, group=channel)
            threading.Thread(target=self._listen, args=(peer, buf, work), daemon=True,
                             name=f"gpt2eval-watch-{peer}").start()

    def bad_news(self) -> bool:
        return self.bad

    def settled(self) -> bool:
        """Every receive has completed: the process may end."""
        return len(self.news) == len(self.peers)

    def _listen(self, peer: int, buf: torch.Tensor, work) -> None:
        try:
            work.wait()
            news = _decode(buf)
        except RuntimeError:  # its connection closed without a word
            news = ("died", "")
        with self.cond:
            self.news[peer] = news
            bad = news[0] != "done"  # rank 0: a worker ending first; a worker: rank 0 stopping, or gone
            self.bad = self.bad or bad
            self.cond.notify_all()
            if not bad or self.cond.wait_for(lambda: self.ending, timeout=HARD_EXIT_S):
                return
        if self.rank == 0:
            self._last_word(STOP)
        self.exit_now(self._line(RunStopped()))

    def _wait(self, done, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(done, timeout=timeout)

    def _send(self, peer: int, code: int, text: str = "") -> bool:
        """One message; False if the peer is gone (or does not take it within STOP_WAIT_S)."""
        try:
            dist.isend(_encode(code, text), dst=peer, group=self.channel).wait(timedelta(seconds=STOP_WAIT_S))
            return True
        except RuntimeError:
            return False

    def _last_word(self, code: int) -> None:
        """Rank 0: its word to every worker still there."""
        for peer in self.peers:
            if self.news.get(peer, ("",))[0] != "died":
                self._send(peer, code)

    def _line(self, error: BaseException) -> str | None:
        """The one line that names why the run stopped, when another worker is the reason."""
        news = dict(self.news)
        if self.rank != 0:
            died = self.rank == 1 and news.get(0, ("",))[0] == "died"
            return f"worker rank 0 died without a word (killed, or out of memory); {RESUME}" if died else None
        for word, says in (("failed", "failed: {}"), ("died", "died without a word (killed, or out of memory)"),
                           ("stopped", "was interrupted")):
            ranks = [r for r in self.peers if news.get(r, ("",))[0] == word]
            if ranks and (word != "stopped" or isinstance(error, RunStopped)):
                more = f" (and rank {', '.join(map(str, ranks[1:]))})" if ranks[1:] else ""
                return f"worker rank {ranks[0]} {says.format(news[ranks[0]][1])}{more}; {RESUME}"
        if isinstance(error, RunStopped) and str(error):
            return f"{error}: a worker is stuck or unreachable; {RESUME}"
        return None

    def verdict(self, error: BaseException) -> BaseException:
        """What this worker raises instead of `error`, the exception that ends its run."""
        with self.cond:
            self.ending = True
        stopped = isinstance(error, (RunStopped, KeyboardInterrupt))
        if self.rank == 0:
            if stopped:  # stopped from outside or by an exchange: wait for the workers' news
                self._wait(lambda: self.settled() or any(w in ("failed", "died") for w, _ in self.news.values()),
                           STOP_WAIT_S)
            line = self._line(error) if stopped else None  # rank 0's own failure is reported as it is
            self._last_word(STOP)
            return WorkerFailed(line) if line else error
        if self._send(0, STOPPED) if stopped else self._send(0, FAILED, _first_line(error)):
            return SystemExit(130 if isinstance(error, KeyboardInterrupt) else 1)  # rank 0 speaks for the run
        self._wait(self.settled, STOP_WAIT_S)  # rank 0 did not take the word: is it gone?
        if not stopped:  # this worker reports its own failure
            return error
        line = self._line(error)
        return WorkerFailed(line) if line else SystemExit(130 if isinstance(error, KeyboardInterrupt) else 1)

    def finish(self) -> None:
        """The run ended well: each worker says done and waits for rank 0's word, which rank 0
        gives once every worker has spoken."""
        with self.cond:
            self.ending = True
        if self.rank == 0:
            self._wait(self.settled, FINISH_WAIT_S)
            self._last_word(DONE)
        else:
            self._send(0, DONE)
            self._wait(self.settled, FINISH_WAIT_S)

    def exit_now(self, line: str | None, code: int | None = None) -> None:
        """End the process at once, without the interpreter's shutdown (see the module docstring)."""
        if line:
            print(f"error: {line}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if code is not None else 2 if line else 1)


@contextmanager
def guarded(group):
    """Around a run: under torchrun, whatever ends it becomes one line on the worker that should
    speak (see the module docstring), and the process group is closed."""
    watch = group.watch
    if watch is None:
        yield
        return
    try:
        yield
    except BaseException as e:
        error = watch.verdict(e)
        if not watch.settled():  # a peer is still busy or stuck: end here rather than risk an abort at shutdown
            if isinstance(error, SystemExit):
                watch.exit_now(None, error.code)
            if isinstance(error, KeyboardInterrupt):
                print(f"interrupted: {RESUME}", file=sys.stderr)
                watch.exit_now(None, 130)
            watch.exit_now(str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {_first_line(error)}",
                           2 if isinstance(error, UserError) else 1)
        raise error from None
    else:
        watch.finish()
        if not watch.settled():
            watch.exit_now(None, 0)
    finally:
        dist.destroy_process_group()
