"""Natural Questions on the original release's annotations: a small development file in the exact
upstream format (google-research-datasets/natural-questions README: example_id, question_text,
document_html, document_tokens with html_token, long_answer_candidates, five annotations with
short_answers and yes_no_answer), written here. Its questions are the paper's Table 5 questions,
with annotations made up for the test (the real ones are not in the shared data): a YES/NO
annotation, a second annotator's span with HTML tokens inside, an "A+" gold, and no answer at all."""
import gzip
import json

import pytest

from gpt2eval.api.data import DataSource
from gpt2eval.api.plugins import select
from gpt2eval.cli.main import main
from gpt2eval.errors import DataError
from gpt2eval.metrics import nq_golds


def example(example_id: int, question: str, words: list, annotations: list) -> dict:
    """One line of nq-dev-*.jsonl.gz. words: the page's tokens, "<Tag>"s being HTML; annotations:
    per annotator (its short-answer token spans, "YES" / "NO" / "NONE")."""
    html, tokens = "<html><body>", []
    for w in words:
        start = len(html.encode())
        html += w + " "
        tokens.append({"token": w, "start_byte": start, "end_byte": start + len(w.encode()),
                       "html_token": w.startswith("<")})
    html += "</body></html>"
    null = {"start_byte": -1, "end_byte": -1, "start_token": -1, "end_token": -1}
    long_answer = {"start_byte": tokens[0]["start_byte"], "end_byte": tokens[-1]["end_byte"], "start_token": 0,
                   "end_token": len(tokens), "candidate_index": 0}
    notes = [{"annotation_id": 1000 * example_id + k,
              "long_answer": long_answer if spans or yes_no != "NONE" else {**null, "candidate_index": -1},
              "short_answers": [{"start_byte": tokens[s]["start_byte"], "end_byte": tokens[e - 1]["end_byte"],
                                 "start_token": s, "end_token": e} for s, e in spans],
              "yes_no_answer": yes_no} for k, (spans, yes_no) in enumerate(annotations)]
    notes += [{"annotation_id": 1000 * example_id + k, "long_answer": {**null, "candidate_index": -1},
               "short_answers": [], "yes_no_answer": "NONE"} for k in range(len(notes), 5)]  # five on dev
    return {"example_id": example_id, "question_text": question, "question_tokens": question.split(),
            "document_title": "Page", "document_url": f"https://en.wikipedia.org//w/index.php?curid={example_id}",
            "document_html": html, "document_tokens": tokens, "annotations": notes,
            "long_answer_candidates": [{"start_byte": tokens[0]["start_byte"], "end_byte": tokens[-1]["end_byte"],
                                        "start_token": 0, "end_token": len(tokens), "top_level": True}]}


GUN = "do you have to have a gun permit to shoot at a range"
UBUNTU = "who is the founder of the ubuntu project"
BLOOD = "what is the most common blood type in sweden"
NOBODY = "who won the most mvp awards in the nba"
SPECIAL = [
    example(101, GUN, ["<P>", "Typically", ",", "no", "permit", "is", "needed", "</P>"],
            [([], "NO"), ([(1, 4)], "NONE")]),
    example(102, UBUNTU, ["<P>", "Mark", "Richard", "Shuttleworth", "founded", "it", ";", "<B>", "Mark", "</B>",
                          "Shuttleworth", "</P>"], [([(1, 4)], "NONE"), ([(7, 11)], "NONE")]),
    example(103, BLOOD, ["<Table>", "<Td>", "A+", "</Td>", "<Td>", "AB+", "</Td>", "</Table>"],
            [([(2, 3)], "NONE"), ([(5, 6)], "NONE")]),
    example(104, NOBODY, ["<P>", "Kareem", "Abdul-Jabbar", "won", "six", "</P>"], [([], "NONE")]),
]
FILLERS = [example(i, f"filler question {i}", ["<P>", f"answer{i}", "</P>"], [([(1, 2)], "NONE")]) for i in range(8)]


