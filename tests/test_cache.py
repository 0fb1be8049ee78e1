"""The result cache on its own: round trips, namespacing, and refusing files that are not ours."""
from __future__ import annotations

import sqlite3

import pytest

from gpt2eval.cache.store import CacheError, ResultCache, default_path


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
        monkeypatch.setattr("gpt2eval.cache.store.__version__", "99.0")
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
    assert dict(con.execute("SELECT name, value FROM meta"))["schema_version"] == "2"  # 2: rows record their code
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


# ---- what the key holds: the code, the model's files and config, the versions ---------------------

def test_answers_written_by_other_code_are_not_reused_and_counted(tmp_path):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        cache.for_model("fp", label="m", code="old-code").put_many({"k": 1, "j": 2})
        view = cache.for_model("fp", label="m", code="new-code")
        assert view.get_many(["k", "j"]) == {}
        note = view.not_reused_message("m")
        assert "2 answers of this model written by other gpt2eval code are not reused" in note
        assert cache.for_model("fp", label="m", code="old-code").get_many(["k"]) == {"k": 1}
        cache.for_model("fp2", label="m", code="new-code")  # the same model id, loaded otherwise
        assert "2 answers of m under another fingerprint" in cache.for_model("fp2", label="m",
                                                                            code="new-code").not_reused_message("m")


def copy_package(tmp_path):
    from gpt2eval.cache import fingerprint
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in fingerprint.ANSWERING_MODULES:
        (pkg / f"{name}.py").parent.mkdir(exist_ok=True)
        (pkg / f"{name}.py").write_bytes((fingerprint.PACKAGE / f"{name}.py").read_bytes())
    return pkg


