"""enwik8, text8 and One Billion Word, and the checksum-verified downloads they share.

Their data is not in ../shared/data, so these tests build small files in the exact upstream formats
(a zip with member `enwik8` / `text8`, a .tar.gz with the benchmark's member path) and inject their
checksums; the download path itself is exercised through file:// URLs.
"""
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import REPO
from gpt2eval.protocols import download
from gpt2eval.cli.main import main
from gpt2eval.api.data import DataSource
from gpt2eval.protocols.detokenize import one_billion_word_detokenize
from gpt2eval.errors import DataError
from gpt2eval.api.plugins import select

SPLIT = 5_000_000
SENTENCES = ["The council said on Tuesday it would review the plan , which critics say is too costly .",
             "\" We do n't know yet , \" a spokesman said .",
             "Shares in the company 's parent rose 3.2 per cent to $ 14.50 ( about £ 9 ) .",
             "It was the team 's third win in a row ."]


def task(name):
    return select([name])[0]


def remote_for(path, relpath, **kw):
    """A Remote whose URL and pins are those of a local test file."""
    data = path.read_bytes()
    return download.Remote(relpath, path.as_uri(), len(data), sha256=hashlib.sha256(data).hexdigest(), **kw)


def zip_file(path, member, data: bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2EVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


# ---- downloads ----------------------------------------------------------------------------

def test_download_verifies_caches_and_rejects(tmp_path, cache, monkeypatch):
    src = tmp_path / "upstream.zip"
    zip_file(src, "enwik8", b"<mediawiki>\n" * 100)
    remote = remote_for(src, "enwik8/enwik8.zip", sha1=hashlib.sha1(src.read_bytes()).hexdigest())
    path, source = download.obtain(remote, None)
    assert path == cache / "enwik8/enwik8.zip" and path.read_bytes() == src.read_bytes()
    assert source["verified"] and source["sha256"] == remote.sha256 and source["url"] == src.as_uri()
    src.unlink()
    assert download.obtain(remote, None)[0] == path           # read from the cache, not downloaded again
    path.unlink()
    zip_file(src, "enwik8", b"something else\n")
    bad = dataclasses.replace(remote, size=src.stat().st_size)
    with pytest.raises(DataError, match="sha256 is .* but .*'s is"):
        download.obtain(bad, None)
    assert not (cache / "enwik8/enwik8.zip").exists() and not list(cache.rglob("*.part"))  # nothing half-written
    with pytest.raises(DataError, match="bytes but"):
        download.obtain(dataclasses.replace(remote, size=remote.size + 1), None)
    refused = dataclasses.replace(remote, url="http://127.0.0.1:9/enwik8.zip")
    for var in download.OFFLINE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DataError, match=r"download of http://127.0.0.1:9/enwik8.zip to .*enwik8.zip failed"):
        download.obtain(refused, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"enwik8/enwik8.zip is not in the cache at .* downloads are off"):
        download.obtain(refused, None)


def test_data_dir_copy_is_used_and_verified(tmp_path, cache):
    (tmp_path / "d/text8").mkdir(parents=True)
    local = zip_file(tmp_path / "d/text8/text8.zip", "text8", b" abc" * 10)
    remote = remote_for(local, "text8/text8.zip")
    assert download.obtain(remote, tmp_path / "d")[0] == local
    with pytest.raises(DataError, match=r"d/text8/text8.zip: sha256 is"):
        download.obtain(dataclasses.replace(remote, sha256="0" * 64), tmp_path / "d")


# ---- enwik8 and text8 ---------------------------------------------------------------------

def enwik8_bytes(cut: int) -> bytes:
    """Wikipedia-like XML with multi-byte UTF-8 whose last 5,000,000 bytes start `cut` bytes into a
    4-byte character (0: at its start) and end with "end\\n"."""
    rng = random.Random(0)
    words = ["the", "of", "Zürich", "[[Category:Cities]]", "&lt;ref&gt;", "naïve", "東京", "<text>", "1998"]
    lines, size = [], 0
    while size < SPLIT:
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) + "\n")
        size += len(lines[-1].encode("utf-8"))
    rest = "".join(lines).encode("utf-8")[:SPLIT - (4 - cut) - 20].decode("utf-8", errors="ignore").encode("utf-8")
    rest += b"a" * (SPLIT - (4 - cut) - 4 - len(rest)) + b"end\n"
    return b"<mediawiki>\n" * 1000 + "𝄞".encode("utf-8") + rest


