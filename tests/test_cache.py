"""The result cache on its own: round trips, namespacing, and refusing files that are not ours."""
from __future__ import annotations

import sqlite3

import pytest

from gpt2eval.cache import CacheError, ResultCache, default_path


def test_round_trip_is_exact_and_namespaced_by_model(tmp_path):
    path = tmp_path / "c.sqlite"
    value = [[-1.2345678901234567e-05, -12.000000000000002, 0.1 + 0.2], [True, False, True]]
    with ResultCache(path) as cache:
        a, b = cache.for_model("fp-a"), cache.for_model("fp-b")
        a.put_many({"k1": value, "k2": {"text": "x"}})
        assert b.get_many(["k1", "k2"]) == {}  # same request, other weights: never shared
        assert a.stats["writes"] == 2 and b.stats["misses"] == 2
    with ResultCache(path) as cache:  # reopened: committed rows are there, floats bit-identical
        got = cache.for_model("fp-a").get_many(["k1", "k2", "k3"])
        assert got == {"k1": value, "k2": {"text": "x"}}
        assert cache.count() == 2 and cache.count("fp-a") == 2 and cache.count("fp-b") == 0


def test_answers_of_another_gpt2eval_version_are_not_reused(tmp_path, monkeypatch):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        cache.for_model("fp").put_many({"k": 1})
        monkeypatch.setattr("gpt2eval.cache.__version__", "99.0")
        assert cache.for_model("fp").get_many(["k"]) == {}


def test_many_keys_and_an_unreadable_row_is_recomputed_not_used(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        view = cache.for_model("fp")
        view.put_many({f"k{i}": i for i in range(1200)})  # more keys than one SELECT may bind
        assert len(view.get_many([f"k{i}" for i in range(1300)])) == 1200
        cache.conn.execute("UPDATE results SET value = '{not json' WHERE key = ?", (view._row_key("k7"),))
        got = view.get_many(["k7", "k8"])
        assert got == {"k8": 8} and view.stats["unreadable_rows"] == 1


def test_default_path_is_beside_the_run_folders(tmp_path):
    assert default_path("results/runs/20250101-000000").as_posix() == "results/runs/.cache/gpt2eval-cache.sqlite"
    assert default_path(tmp_path / "run1") == tmp_path / ".cache" / "gpt2eval-cache.sqlite"


def test_wal_mode_and_schema_version_recorded(tmp_path):
    path = tmp_path / "c.sqlite"
    ResultCache(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(con.execute("SELECT name, value FROM meta"))["schema_version"] == "1"
    con.close()


def test_foreign_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my thesis, do not delete\n" * 100)
    before = path.read_bytes()
    with pytest.raises(CacheError, match="not a gpt2eval result cache.*left untouched.*--no-cache"):
        ResultCache(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (id INTEGER, blob BLOB)")  # a 'meta' of another program
    con.execute("INSERT INTO meta VALUES (1, x'00')")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(CacheError, match="SQLite file but not a gpt2eval result cache"):
        ResultCache(path)
    assert path.read_bytes() == before  # not even switched to WAL


def test_damaged_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.for_model("fp").put_many({f"k{i}": list(range(300)) for i in range(200)})
    raw = bytearray(path.read_bytes())
    assert len(raw) > 8 * 4096
    raw[3 * 4096:6 * 4096] = b"\xa5" * (3 * 4096)  # overwrite pages in the middle of the file
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match=r"result cache .*c\.sqlite is damaged.*move or delete"):
        ResultCache(path)


def test_newer_schema_and_folder_are_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    ResultCache(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(CacheError, match="schema version 99"):
        ResultCache(path)
    with pytest.raises(CacheError, match="is a folder"):
        ResultCache(tmp_path)


def test_empty_file_becomes_a_new_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    path.touch()
    with ResultCache(path) as cache:
        cache.for_model("fp").put_many({"k": 1})
        assert cache.count() == 1