def write(path, rows, compress=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_golds_are_every_annotators_spans_without_html_and_yes_no(tmp_path):
    questions, unanswerable = nq_golds.read_original([write(tmp_path / "nq-dev-00.jsonl.gz", SPECIAL)])
    golds = {q["question"]: q["answers"] for q in questions}
    assert golds == {GUN: ["no", "Typically , no"], UBUNTU: ["Mark Richard Shuttleworth", "Mark Shuttleworth"],
                     BLOOD: ["A+", "AB+"]}
    assert unanswerable == 1 and NOBODY not in golds  # no short answer, no yes/no: left out, counted
    assert [q["id"] for q in questions] == ["101", "102", "103"] and [q["line"] for q in questions] == [1, 2, 3]


def test_hub_rows_give_the_same_golds(tmp_path):
    """The hub's columns, built from the same lines as huggingface/datasets' natural_questions script
    builds them (tokens {token, is_html}, annotations as columns, yes_no_answer 1 YES / 0 NO / -1)."""
    def hub_row(ex):
        notes = ex["annotations"]
        return {"id": str(ex["example_id"]), "question": {"text": ex["question_text"]},
                "document": {"tokens": {"token": [t["token"] for t in ex["document_tokens"]],
                                        "is_html": [t["html_token"] for t in ex["document_tokens"]]}},
                "annotations": {"short_answers": [{"start_token": [s["start_token"] for s in a["short_answers"]],
                                                   "end_token": [s["end_token"] for s in a["short_answers"]]}
                                                  for a in notes],
                                "yes_no_answer": [{"YES": 1, "NO": 0}.get(a["yes_no_answer"], -1) for a in notes]}}
    from_file = nq_golds.read_original([write(tmp_path / "d.jsonl.gz", SPECIAL)])
    from_hub = nq_golds.from_hub_rows([hub_row(ex) for ex in SPECIAL])
    assert [(q["question"], q["answers"]) for q in from_hub[0]] == [(q["question"], q["answers"]) for q in from_file[0]]
    assert from_hub[1] == from_file[1] == 1
    with pytest.raises(DataError, match="row 1 of the hub's natural_questions"):
        nq_golds.from_hub_rows([{"question": "q", "answer": ["a"]}])  # an NQ-open row


@pytest.mark.parametrize("name", ["nq-dev-00.jsonl.gz", "nq-dev-00.jsonl"])
def test_score_counts_yes_no_a_second_annotators_span_and_not_a_for_a_plus(tmp_path, capsys, name):
    gold = write(tmp_path / name, SPECIAL, compress=name.endswith(".gz"))
    (tmp_path / "p.json").write_text(json.dumps({GUN: "No", UBUNTU: "Mark Shuttleworth", BLOOD: "A",
                                                 NOBODY: "Michael Jordan"}))
    assert main(["score", "--task", "natural_questions", "--gold", str(gold), "--predictions",
                 str(tmp_path / "p.json"), "--output", str(tmp_path / "out")]) == 0
    task = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["natural_questions"]
    # "No": the YES/NO annotation; "Mark Shuttleworth": the second annotator's span, <B> </B> dropped;
    # "A": wrong against "A+" (unguarded, both normalise to "" and it would count)
    assert task["metrics"]["exact_match"] == pytest.approx(200 / 3)
    assert task["extra"] == {"n_gold": 3, "n_missing": 0, "gold_format": "original"}
    assert task["intervals"]["exact_match"]["n"] == 3 and "natural_questions exact_match: 66.6667" in capsys.readouterr().out


def test_the_task_reads_the_original_files_by_default(tmp_path, monkeypatch):
    write(tmp_path / "natural_questions/v1.0/dev/nq-dev-00.jsonl.gz", FILLERS + SPECIAL)
    with pytest.raises(DataError, match=r"nq-dev-00.jsonl.gz: SHA-256 is .* released file's is 78a7f789"):
        select(["natural_questions"])[0].load(DataSource(tmp_path))  # a pinned name: checked, never skipped
    monkeypatch.delitem(nq_golds.DEV_SHA256, "nq-dev-00.jsonl.gz")
    task = select(["natural_questions:question_format=paper"])[0]
    ds = task.load(DataSource(tmp_path))
    assert [e["question"] for e in ds.examples] == [GUN, UBUNTU, BLOOD] and ds.n_full == 3
    assert ds.source["golds_used"] == "original" and "fallback" not in ds.source
    assert ds.source["n_unanswerable_left_out"] == 1 and ds.source["files"][0]["sha256"] and not ds.source["verified"]
    assert ds.source["examples"][0] == ["filler question 0", "answer0"]  # the first 8 answerable: not scored
    assert "original NQ dev annotations" in task.protocol["golds_used"]
    assert "original NQ dev" in task.metrics["exact_match"].variant
    (req,) = task.requests(ds.examples[:1])["answer"]
    assert req.context.startswith("Q: Filler question 0?\nA: answer0\n") and req.context.endswith(
        "Q: Do you have to have a gun permit to shoot at a range?\nA:")


def test_bad_original_files_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "nq-dev-09.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"example_id": 1, "question_text": "q", "annotations": []}\n{"example_id": 2}\n'))
    with pytest.raises(DataError, match=r"nq-dev-09.jsonl.gz, line 1: not an example of the original NQ release"):
        nq_golds.read_original([bad])
    (tmp_path / "p.json").write_text("{}")
    assert main(["score", "--task", "natural_questions", "--gold", str(bad), "--predictions",
                 str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1: not an example of the original NQ release" in err[0]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in FILLERS).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[:len(whole) // 2])  # a truncated download
    (tmp_path / "html.jsonl.gz").write_bytes(b"<html>an error page</html>")  # not gzip at all
    for name in ("cut.jsonl.gz", "html.jsonl.gz"):
        with pytest.raises(DataError, match=f"{name}: cannot be read as gzip-compressed UTF-8 JSON lines"):
            nq_golds.read_original([tmp_path / name])