@pytest.mark.parametrize("cut", [0, 3])
def test_enwik8_split_pieces_and_score(tmp_path, cache, cut, engine_factory):
    data = enwik8_bytes(cut)
    split = data[-SPLIT:]
    src = zip_file(tmp_path / "enwik8.zip", "enwik8", data)
    t = task("enwik8")
    t.remote = remote_for(src, "enwik8/enwik8.zip")
    ds = t.load(DataSource(None))
    assert sum(n for _, n in ds.examples) == SPLIT and ds.source["member_bytes"] == len(data)
    assert ds.source["split_sha256"] == hashlib.sha256(split).hexdigest() and ds.n_full == len(ds.examples)
    text = "".join(t for t, _ in ds.examples)
    assert text.startswith("\ufffd" if cut else "𝄞") and text.endswith("end\n")
    assert text.encode("utf-8") == (split if not cut else "\ufffd".encode() + split[1:])
    examples = ds.examples[:3]
    stream = t.requests(examples)["stream"]
    result = engine_factory().run([stream])
    scored = t.score(examples, {"stream": result[0]})
    rows = scored.samples
    assert sum(r["nll"] for r in rows) == pytest.approx(-result[0].logprob)
    assert scored.metrics["bits_per_byte"] == pytest.approx(
        sum(r["nll"] for r in rows) / math.log(2) / sum(r["units"] for r in rows))
    assert sum(r["gpt2_tokens"] for r in rows) == result[0].n_tokens


def test_text8_blocks_and_bad_characters(tmp_path, cache):
    rng = random.Random(1)
    words = ["anarchism", "originated", "as", "a", "term", "of", "abuse", "first", "used", "against", "one", "nine"]
    text = " " + " ".join(rng.choice(words) for _ in range(1_100_000))
    src = zip_file(tmp_path / "text8.zip", "text8", text.encode("ascii"))
    t = task("text8")
    t.remote = remote_for(src, "text8/text8.zip")
    ds = t.load(DataSource(None))
    assert len(ds.examples) == ds.n_full == 500 and all(n == 10_000 for _, n in ds.examples)
    assert "".join(b for b, _ in ds.examples) == text[-SPLIT:]
    bad = zip_file(tmp_path / "text8.zip", "text8", (text[:-10] + "Hello, you").encode("ascii"))
    t.remote = remote_for(bad, "text8/text8.zip")
    with pytest.raises(DataError, match="bytes but"):   # the cached copy is the first file: caught
        t.load(DataSource(None))
    (cache / "text8/text8.zip").unlink()
    with pytest.raises(DataError, match=r"text8.zip, member text8: the test split has 2 bytes other than a-z"):
        t.load(DataSource(None))


def test_zip_without_the_member(tmp_path, cache):
    src = zip_file(tmp_path / "enwik8.zip", "wrong-name", b"x" * 10)
    t = task("enwik8")
    t.remote = remote_for(src, "enwik8/enwik8.zip")
    with pytest.raises(DataError, match="has no member 'enwik8'"):
        t.load(DataSource(None))


# ---- One Billion Word ---------------------------------------------------------------------

def test_one_billion_word_detokenizer():
    out = one_billion_word_detokenize("\n".join(SENTENCES)).split("\n")
    assert out == ["The council said on Tuesday it would review the plan, which critics say is too costly.",
                   '"We don\'t know yet," a spokesman said.',
                   "Shares in the company's parent rose 3.2 per cent to $14.50 (about £9).",
                   "It was the team's third win in a row."]
    for a, b in zip(SENTENCES, out):   # only spaces change
        assert a.replace(" ", "") == b.replace(" ", "")


def shard_text() -> str:
    return "\n".join(SENTENCES) + "\n"


