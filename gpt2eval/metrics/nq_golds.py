"""The gold answers of Natural Questions, from the original release's annotations or from NQ-open.

The original release (Kwiatkowski et al. 2019, `v1.0/dev/nq-dev-0[0-4].jsonl.gz`): one JSON object
per line with `example_id`, `question_text`, the page as `document_tokens` (each `token`, its
`html_token` flag and its bytes) and, on the development set, five `annotations`, each with
`short_answers` (token spans [start_token, end_token)) and a `yes_no_answer` (YES, NO or NONE). A
question's golds here are every annotator's short answers, each the text of the span's non-HTML
tokens joined by single spaces (an HTML tag inside a span, `<b>`, is markup, not answer), then
"yes" or "no" for each YES/NO annotation, duplicates dropped, in annotation order. A question
without either (no annotator found a short answer) has no gold: `read_original` leaves it out and
counts it. The hub's google-research-datasets/natural_questions holds the same annotations in
columns (`golds_of_hub_row`); the same rule gives the same golds.

NQ-open (Lee et al. 2019) is `squad.read_nq_open`'s format; `read_gold_file` tells the two apart
by a file's first line, for `run_eval.py score`. No torch here.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from ..errors import DataError
from .squad import read_nq_open

# SHA-256 of the release's development files, as huggingface/datasets pins their download URLs
# (datasets/natural_questions/dataset_infos.json); a file of another name is read unverified.
DEV_SHA256 = {
    "nq-dev-00.jsonl.gz": "78a7f7899aa7d0bc9a29878cdb90daabbeda21a93e3730d8861f20ec736790b2",
    "nq-dev-01.jsonl.gz": "9cebaa5eb69cf4ce067079370456b2939d4154a17da88faf73844d8c418cfb9e",
    "nq-dev-02.jsonl.gz": "7b82aa74a35025ed91f514ad21e05c4a66cdec56ac1f6b77767a578156ff3bfc",
    "nq-dev-03.jsonl.gz": "c7d45bb464bda3da7788c985b07def313ab5bed69bcc258acbe6f0918050bf6e",
    "nq-dev-04.jsonl.gz": "00969275e9fb6a5dcc7e20ec9589c23ac00de61c979c8b957f4180b5b9a3043a",
}
YES_NO = {"YES": "yes", "NO": "no"}
HUB_YES_NO = {1: "yes", 0: "no"}  # the hub's ClassLabel (NO, YES); -1 is NONE


def span_text(tokens: list[str], is_html: list[bool], start: int, end: int) -> str:
    """The words of tokens [start, end): the non-HTML tokens joined by single spaces."""
    return " ".join(t for t, html in zip(tokens[start:end], is_html[start:end]) if not html)


def golds(tokens: list[str], is_html: list[bool], annotations: list[tuple[list[tuple[int, int]], str | None]]) -> list[str]:
    """Every annotation's short-answer spans as text, then its yes/no answer; duplicates dropped.
    annotations: per annotator, (its spans as (start_token, end_token), "yes", "no" or None)."""
    out = []
    for spans, yes_no in annotations:
        out += [span_text(tokens, is_html, s, e) for s, e in spans if 0 <= s < e]
        out += [yes_no] if yes_no else []
    return [g for g in dict.fromkeys(out) if g.strip()]


def golds_of_line(row: dict) -> list[str]:
    """The golds of one example of the original release (a parsed line of nq-dev-*.jsonl.gz)."""
    doc = row["document_tokens"]
    tokens, is_html = [t["token"] for t in doc], [bool(t["html_token"]) for t in doc]
    return golds(tokens, is_html, [([(sa["start_token"], sa["end_token"]) for sa in a["short_answers"]],
                                    YES_NO.get(str(a["yes_no_answer"]).upper())) for a in row["annotations"]])


def golds_of_hub_row(row: dict) -> list[str]:
    """The golds of one row of the hub's google-research-datasets/natural_questions (columns:
    document.tokens {token, is_html}, annotations {short_answers [{start_token, end_token}], yes_no_answer})."""
    doc, notes = row["document"]["tokens"], row["annotations"]
    return golds(list(doc["token"]), list(doc["is_html"]),
                 [(list(zip(sa["start_token"], sa["end_token"])), HUB_YES_NO.get(yn))
                  for sa, yn in zip(notes["short_answers"], notes["yes_no_answer"])])


def _lines(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated or non-gzip download
        raise DataError(f"{path}: cannot be read as {'gzip-compressed ' if path.name.endswith('.gz') else ''}"
                        f"UTF-8 JSON lines ({type(e).__name__}: {e}); re-download the file") from None


def read_original(paths: list[Path]) -> tuple[list[dict], int]:
    """The answerable questions of these files, in file order, as {"line" (1-based position in the
    files read together), "id" (example_id), "question", "answers"}, and how many had no gold."""
    questions, unanswerable, position = [], 0, 0
    for path in paths:
        for n, line in _lines(Path(path)):
            if not line.strip():
                continue
            position += 1
            try:
                row = json.loads(line)
                question, answers = row["question_text"], golds_of_line(row)
            except (json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError) as e:
                raise DataError(f"{path}, line {n}: not an example of the original NQ release (example_id, "
                                f"question_text, document_tokens, annotations) ({type(e).__name__}: {e})") from None
            if answers:
                questions.append({"line": position, "id": str(row.get("example_id", "")), "question": question,
                                  "answers": answers})
            else:
                unanswerable += 1
    return questions, unanswerable


def from_hub_rows(rows) -> tuple[list[dict], int]:
    """`read_original` for the hub's rows."""
    questions, unanswerable = [], 0
    for i, row in enumerate(rows, 1):
        try:
            answers = golds_of_hub_row(row)
        except (KeyError, TypeError, IndexError) as e:
            raise DataError(f"row {i} of the hub's natural_questions is not in its known columns (document.tokens, "
                            f"annotations) ({type(e).__name__}: {e})") from None
        if answers:
            questions.append({"line": i, "id": str(row["id"]), "question": row["question"]["text"], "answers": answers})
        else:
            unanswerable += 1
    return questions, unanswerable


def checked_dev_file(path: Path) -> dict:
    """Where a development file came from: its path and SHA-256, `verified` when its name is pinned
    in DEV_SHA256 and its bytes match; a pinned name with other bytes is a DataError."""
    from ..api.data import sha256_of
    digest, expected = sha256_of(path), DEV_SHA256.get(Path(path).name)
    if expected and digest != expected:
        raise DataError(f"{path}: SHA-256 is {digest} but the released file's is {expected}; the file is altered "
                        "or truncated; re-download it")
    return {"path": str(Path(path).resolve()), "sha256": digest, "verified": digest == expected}


def is_original(path: Path) -> bool:
    """Whether a gold file is in the original release's format (else NQ-open's): its first line."""
    for _, line in _lines(path):
        if line.strip():
            try:
                return "annotations" in json.loads(line)
            except (json.JSONDecodeError, TypeError):
                return False
    return False


def read_gold_file(path: Path) -> tuple[list[dict], str]:
    """Questions of a gold file of either format, and which ("original" or "nq_open"); as the
    natural_questions task reads them."""
    if is_original(path):
        return read_original([path])[0], "original"
    return read_nq_open(path), "nq_open"
