"""Where evaluation data comes from: a local folder of upstream files, or the Hugging Face hub.

Local files follow the layout of the project's shared data folder (lambada/lambada_test.jsonl, ...).
Known upstream files are checked against their published SHA-256, and every task records the
provenance of what it read, so a results file says exactly which bytes produced it. A file that
is not under --data-dir is named (the exact path looked for) in the one line that says the task
falls back to the hub, or in the one-line error when the hub cannot supply it either; whether the
hub can be reached is found out once, quickly (gpt2eval.hub), never by the hub library's retries.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import hub as hub_access
from ..errors import DataError, UserError

KNOWN_SHA256 = {
    "lambada/lambada_test.jsonl": "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226",
    "ptb/ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb/ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "wikitext/wikitext-103/wiki.test.tokens": "56db52eb157b1ab5c89646eef70510c1eca6e12a3bfdb99f0d6b05b4eacb75b9",
    "wikitext/wikitext-2/wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    "wikitext/wikitext-2-raw/wiki.test.raw": "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
    "coqa/coqa-dev-v1.0.json": "dfa367a9733ce53222918d0231d9b3bedc2b8ee831a2845f62dfc70701f2540a",
    "coqa/coqa-dev-v1.0_first_story.json": "a8a383fcbc10e52caaae5c900ebc7f75dda82e5570b4bdf00631c58155a29aa4",
    "triviaqa/triviaqa_sample.json": "2f46278e1f4f02ad57c9df690f5facec5e28972f9d15a5300cf8c84af3d201b1",
    "triviaqa/llmfoundry_triviaqa_small.jsonl": "a484b8f1da8b890dab1d1501b0cafac7ffa2c694a9f234125482b103f3c6fa09",
    "cnn_dailymail/frank_cnndm_test_250.jsonl": "95ba1f6f37e3b6347c214ad8f6f65ea8930c2cdbbdd85be04f7d7ffc10ecacac",
    "nq_open/NQ-open.dev.jsonl": "f15567f38099f3615f5b8a685c0aef449c11ad90d3da3735e8d1b98115b40616",
    "wmt14/newstest2014-fren-src.fr.sgm": "31f98dd65e89ee6d7c3de9b72709a7e4d3f28171e8c2a81802e11cf6b36f25ed",
    "wmt14/newstest2014-fren-ref.en.sgm": "c73727c954e92396eb3eed1b2730804a77130c1c3a8bc6a3f5646766fc92a8eb",
    "wmt14/newstest2014-fren-src.en.sgm": "5521ed9b1d07763c7e8d7ddfc0fda269cd114612a6283bd3836979ea4dd10a26",
    "wmt14/newstest2014-fren-ref.fr.sgm": "c57025c8a338c642fe3ad0206ddc75d258a5584e1d470b75f37af2fb666d7e93",
    # CBT, Winograd: the shared data folder's files (SOURCES.md); enwik8 and the 1BW archive:
    # huggingface/datasets' pins (datasets/enwik8/dataset_infos.json, datasets/lm1b/urls_checksums).
    "cbt/cbtest_CN_valid_2000ex.SUBSET_1ex.txt": "a04ff14e4696db830a1dc4156a5999fec6f3c13f52cf93f71acfddf98e7b9e86",
    "cbt/cbtest_NE_valid_2000ex.SUBSET_1ex.txt": "1fb37dcd0aa9a6c56ee730cd2754ecb02e6db22b0a96bc3951cd25a8d16a819b",
    "cbt/cbt_valid.txt": "b28c46bb0986a04943f2eac750b367fda372d43b9ca521789fa0a493888cd100",
    "winograd/WSCollection.xml": "8d72fe16331cfcddfc2f8ec6f87c5a07e186f913e023705a998a5cc6011994e4",
    "winograd/llmfoundry_winograd_wsc.jsonl": "746336c27cd2e39a554cb1b8b4869d0f1ae2577ac5bfe799842d26bca5a5bf5e",
    "enwik8/enwik8.zip": "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
    "1bw/1-billion-word-language-modeling-benchmark-r13output.tar.gz":
        "01ba60381110baf7f189dfd2b8374de371e8c9a340835793f190bdae9e90a34e",
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Dataset:
    """What a task evaluates: its examples, the size of the full set, and where they came from."""
    examples: list
    n_full: int
    source: dict = field(default_factory=dict)


class DataSource:
    """Finds local files under `data_dir` (else $GPT2EVAL_DATA_DIR) and falls back to the hub.
    `log`: where the one line about a hub fallback goes (default: stderr)."""

    def __init__(self, data_dir: str | os.PathLike | None = None, log=None):
        data_dir = data_dir or os.environ.get("GPT2EVAL_DATA_DIR")
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise UserError(f"data folder {self.data_dir} does not exist; pass --data-dir with the folder that "
                            "holds lambada/, ptb/, wikitext/ ...")
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.task = ""              # the task loading now (messages name it)
        self.looked_for: list[str] = []  # relpaths this task looked for and did not find

    @contextmanager
    def loading(self, task: str):
        """Messages while `task` loads name it; files it looked for are its own."""
        self.task, self.looked_for = task, []
        try:
            yield self
        finally:
            self.task, self.looked_for = "", []

    def find(self, relpath: str) -> Path | None:
        """The local file, verified when its hash is known; None when there is no such file."""
        if self.data_dir is None or not (self.data_dir / relpath).is_file():
            self.looked_for.append(relpath)
            return None
        path = self.data_dir / relpath
        self.looked_for.clear()  # found: what was missed before was an alternative, not this task's gap
        expected = KNOWN_SHA256.get(relpath)
        if expected:
            got = sha256_of(path)
            if got != expected:
                raise DataError(f"{path}: SHA-256 is {got} but the upstream file's is {expected}; "
                                "the file is altered or a different version; restore the original")
        return path

    @staticmethod
    def file_source(path: Path, relpath: str) -> dict:
        digest = sha256_of(path)
        return {"kind": "file", "path": str(path.resolve()), "sha256": digest,
                "verified": KNOWN_SHA256.get(relpath) == digest}

    def _not_local(self) -> str:
        """What was looked for and not found, as the start of a sentence ("" when nothing was)."""
        if not self.looked_for:
            return ""
        if self.data_dir is None:
            return f"no --data-dir given (it would hold {' or '.join(self.looked_for)})"
        paths = " or ".join(str(self.data_dir / r) for r in self.looked_for)
        return f"{paths} {'does' if len(self.looked_for) == 1 else 'do'} not exist (--data-dir)"

    def hub(self, dataset: str, config: str | None, split: str, **kw):
        """Load a split from the hub. A file missing under --data-dir is named first, in the one line
        that announces the fallback; an unreachable hub is found out in seconds (gpt2eval.hub), and
        then only the local hub cache is read; any failure is one line with the cause."""
        what = f"{dataset} ({config or 'default'}, {split})"
        prefix = f"{self.task}: " if self.task else ""
        missing, self.looked_for = self._not_local(), []
        why = hub_access.unreachable(hub_access.DATASETS)
        if missing and self.data_dir is not None and not why:
            self.log(f"{prefix}{missing}; reading {what} from the Hugging Face hub instead")
        try:
            import datasets
            hub_access.unreachable(hub_access.DATASETS)  # again: datasets copies the offline flag when imported
            rows = datasets.load_dataset(dataset, config, split=split, **kw)
        except Exception as e:  # noqa: BLE001 - network, auth, missing dataset: all the same advice
            local = ("put the file under --data-dir (docs/data.md)" if self.data_dir is not None else
                     "offline, pass --data-dir with the upstream files (docs/data.md)")
            if why:
                cause = (f"cannot load {what}: it is not in the local hub cache ({hub_access.hub_cache_dir()}) and "
                         f"the hub cannot be reached ({why})")
            else:
                cause = (f"cannot load {what} from the Hugging Face hub ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
            raise DataError(f"{prefix}{missing + ', and ' if missing else ''}{cause}; {local}") from None
        if missing and self.data_dir is not None and why:
            self.log(f"{prefix}{missing}; read {what} from the local hub cache (the hub cannot be reached: {why})")
        return rows

    @staticmethod
    def hub_source(dataset: str, config: str | None, split: str, rows=None) -> dict:
        fingerprint = getattr(rows, "_fingerprint", None)
        return {"kind": "hub", "dataset": dataset, "config": config, "split": split, "fingerprint": fingerprint}


def read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes().count(b"\n", 0, e.start) + 1  # the offset is into the whole file's bytes
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte {e.start}); "
                        "re-download the upstream file") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; re-download the upstream file")
    return text


def jsonl_rows(path: Path):
    """(line number, parsed value) of each non-blank line of a JSON-lines file. Lines are split at
    "\n" only, as JSON Lines defines them (a JSON string may hold U+2028 and its kin raw); a line
    that is not JSON is one error naming the file and the line."""
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {n}: not valid JSON ({e.msg}); fix or re-download the file") from None
        yield n, row


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Parse a JSON-lines file; a bad line names the file, the line and the field."""
    rows = []
    for n, row in jsonl_rows(path):
        for key in required:
            if not isinstance(row, dict) or key not in row:
                raise DataError(f"{path}, line {n}: missing field {key!r}")
            if row[key] is None:
                raise DataError(f"{path}, line {n}: field {key!r} is null")
        rows.append(row)
    return rows


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}); fix or re-download the file") from None


def text_from_hub_lines(rows, column: str = "text") -> str:
    """Rebuild an upstream line-per-row text file from hub rows.

    Salesforce/wikitext keeps each line's '\\n' and stores the original ' \\n' blank lines as ''.
    Undoing that gives back the upstream bytes, whose SHA-256 can then be checked.
    """
    return "".join(row[column] if row[column] else " \n" for row in rows)
