"""The exchange folder of a run under torchrun (distributed.py): one SQLite file and one status
file per worker, read by rank 0, and merged into the main cache at the end.

    <cache>.workers/<run>/rank<k>.sqlite   worker k's answers (a result cache; only k writes it)
    <cache>.workers/<run>/rank<k>.json     worker k's status: pid, host, per-task counts, state

A rank file uses SQLite's rollback journal, not WAL: its one writer may be on another host than
its reader, and WAL needs all of a file's users on one host. A folder whose rank 0 was killed is
merged by the next run that uses the cache (with or without torchrun).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from pathlib import Path

TERMINAL = ("done", "failed", "interrupted")


def exchange_root(cache_path: Path | None, output: Path) -> Path:
    """Beside the cache (`<cache>.workers/`), or in the output folder when there is no cache."""
    if cache_path is not None:
        return cache_path.parent / (cache_path.name + ".workers")
    return Path(output) / ".workers"


def open_rank_file(folder: Path, rank: int):
    from ..cache.store import ResultCache
    f = ResultCache(folder / f"rank{rank}.sqlite")
    f.conn.execute("PRAGMA journal_mode = DELETE")
    return f


def read_status(folder: Path, rank: int) -> dict:
    try:
        return json.loads((folder / f"rank{rank}.json").read_text())
    except (OSError, ValueError):  # not written yet (or being replaced): no news
        return {"rank": rank, "status": "unknown", "tasks": {}}


def gone(status: dict) -> bool:
    """Its process is known to have ended (it ran on this host)."""
    return status.get("host") == socket.gethostname() and not _alive(status.get("pid"))


class RankFiles:
    """Rank 0's read-only view of the other workers' answer files."""

    def __init__(self, folder: Path):
        self.folder, self.conns = folder, {}

    def get_many(self, rank: int, keys: list[str], fingerprint: str) -> dict:
        from ..cache.store import ModelCache
        conn = self._conn(rank)
        return ModelCache(_File(conn, self.folder / f"rank{rank}.sqlite"), fingerprint).get_many(keys) if conn else {}

    def _conn(self, rank: int) -> sqlite3.Connection | None:
        if rank not in self.conns:
            path = self.folder / f"rank{rank}.sqlite"
            if not path.exists():
                return None
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
                conn.execute("SELECT 1 FROM results LIMIT 1")
            except sqlite3.Error:  # created but not set up yet
                return None
            self.conns[rank] = conn
        return self.conns[rank]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns = {}


class _File:
    """What cache.ModelCache needs of a file: a connection and a path (here read-only)."""

    def __init__(self, conn, path):
        self.conn, self.path = conn, path



def merge_folder(cache, folder: Path) -> int:
    """Copy every answer in the folder's rank files into the main cache, in one transaction each."""
    n = 0
    for path in sorted(folder.glob("rank*.sqlite")):
        conn = cache.conn
        try:
            conn.execute("ATTACH DATABASE ? AS worker", (str(path),))
        except sqlite3.Error:
            continue  # never set up: nothing in it
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n += conn.execute("INSERT OR REPLACE INTO main.results SELECT * FROM worker.results").rowcount
            except sqlite3.Error:
                pass  # an empty or unfinished file: nothing to keep
            finally:
                conn.execute("COMMIT")
        finally:
            conn.execute("DETACH DATABASE worker")
    return n


def merge_leftovers(cache, root: Path, keep: Path | None, log) -> None:
    """Answers left by a run whose rank 0 could not merge them (it was killed): into the cache.
    A folder is removed once none of its workers can still be writing to it."""
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p != keep):
        n = merge_folder(cache, folder)
        if n:
            log(f"kept {n} answers of the interrupted run {folder.name} in the result cache")
        states = [json.loads(p.read_text()) for p in folder.glob("rank*.json") if p.stat().st_size]
        if all(s.get("status") in TERMINAL or gone(s) for s in states):
            shutil.rmtree(folder, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:  # still in use
        pass


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True