def test_one_billion_word_from_the_archive_then_the_cache(tmp_path, cache, engine_factory):
    tgz = tmp_path / "lm1b.tar.gz"
    member = sys.modules[type(task("1bw")).__module__].MEMBER
    with tarfile.open(tgz, "w:gz") as tar:
        data = shard_text().encode("utf-8")
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    t = task("1bw")
    t.archive = remote_for(tgz, t.archive.relpath)
    t.shard_md5 = hashlib.md5(shard_text().encode()).hexdigest()
    ds = t.load(DataSource(None))
    assert (cache / "1bw/news.en.heldout-00000-of-00050").read_text() == shard_text()
    assert ds.source["archive"]["sha256"] == t.archive.sha256 and len(ds.examples) == ds.n_full == 4
    tgz.unlink()
    assert t.load(DataSource(None)).examples == ds.examples   # the extracted shard is cached
    engine = engine_factory()
    results = engine.run(t.requests(ds.examples)["sentence"])
    assert [r.n_tokens for r in results] == [len(engine.encoder.encode(d + "\n")) for _, d in ds.examples]
    alone = engine.run(t.requests(ds.examples[2:3])["sentence"])[0]       # no context across lines
    assert alone.logprob == pytest.approx(results[2].logprob, abs=1e-4)
    scored = t.score(ds.examples, {"sentence": results})
    n_orig = sum(len(s.split()) + 1 for s in SENTENCES)        # tokens + one end-of-sentence a line
    assert scored.extra["original_tokens"] == n_orig == sum(r["original_tokens"] for r in scored.samples)
    assert scored.metrics["ppl"] == pytest.approx(math.exp(sum(r["nll"] for r in scored.samples) / n_orig))
    (cache / "1bw/news.en.heldout-00000-of-00050").write_text(shard_text().replace("row", "line"))
    with pytest.raises(DataError, match="md5 is .* but the upstream file's is"):
        t.load(DataSource(None))


# ---- through the CLI ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["enwik8", "text8", "1bw"])
def test_missing_data_offline_is_one_line_and_exit_2(name, tmp_path, tiny_model_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GPT2EVAL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("GPT2EVAL_DATA_DIR", None)
    proc = subprocess.run([sys.executable, str(REPO / "run_eval.py"), "--model", str(tiny_model_dir), "--tasks", name,
                           "--data-dir", str(tmp_path), "--output", str(tmp_path / "o"), "--no-cache"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert "downloads are off" in lines[0] and "http" in lines[0] and str(tmp_path / "cache") in lines[0]
    assert not (tmp_path / "o" / "results.json").exists()


def test_the_three_tasks_run_with_their_files_in_place(tmp_path, cache, monkeypatch, tiny_model_dir):
    """Files in the upstream formats under --data-dir, the checks pointed at their own hashes."""
    d = tmp_path / "data"
    for sub in ("enwik8", "text8", "1bw"):
        (d / sub).mkdir(parents=True)
    zip_file(d / "enwik8/enwik8.zip", "enwik8", enwik8_bytes(0))
    zip_file(d / "text8/text8.zip", "text8", (" one two three" * 400_000).encode())
    (d / "1bw/news.en.heldout-00000-of-00050").write_text(shard_text())
    real_verify, pins = download.verify, {}
    for rel in ("enwik8/enwik8.zip", "text8/text8.zip"):
        pins[rel] = remote_for(d / rel, rel)
    monkeypatch.setattr(download, "verify", lambda path, remote: real_verify(path, pins[remote.relpath]))
    monkeypatch.setattr(download, "md5_checked", lambda path, md5: path)
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model_dir), "--tasks", "enwik8,text8,1bw", "--data-dir", str(d), "--limit", "2",
                 "--output", str(out), "--no-cache", "--no-progress"]) == 0
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    assert tasks["enwik8"]["subset"] and tasks["enwik8"]["n_examples"] == 2
    assert tasks["text8"]["n_full"] == 500 and tasks["1bw"]["n_full"] == 4
    assert set(tasks["enwik8"]["metrics"]) == {"bits_per_byte", "token_ppl"}
    assert tasks["text8"]["metric_info"]["bits_per_char"]["reference"] == "text8/bits_per_char"
    assert tasks["1bw"]["metric_info"]["ppl"]["reference"] == "1bw/ppl"
    for t in tasks.values():  # every metric has its interval, computed from the sample rows (gpt2eval.api.uncertainty)
        assert set(t["intervals"]) == set(t["metrics"])
        assert not any("point_mismatch" in iv for iv in t["intervals"].values())
    rows = (out / "samples/1bw.jsonl").read_text().splitlines()
    assert len(rows) == 2 and json.loads(rows[0])["original_tokens"] == len(SENTENCES[0].split()) + 1
