"""Data resolution: hashes, provenance, and clear errors."""
import shutil

import pytest

from conftest import DATA
from gpt2eval.api.data import KNOWN_SHA256, DataSource, read_jsonl, sha256_of
from gpt2eval.errors import DataError, UserError


@pytest.mark.parametrize("rel", sorted(r for r in KNOWN_SHA256 if (DATA / r).exists()))
def test_shared_files_match_their_published_hashes(rel):
    assert sha256_of(DATA / rel) == KNOWN_SHA256[rel]
    src = DataSource.file_source(DataSource(DATA).find(rel), rel)
    assert src["verified"] and src["sha256"] == KNOWN_SHA256[rel] and src["path"].endswith(rel)


def test_altered_file_is_refused_naming_file_and_both_hashes(tmp_path):
    rel = "ptb/ptb.test.txt"
    (tmp_path / "ptb").mkdir()
    shutil.copy(DATA / rel, tmp_path / rel)
    with open(tmp_path / rel, "a") as f:
        f.write(" one more line \n")
    with pytest.raises(DataError) as e:
        DataSource(tmp_path).find(rel)
    msg = str(e.value)
    assert str(tmp_path / rel) in msg and KNOWN_SHA256[rel] in msg and sha256_of(tmp_path / rel) in msg


def test_missing_local_file_falls_back_and_missing_folder_is_an_error(tmp_path):
    assert DataSource(tmp_path).find("lambada/lambada_test.jsonl") is None
    with pytest.raises(UserError, match="does not exist"):
        DataSource(tmp_path / "nope")


def test_hub_failure_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        DataSource(None).hub("EleutherAI/lambada_openai", "default", "test")
    assert "--data-dir" in str(e.value) and "\n" not in str(e.value)


def test_bad_jsonl_names_file_line_and_field(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError, match=r"x.jsonl, line 2: not valid JSON"):
        read_jsonl(p)
    p.write_text('{"text": "ok"}\n{"other": 1}\n')
    with pytest.raises(DataError, match=r"line 2: missing field 'text'"):
        read_jsonl(p, required=("text",))
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        read_jsonl(p)
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_jsonl(p)
