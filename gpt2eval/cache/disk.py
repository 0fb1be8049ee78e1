"""The result cache and the disk it lives on: a full disk is named as a full disk (SQLite's
SQLITE_FULL, with the bytes left), never as a damaged file; and a prune gives the pages of the rows
it deleted back to the file system (`vacuum`: SQLite keeps a file's size after a DELETE), so that
`cache prune` can say how many bytes it freed."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import UserError
from ..io import free_bytes


def is_full(e: sqlite3.Error) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL; a full disk, or a quota)."""
    return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(e)


def full_message(path: Path, doing: str) -> str:
    free = free_bytes(path.parent if path.parent.exists() else Path("."))
    left = f" ({free:,} bytes free)" if free is not None else ""
    kept = "" if doing == "creating" else " (the answers already stored are kept)"
    return (f"{doing} the result cache {path} failed: the disk holding it is full{left}; free some space{kept}, "
            "or pass --cache OTHER_PATH on another disk, or --no-cache")


def file_size(path: Path) -> int:
    """The cache file with its write-ahead log: what it takes on disk."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def vacuum(cache) -> None:
    """Give the pages of deleted rows back to the file system: VACUUM (when the file has free
    pages), then fold the write-ahead log into the file. Another run holding the cache open may
    keep the log from shrinking until it closes."""
    c = cache.conn
    try:
        if c.execute("PRAGMA freelist_count").fetchone()[0]:
            cache._retry_locked(lambda: c.execute("VACUUM"))
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as e:
        if is_full(e):  # VACUUM writes a copy of the file first
            raise UserError(f"{full_message(cache.path, 'compacting')} (the entries are removed; the space "
                            "comes back once the cache can be compacted, by the next `cache prune`)") from None
        raise
