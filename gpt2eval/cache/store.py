"""The persistent result cache: every engine answer, stored as soon as its batch is done.

One SQLite file (stdlib sqlite3) holds the answers of every model it has seen. A row's key is
sha256(gpt2eval version, model fingerprint, code digest, the engine's request key); the fingerprint
names the model's files or hub commit, its configuration, the dtype, the device type and the torch
and transformers versions, and the code digest the source of the modules that compute answers
(gpt2eval.cache.fingerprint). So the same request under another model, config, tokenizer, dtype, device
class or library version, or answered by other code, never collides, and a rerun of a killed command
recomputes only what is missing. Rows also record their model and code digest in the clear, so the
log can say how many answers of a model were written by other code (never reused), and
`run_eval.py cache` can list and prune them. Values are JSON: Python writes floats with the shortest
repr that reads back to the same double, so a cached answer is bit-identical to the computed one.

Several runs may share one file at once: WAL mode lets readers and the single writer proceed side
by side, and a long busy timeout makes a second writer wait for its turn instead of failing with
"database is locked". Each batch is one committed transaction, so a kill loses at most the batch
in flight and never leaves half a batch behind.

A file that is not a gpt2eval cache, or is damaged, or comes from a newer schema stops the run with
one line that names it; the file is never modified, renamed or deleted (it may be someone's data).
A full disk is named as a full disk, never as damage (gpt2eval.cache.disk); a cache file that
could not even be created is removed again, not left behind empty.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from .disk import full_message, is_full

from .. import __version__
from ..errors import UserError
from .fingerprint import code_digest

FILENAME = "gpt2eval-cache.sqlite"
APP = "gpt2eval result cache"
SCHEMA_VERSION = 2
OLD_CODE = "schema-1"  # the code digest given to rows of a version-1 file: no current code has it
BUSY_TIMEOUT_S = 600.0  # a writer commits in milliseconds; minutes of waiting means something else is wrong
SQLITE_MAGIC = b"SQLite format 3\x00"
CHUNK = 500  # keys per SELECT: below every SQLite build's limit on bound parameters

SCHEMA = [
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE results (key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL, "
    "code TEXT NOT NULL DEFAULT '')",
]
# Version 1 -> 2 (and the rest of version 2): rows record the code that wrote them; models are named.
UPGRADE = [
    f"ALTER TABLE results ADD COLUMN code TEXT NOT NULL DEFAULT '{OLD_CODE}'",
]
V2_TABLES = [
    "CREATE TABLE models (fingerprint TEXT PRIMARY KEY, label TEXT NOT NULL, info TEXT NOT NULL, seen REAL NOT NULL)",
    "CREATE INDEX results_by_model ON results (model, code)",
]


class CacheError(UserError):
    """The cache file cannot be used; the message names it and says what to do."""


def default_path(output: str | Path) -> Path:
    """Beside the run folders: results/runs/.cache/ for the default results/runs/<timestamp>, so a
    rerun with a fresh timestamp, or a run of another size, finds the earlier answers."""
    return Path(output).expanduser().parent / ".cache" / FILENAME


def _advice(path: Path) -> str:
    return f"move or delete {path} (outputs never depend on it), or pass --cache OTHER_PATH or --no-cache"


class ResultCache:
    """One open cache file. `for_model(fingerprint)` gives the view the engine uses."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise CacheError(f"--cache {self.path} is a folder; give a file path (e.g. {self.path / FILENAME})")
        try:
            self._check_header()
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # unreadable file, read-only or missing disk
            raise CacheError(f"cannot use {self.path} as the result cache ({e.strerror or e}); "
                             "pass --cache OTHER_PATH or --no-cache") from None
        new = not self.path.exists()
        try:
            # isolation_level=None: this module opens and commits its transactions itself
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise CacheError(f"cannot open the result cache {self.path} ({e}); {_advice(self.path)}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as e:
            self.conn.close()
            if new:  # a file this run created and could not fill: not left behind, empty
                for leftover in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                    leftover.unlink(missing_ok=True)
            if is_full(e):
                raise CacheError(full_message(self.path, "creating" if new else "opening")) from None
            raise CacheError(f"the result cache {self.path} is damaged ({e}); {_advice(self.path)}") from None
        except BaseException:
            self.conn.close()
            raise

    def _check_header(self) -> None:
        """Refuse a non-SQLite file before SQLite touches it (an empty file is a new cache)."""
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
            if head != SQLITE_MAGIC:
                raise CacheError(f"{self.path} is not a gpt2eval result cache (not an SQLite file); "
                                 f"it was left untouched; {_advice(self.path)}")

    def _setup(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._retry_locked(lambda: c.execute("BEGIN IMMEDIATE"))  # two runs creating the file: one wins
        try:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                for statement in SCHEMA + V2_TABLES:
                    c.execute(statement)
                c.executemany("INSERT INTO meta VALUES (?, ?)",
                              [("app", APP), ("schema_version", str(SCHEMA_VERSION)), ("created", str(time.time()))])
                tables = {"meta", "results", "models"}
            try:
                meta = dict(c.execute("SELECT name, value FROM meta")) if "meta" in tables else {}
            except sqlite3.OperationalError:  # a "meta" table of some other program
                meta = {}
            if meta.get("app") == APP and meta.get("schema_version") == "1" and "results" in tables:
                # Its rows were keyed without the code digest: they stay (listed, prunable), never served.
                for statement in UPGRADE + V2_TABLES:
                    c.execute(statement)
                c.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
                meta["schema_version"] = str(SCHEMA_VERSION)
        finally:
            c.execute("COMMIT")
        if meta.get("app") != APP or "results" not in tables:
            raise CacheError(f"{self.path} is an SQLite file but not a gpt2eval result cache; it was left "
                             f"untouched; {_advice(self.path)}")
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise CacheError(f"the result cache {self.path} has schema version {meta.get('schema_version')}, this "
                             f"gpt2eval reads version {SCHEMA_VERSION}; {_advice(self.path)}")
        # Only now that the file is known to be ours (WAL mode is recorded in the file itself).
        self._retry_locked(lambda: c.execute("PRAGMA journal_mode = WAL"))
        c.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process loses no commit
        # Page-level damage would otherwise surface hours later, mid-task; this reads the file once.
        problems = [r[0] for r in c.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems[:3]))

    def _retry_locked(self, step):
        """The busy timeout covers ordinary writes, but not every lock taken while a file is being
        created or switched to WAL; retry those for the same length of time."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return step()
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def for_model(self, fingerprint: str, label: str = "", info: dict | None = None,
                  code: str | None = None) -> "ModelCache":
        """The view for one model; `label` (its id) and `info` (dtype, device, versions) name it
        in `run_eval.py cache`. `code`: the code digest (default: this gpt2eval's)."""
        try:
            self.conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?)",
                              (fingerprint, label, json.dumps(info or {}, sort_keys=True), time.time()))
        except sqlite3.DatabaseError as e:
            if is_full(e):
                raise CacheError(full_message(self.path, "writing")) from None
            raise CacheError(f"writing the result cache {self.path} failed ({e}); {_advice(self.path)}") from None
        return ModelCache(self, fingerprint, code or code_digest())

    def not_reused(self, fingerprint: str, code: str, label: str = "") -> tuple[int, int]:
        """Rows this model's view will never serve: (rows of this fingerprint written by other code,
        rows of the same model id under another fingerprint: other files, config, dtype, device or
        library versions)."""
        other_code = self.conn.execute("SELECT COUNT(*) FROM results WHERE model = ? AND code != ?",
                                       (fingerprint, code)).fetchone()[0]
        other_fp = 0 if not label else self.conn.execute(
            "SELECT COUNT(*) FROM results WHERE model IN "
            "(SELECT fingerprint FROM models WHERE label = ? AND fingerprint != ?)", (label, fingerprint)).fetchone()[0]
        return other_code, other_fp

    def summary(self) -> list[dict]:
        """One entry per (model, code digest): its name, entries, bytes of values, last write."""
        rows = self.conn.execute(
            "SELECT r.model, r.code, COUNT(*), SUM(LENGTH(r.value)), MAX(r.created), m.label, m.info "
            "FROM results r LEFT JOIN models m ON m.fingerprint = r.model GROUP BY r.model, r.code "
            "ORDER BY m.label, r.model, MAX(r.created)")
        return [{"fingerprint": fp, "code": code, "entries": n, "bytes": size or 0, "last_written": last,
                 "label": label, "info": json.loads(info) if info else {}}
                for fp, code, n, size, last, label, info in rows]

    def prune(self, *, models: list[str] | None = None, older_than: float | None = None,
              other_code: str | None = None) -> tuple[int, int]:
        """Delete the rows that match every given condition (none given: every row): of these
        fingerprints, last written before `older_than` (a time.time()), written by code other than
        `other_code`. Returns (rows, bytes of values) removed; models left without rows are forgotten.
        The file keeps its size until disk.vacuum."""
        where, params = [], []
        if models is not None:
            where.append(f"model IN ({','.join('?' * len(models))})")
            params += models
        if older_than is not None:
            where.append("created < ?")
            params.append(older_than)
        if other_code is not None:
            where.append("code != ?")
            params.append(other_code)
        cond = " WHERE " + " AND ".join(where) if where else ""
        c = self.conn
        self._retry_locked(lambda: c.execute("BEGIN IMMEDIATE"))
        try:
            n, size = c.execute(f"SELECT COUNT(*), SUM(LENGTH(value)) FROM results{cond}", params).fetchone()
            c.execute(f"DELETE FROM results{cond}", params)
            c.execute("DELETE FROM models WHERE fingerprint NOT IN (SELECT DISTINCT model FROM results)")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return n, size or 0

    def count(self, fingerprint: str | None = None) -> int:
        if fingerprint is None:
            return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM results WHERE model = ?", (fingerprint,)).fetchone()[0]

    def close(self) -> None:
        # The last connection to close checkpoints the write-ahead log into the main file.
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ModelCache:
    """The engine's seam: get_many(keys) -> {key: value} and put_many({key: value}), for one model."""

    def __init__(self, cache: ResultCache, fingerprint: str, code: str | None = None):
        # code: the digest of the code that answers (default: this gpt2eval's, fingerprint.code_digest)
        self.cache, self.fingerprint, self.code = cache, fingerprint, code or code_digest()
        # Live counters; the runner puts this dict in results.json.
        self.stats = {"path": str(cache.path), "hits": 0, "misses": 0, "writes": 0, "unreadable_rows": 0}

    def _row_key(self, key: str) -> str:
        return hashlib.sha256(f"{__version__}\n{self.fingerprint}\n{self.code}\n{key}".encode()).hexdigest()

    def not_reused_message(self, label: str = "") -> str | None:
        """One log line when the file holds answers for this model that this run will not use."""
        other_code, other_fp = self.cache.not_reused(self.fingerprint, self.code, label)
        if not other_code and not other_fp:
            return None
        parts = ([f"{other_code} answers of this model written by other gpt2eval code"] if other_code else []) + \
            ([f"{other_fp} answers of {label} under another fingerprint (other files, config, dtype, device or "
              "library versions)"] if other_fp else [])
        return (f"result cache {self.cache.path}: {' and '.join(parts)} are not reused; "
                "`python run_eval.py cache` lists them, `cache prune` removes them")

    def get_many(self, keys: list[str]) -> dict:
        by_row = {self._row_key(k): k for k in keys}
        rows, found = list(by_row), {}
        try:
            for s in range(0, len(rows), CHUNK):
                part = rows[s:s + CHUNK]
                sql = f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(part))})"
                for row_key, value in self.cache.conn.execute(sql, part):
                    try:
                        found[by_row[row_key]] = json.loads(value)
                    except ValueError:  # a damaged value is recomputed (and overwritten), never used
                        self.stats["unreadable_rows"] += 1
        except sqlite3.DatabaseError as e:
            raise CacheError(f"reading the result cache {self.cache.path} failed ({e}); "
                             f"{_advice(self.cache.path)}") from None
        self.stats["hits"] += len(found)
        self.stats["misses"] += len(keys) - len(found)
        return found

    def put_many(self, results: dict) -> None:
        now = time.time()
        rows = [(self._row_key(k), self.fingerprint, json.dumps(v, separators=(",", ":")), now, self.code)
                for k, v in results.items()]  # encoded first: nothing but SQLite runs inside the transaction
        conn = self.cache.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", rows)
            except sqlite3.Error:
                if conn.in_transaction:  # SQLite has rolled back already on some errors (a full disk)
                    conn.execute("ROLLBACK")
                raise
            finally:
                # The commit, also when Ctrl-C lands in here: every row is a complete answer, keep them.
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            if is_full(e):
                raise CacheError(full_message(self.cache.path, "writing")) from None
            raise CacheError(f"writing the result cache {self.cache.path} failed ({e}); "
                             f"{_advice(self.cache.path)}") from None
        self.stats["writes"] += len(rows)
