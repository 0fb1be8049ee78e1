"""CoQA, TriviaQA and CNN/Daily Mail end to end through the command line on the tiny random model,
the `score` subcommand, and the conversion of hub rows (shaped like the hub's) into task examples."""
import csv
import json
import sys

import pytest

from conftest import DATA
from gpt2eval.cli.main import main
from gpt2eval.api.data import DataSource, read_jsonl
from gpt2eval.metrics import triviaqa as tqa
from gpt2eval.api.plugins import select

COQA_FILE = DATA / "coqa" / "coqa-dev-v1.0_first_story.json"
TRIVIA_JSONL = DATA / "triviaqa" / "llmfoundry_triviaqa_small.jsonl"
TRIVIA_JSON = DATA / "triviaqa" / "triviaqa_sample.json"
LIMIT = 10


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """The issue's "done when" command: all three tasks, --limit 10, compared with the paper's xl."""
    out = tmp_path_factory.mktemp("gen-run")
    code = main(["--model", str(tiny_model_dir), "--tasks", "coqa,triviaqa,cnn_dailymail", "--data-dir", str(DATA),
                 "--limit", str(LIMIT), "--output", str(out), "--reference-size", "xl", "--no-progress",
                 "--no-cache"])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_task_reports_its_metrics_in_percent(run):
    _, results = run
    tasks = results["tasks"]
    assert set(tasks["coqa"]["metrics"]) >= {"f1", "em", "f1_in_domain", "f1_children_stories"}
    assert "f1_out_domain" not in tasks["coqa"]["metrics"]  # no out-of-domain turn was evaluated
    assert set(tasks["triviaqa"]["metrics"]) == {"exact_match", "f1"}
    assert set(tasks["cnn_dailymail"]["metrics"]) == {f"{row}_{s}" for row in ("tldr", "no_hint", "random3", "lead3")
                                                      for s in ("rouge1", "rouge2", "rougeL", "rouge_avg")}
    for t in tasks.values():
        assert t["n_examples"] == LIMIT and t["subset"]
        assert all(0 <= v <= 100 for v in t["metrics"].values()), t["metrics"]
    assert [tasks[t]["n_full"] for t in ("coqa", "triviaqa", "cnn_dailymail")] == [7983, 17944, 11490]
    # The baselines need no model: lead-3 of real articles overlaps the highlights.
    assert tasks["cnn_dailymail"]["metrics"]["lead3_rouge1"] > 15