def test_a_change_to_any_byte_of_any_answering_module_changes_the_code_digest(tmp_path):
    from gpt2eval.cache.fingerprint import ANSWERING_MODULES, code_digest
    pkg = copy_package(tmp_path)
    base = code_digest(pkg)
    assert base == code_digest()  # the copy is the installed code
    seen = {base}
    for name in ANSWERING_MODULES:
        path = pkg / f"{name}.py"
        original = path.read_bytes()
        for pos in (0, len(original) // 2, len(original) - 1):
            changed = bytearray(original)
            changed[pos] ^= 0x01
            path.write_bytes(bytes(changed))
            digest = code_digest(pkg)
            assert digest not in seen, (name, pos)
            seen.add(digest)
        path.write_bytes(original)
    assert code_digest(pkg) == base


def test_the_answering_modules_cover_everything_the_engine_imports():
    """A new module that the engine comes to depend on must join ANSWERING_MODULES (or answers it
    computes could be served after it changes)."""
    import ast

    from gpt2eval.cache.fingerprint import ANSWERING_MODULES, PACKAGE
    # Exception classes change messages, never an answer; the scale-out modules say which worker
    # this is and carry answers and news between workers (the batches and their answers are the same
    # whatever their number: engine/chains, tests/test_distributed.py); io writes files; store, disk
    # and fingerprint are the cache itself.
    not_answering = {"errors", "distributed/group", "distributed/watch", "io", "cache/store", "cache/fingerprint",
                     "cache/disk"}
    seen, todo = set(), ["engine/engine"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):  # lazy imports too
            if isinstance(node, ast.ImportFrom) and node.level:
                base = name.split("/")[:-node.level]  # the package the relative import starts from
                module = base + (node.module.split(".") if node.module else [])
                names = ["/".join(module)] if node.module else ["/".join(module + [a.name]) for a in node.names]
                todo += [n for n in names if (PACKAGE / f"{n}.py").is_file()]  # not `from .. import __version__`
    assert seen - not_answering <= set(ANSWERING_MODULES), seen - not_answering - set(ANSWERING_MODULES)


def fp(folder, config=None, **kw):
    from transformers import AutoConfig

    from gpt2eval.cache.fingerprint import model_fingerprint
    args = {"dtype": "float32", "device_type": "cpu", "torch_version": "2.13.0", "transformers_version": "5.24.0", **kw}
    return model_fingerprint(str(folder), config or AutoConfig.from_pretrained(folder), **args)


def test_local_fingerprint_covers_config_tokenizer_weights_dtype_device_versions(tiny_model_dir, tmp_path):
    import json
    import shutil
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    base = fp(folder)
    assert fp(tiny_model_dir) == base  # where the folder lies is not part of the model
    (folder / "README.md").write_text("notes\n")
    assert fp(folder) == base
    for kw in ({"dtype": "bfloat16"}, {"device_type": "cuda"}, {"torch_version": "2.14.0"},
               {"transformers_version": "5.25.0"}):
        assert fp(folder, **kw) != base, kw
    seen = {base}
    files = sorted(p.name for p in folder.iterdir() if p.name != "README.md")
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= set(files), files
    for name in files:
        path = folder / name
        before = path.read_bytes()
        path.write_bytes(before + b" ")  # one byte more (the same content to any JSON reader)
        got = fp(folder)
        assert got not in seen, name
        seen.add(got)
        path.write_bytes(before)
    (folder / "generation_config.json").unlink()  # a folder without one is another model too
    assert fp(folder) not in seen
    # The configuration as loaded counts by itself too (a hub model has no folder to hash).
    cfg = json.loads((folder / "config.json").read_text())
    from transformers import GPT2Config
    assert fp("some/hub-id", GPT2Config(**cfg), commit="abc") != \
        fp("some/hub-id", GPT2Config(**{**cfg, "layer_norm_epsilon": 0.5}), commit="abc")
    assert fp("some/hub-id", GPT2Config(**cfg), commit="abc") != fp("some/hub-id", GPT2Config(**cfg), commit="abd")


def test_same_weights_other_config_is_not_served_the_first_models_answers(tiny_model_dir, tmp_path, capsys):
    """The issue's case: a copy with the same weights but layer_norm_epsilon 0.5 in config.json,
    run with the same cache file, was served all of the first model's LAMBADA answers."""
    import json
    import shutil

    from conftest import DATA
    from gpt2eval.cli.main import main
    other = tmp_path / "other-eps"
    shutil.copytree(tiny_model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "layer_norm_epsilon": 0.5}))
    cache = tmp_path / "shared.sqlite"
    runs = {}
    for name, model in (("first", tiny_model_dir), ("other", other), ("again", tiny_model_dir)):
        assert main(["--model", str(model), "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "6",
                     "--no-progress", "--cache", str(cache), "--output", str(tmp_path / name)]) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    first, other_run, again = (runs[n]["tasks"]["lambada"] for n in ("first", "other", "again"))
    n = first["items_computed"]
    assert n >= 12 and other_run["items_cached"] == 0 and other_run["items_computed"] == n  # 6 passages
    assert other_run["metrics"]["ppl"] != first["metrics"]["ppl"]
    assert runs["other"]["model"]["fingerprint"] != runs["first"]["model"]["fingerprint"]
    assert again["items_cached"] == n and again["metrics"] == first["metrics"]