def test_comparison_has_the_papers_values_where_it_has_them(run):
    out, _ = run
    rows = {(r["task"], r["metric"]): r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert float(rows["coqa", "f1"]["paper"]) == 55.0
    assert float(rows["cnn_dailymail", "tldr_rouge_avg"]["paper"]) == 21.4
    assert float(rows["cnn_dailymail", "lead3_rougeL"]["paper"]) == 36.62
    assert rows["triviaqa", "exact_match"]["paper"] == ""  # the paper has no TriviaQA number


def test_prediction_files_are_in_the_official_formats(run):
    out, _ = run
    coqa = json.loads((out / "predictions" / "coqa.json").read_text())
    assert [(r["id"], r["turn_id"]) for r in coqa] == [("3dr23u6we5exclen4th8uq9rb42tel", t) for t in range(1, 11)]
    assert all(set(r) == {"id", "turn_id", "answer"} and isinstance(r["answer"], str) for r in coqa)
    trivia = json.loads((out / "predictions" / "triviaqa.json").read_text())
    assert list(trivia) == [f"line{n}" for n in range(1, 11)] and all(isinstance(a, str) for a in trivia.values())
    sample = json.loads((out / "samples" / "coqa.jsonl").read_text().splitlines()[0])
    assert "\n" not in sample["answer"] and sample["prompt_tokens"] > 300 and len(sample["prompt_sha256"]) == 64
    for line in (out / "samples" / "cnn_dailymail.jsonl").read_text().splitlines():
        s = json.loads(line)
        assert all(n + 100 <= 1024 for n in s["prompt_tokens"].values())  # article cut to fit, hint kept


def score(*args):
    return main(["score", *map(str, args)])


def test_score_reproduces_the_runs_metrics_exactly(run, tmp_path):
    out, results = run
    # Gold restricted to the questions the run evaluated (--limit 10), in the official formats.
    coqa = json.loads(COQA_FILE.read_text())
    story = coqa["data"][0]
    story["questions"], story["answers"] = story["questions"][:LIMIT], story["answers"][:LIMIT]
    story["additional_answers"] = {k: v[:LIMIT] for k, v in story["additional_answers"].items()}
    (tmp_path / "coqa_gold.json").write_text(json.dumps(coqa))
    (tmp_path / "trivia_gold.jsonl").write_text("".join(TRIVIA_JSONL.read_text().splitlines(True)[:LIMIT]))
    for task, gold in (("coqa", tmp_path / "coqa_gold.json"), ("triviaqa", tmp_path / "trivia_gold.jsonl")):
        assert score("--task", task, "--gold", gold, "--predictions", out / "predictions" / f"{task}.json",
                     "--output", tmp_path / task) == 0
        scored = json.loads((tmp_path / task / "results.json").read_text())
        assert scored["tasks"][task]["metrics"] == results["tasks"][task]["metrics"]


def test_score_against_full_gold_counts_missing_questions(run, capsys):
    out, _ = run
    assert score("--task", "coqa", "--gold", COQA_FILE, "--predictions", out / "predictions" / "coqa.json") == 0
    assert "2 of 12 gold questions have no prediction" in capsys.readouterr().out


def test_score_official_triviaqa_json(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps({"tc_33": "Sunset Blvd."}))
    assert score("--task", "triviaqa", "--gold", TRIVIA_JSON, "--predictions", tmp_path / "p.json") == 0
    assert "triviaqa exact_match: 100.0000" in capsys.readouterr().out


@pytest.mark.parametrize("gold, predictions, message", [
    ("missing.json", '[]', "--gold"),
    (COQA_FILE, "{not json", "not valid JSON"),
    (COQA_FILE, '{"id": "x"}', "official CoQA prediction format"),
    (COQA_FILE, '[{"id": "x", "turn_id": 1}]', "record 1"),
    (TRIVIA_JSON, '[]', "not CoQA gold data"),  # a TriviaQA file given as CoQA gold
])
def test_score_bad_files_are_one_line_errors(tmp_path, capsys, gold, predictions, message):
    (tmp_path / "p.json").write_text(predictions)
    gold = gold if gold != "missing.json" else tmp_path / gold
    assert score("--task", "coqa", "--gold", gold, "--predictions", tmp_path / "p.json") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert message in err


# ---- hub rows, shaped like the hub's, through the tasks' load -------------------------------------------

def load_from_hub_rows(monkeypatch, task_name, rows):
    monkeypatch.setattr(DataSource, "hub", lambda self, *a, **k: rows)
    return select([task_name])[0].load(DataSource(None))


def test_coqa_hub_rows_become_single_answer_turns(monkeypatch):
    story = json.loads(COQA_FILE.read_text())["data"][0]
    row = {"source": story["source"], "story": story["story"],
           "questions": [q["input_text"] for q in story["questions"]],
           "answers": {"input_text": [a["input_text"] for a in story["answers"]],
                       "answer_start": [a["span_start"] for a in story["answers"]],
                       "answer_end": [a["span_end"] for a in story["answers"]]}}
    ds = load_from_hub_rows(monkeypatch, "coqa", [row])
    assert len(ds.examples) == 12 and ds.source["kind"] == "hub"
    first, last = ds.examples[0], ds.examples[-1]
    assert (first["id"], first["turn_id"], first["golds"], first["source"]) == ("validation-0", 1, ["white"], "mctest")
    assert last["history"][0] == ("What color was Cotton?", "white") and len(last["history"]) == 11


def test_triviaqa_hub_rows_score_like_the_official_file(monkeypatch):
    official = json.loads(TRIVIA_JSON.read_text())["Data"][0]
    a = official["Answer"]
    row = {"question": official["Question"], "question_id": official["QuestionId"], "question_source": "x",
           "entity_pages": {}, "search_results": {},
           "answer": {"aliases": a["Aliases"], "normalized_aliases": a["NormalizedAliases"],
                      "matched_wiki_entity_name": "", "normalized_matched_wiki_entity_name": "",
                      "normalized_value": a["NormalizedValue"], "type": a["Type"], "value": a["Value"]}}
    ds = load_from_hub_rows(monkeypatch, "triviaqa", [row])
    assert ds.examples == tqa.questions_from_official(json.loads(TRIVIA_JSON.read_text()))


def test_cnn_dailymail_hub_rows_and_detokenized_local_references(monkeypatch):
    row = {"id": "abc", "article": " Text. ", "highlights": "One.\nTwo."}
    ds = load_from_hub_rows(monkeypatch, "cnn_dailymail", [row])
    assert ds.examples == [{"id": "abc", "article": "Text.", "reference": "One.\nTwo."}]
    local = select(["cnn_dailymail"])[0].load(DataSource(DATA))
    raw = read_jsonl(DATA / "cnn_dailymail" / "frank_cnndm_test_250.jsonl")[0]["reference_tokenized"]
    assert " 's " in raw and " 's " not in local.examples[0]["reference"] and len(local.examples) == 250


def test_random3_is_seeded_by_article_and_keeps_article_order():
    module = sys.modules[type(select(["cnn_dailymail"])[0]).__module__]
    article = " ".join(f"Sentence number {i} is here." for i in range(20))
    picked = module.random_sentences(article, "id-1")
    assert picked == module.random_sentences(article, "id-1") != module.random_sentences(article, "id-2")
    numbers = [int(w) for w in picked.split() if w.isdigit()]
    assert len(numbers) == 3 and numbers == sorted(numbers)