def test_a_run_says_when_answers_of_its_model_were_written_by_other_code(tiny_model_dir, tmp_path, capsys,
                                                                          monkeypatch):
    import json

    from conftest import DATA
    from gpt2eval.cli.main import main
    args = ["--model", str(tiny_model_dir), "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "3",
            "--no-progress", "--cache", str(tmp_path / "c.sqlite")]
    monkeypatch.setattr("gpt2eval.cache.store.code_digest", lambda: "0" * 32)  # an earlier gpt2eval
    assert main(args + ["--output", str(tmp_path / "old")]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    n = json.loads((tmp_path / "old" / "results.json").read_text())["tasks"]["lambada"]["items_computed"]
    assert main(args + ["--output", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert f"{n} answers of this model written by other gpt2eval code are not reused" in out and n >= 6
    assert json.loads((tmp_path / "new" / "results.json").read_text())["tasks"]["lambada"]["items_cached"] == 0


def test_a_version_1_file_is_upgraded_and_its_rows_are_never_served(tmp_path):
    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE results (key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL, "
                "created REAL NOT NULL)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "gpt2eval result cache"), ("schema_version", "1")])
    con.executemany("INSERT INTO results VALUES (?, ?, ?, ?)", [(f"row{i}", "old-fp", "[1]", 1.0) for i in range(5)])
    con.commit()
    con.close()
    with ResultCache(path) as cache:
        (entry,) = cache.summary()
        assert entry["entries"] == 5 and entry["code"] == "schema-1" and entry["label"] is None
        assert cache.prune(other_code="anything") == (5, 15) and cache.count() == 0


# ---- run_eval.py cache: show and prune -----------------------------------------------------------

def filled_cache(path, now):
    """Two models, one with answers of an older code, rows written a day and ten days ago."""
    import time as time_module

    from gpt2eval.cache.fingerprint import code_digest
    with ResultCache(path) as cache:
        info = {"dtype": "float32", "device": "cpu"}
        cache.for_model("a" * 32, label="org/model-a", info=info).put_many({f"k{i}": [i] for i in range(4)})
        cache.for_model("a" * 32, label="org/model-a", info=info, code="0" * 32).put_many({"old": [0]})
        cache.for_model("b" * 32, label="/tmp/model-b", info=info).put_many({"k": "x" * 1000})
        cache.conn.execute("UPDATE results SET created = ? WHERE model = ?", (now - 10 * 86400, "b" * 32))
        cache.conn.execute("UPDATE results SET created = ? WHERE model = ?", (now - 86400, "a" * 32))
    assert abs(time_module.time() - now) < 60
    return code_digest()


def test_cache_show_lists_entries_by_model_and_code(tmp_path, capsys):
    import time as time_module

    from gpt2eval.cli.main import main
    path = tmp_path / "c.sqlite"
    code = filled_cache(path, time_module.time())
    assert main(["cache", "--cache", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: 6 entries") and code[:12] in out[0]
    rows = {tuple(line.split()[:2]) + (line.split()[3],): line for line in out[2:]}  # model, fingerprint, entries
    assert ("org/model-a", "a" * 12, "4") in rows and ("org/model-a", "a" * 12, "1") in rows
    assert "this code" in rows[("org/model-a", "a" * 12, "4")]
    assert "other (000000000000)" in rows[("org/model-a", "a" * 12, "1")]
    assert ("/tmp/model-b", "b" * 12, "1") in rows and "float32/cpu" in rows[("/tmp/model-b", "b" * 12, "1")]


@pytest.mark.parametrize("how, removed, left", [
    (["--other-code"], 1, {("a" * 32, 4), ("b" * 32, 1)}),
    (["--older-than", "5"], 1, {("a" * 32, 5)}),
    (["--model", "org/model-a"], 5, {("b" * 32, 1)}),
    (["--model", "bbbbbbbb"], 1, {("a" * 32, 5)}),  # a fingerprint prefix
    (["--model", "org/model-a", "--other-code"], 1, {("a" * 32, 4), ("b" * 32, 1)}),  # conditions combine
    (["--older-than", "0.5", "--model", "/tmp/model-b"], 1, {("a" * 32, 5)}),
    (["--all"], 6, set()),
])
def test_cache_prune(tmp_path, capsys, how, removed, left):
    import time as time_module
    from collections import Counter

    from gpt2eval.cli.main import main
    path = tmp_path / "c.sqlite"
    filled_cache(path, time_module.time())
    assert main(["cache", "prune", "--cache", str(path)] + how) == 0
    assert capsys.readouterr().out.startswith(f"removed {removed} entries (")
    with ResultCache(path) as cache:
        got = Counter(m for (m,) in cache.conn.execute("SELECT model FROM results"))
        assert set(got.items()) == left
        assert {m for (m,) in cache.conn.execute("SELECT fingerprint FROM models")} == {m for m, _ in left}


@pytest.mark.parametrize("argv, expected", [
    (["cache", "prune"], "say what to remove: --model ID, --older-than DAYS, --other-code, or --all"),
    (["cache", "--all"], "go with `cache prune`"),
    (["cache", "prune", "--all", "--other-code"], "--all removes everything; give it alone"),
    (["cache", "prune", "--model", "nope/model"], "no entries for model 'nope/model'"),
    (["cache", "prune", "--older-than", "-1"], "--older-than must be a number of days >= 0"),
    (["cache", "prune", "--older-than", "soon"], "--older-than: invalid float value: 'soon'"),
])
def test_cache_subcommand_mistakes_are_one_line(tmp_path, capsys, argv, expected):
    import time as time_module

    from gpt2eval.cli.main import main
    path = tmp_path / "c.sqlite"
    filled_cache(path, time_module.time())
    before = path.read_bytes()
    assert main(argv + ["--cache", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and expected in err, err
    if "nope/model" in expected:
        assert "org/model-a" in err and "/tmp/model-b" in err  # says what the file holds
    assert path.read_bytes() == before


def test_cache_subcommand_never_creates_a_file(tmp_path, capsys):
    from gpt2eval.cli.main import main
    assert main(["cache", "--cache", str(tmp_path / "none.sqlite")]) == 2
    assert "no result cache at" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_generations_are_cached_as_token_ids_and_cut_into_text_when_read(engine_factory, tokenizer, tmp_path,
                                                                         monkeypatch):
    import json

    from gpt2eval.engine import decode
    from gpt2eval.api.requests import Generation
    reqs = [Generation("The cat sat on the", 12, stop=(".", "\n")), Generation("Hello world", 6)]
    with ResultCache(tmp_path / "c.sqlite") as cache:
        first = engine_factory(batch_size=2, cache=cache.for_model("fp")).run(reqs)
        values = [json.loads(v) for (v,) in cache.conn.execute("SELECT value FROM results")]
        assert len(values) == 2 and all(set(v) == {"token_ids", "token_logprobs", "ended"} for v in values)  # no text
        assert sorted(v["token_ids"] for v in values) == sorted(r.token_ids for r in first)
        assert sorted(v["token_logprobs"] for v in values) == sorted(r.token_logprobs for r in first)
        for r in first:
            assert r.raw_text == tokenizer.decode(r.token_ids) and r.raw_text.startswith(r.text)
        # Another way of cutting the text applies to cached answers too: nothing cut is stored.
        real = decode.finish
        monkeypatch.setattr("gpt2eval.engine.engine.finish", lambda tok, a, r: real(tok, a, r.__class__(
            r.context, r.max_new_tokens, stop=r.stop + (" ",))))
        view = cache.for_model("fp")
        again = engine_factory(batch_size=2, cache=view).run(reqs)
        assert view.stats["hits"] == 2
        for a, r, req in zip(again, first, reqs):
            cuts = [r.raw_text.index(s) for s in req.stop + (" ",) if s in r.raw_text]
            assert a.token_ids == r.token_ids and a.raw_text == r.raw_text and a.token_logprobs == r.token_logprobs
            assert a.text == r.raw_text[:min(cuts, default=len(r.raw_text))]
        assert any(a.text != r.text for a, r in zip(again, first))  # the new cut really differs


def test_prune_finds_a_model_folder_by_any_path_to_it(tmp_path, capsys, monkeypatch):
    from gpt2eval.cli.main import main
    from gpt2eval.cache.fingerprint import model_label
    (tmp_path / "models" / "m").mkdir(parents=True)
    path = tmp_path / "c.sqlite"
    monkeypatch.chdir(tmp_path / "models")
    with ResultCache(path) as cache:  # as a run names it: `--model m` from inside models/
        assert model_label("m") == str(tmp_path / "models" / "m")
        cache.for_model("f" * 32, label=model_label("m")).put_many({"k": 1})
    monkeypatch.chdir(tmp_path)
    assert main(["cache", "prune", "--cache", str(path), "--model", "models/m"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 entries")
