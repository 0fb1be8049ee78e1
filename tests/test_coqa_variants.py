"""CoQA's answer-extraction variants (first sentence, a 5-word cap) on the real first dev story,
and lm-evaluation-harness's prompt layout (coqa:prompt=lm_eval)."""
import json

import pytest

from conftest import DATA
from gpt2eval.cli.main import main
from gpt2eval.api.data import DataSource
from gpt2eval.metrics import coqa
from gpt2eval.api.requests import GenerationResult
from gpt2eval.api.plugins import select


@pytest.fixture(scope="module")
def story():
    return select(["coqa"])[0].load(DataSource(DATA)).examples


def gen(text):
    return GenerationResult(text, text, 8)


def test_extractions_by_hand():
    assert coqa.first_sentence("In a barn. She lived there with Mr. Smith.") == "In a barn."
    assert coqa.first_sentence("Mr. Smith lived there.") == "Mr. Smith lived there."  # pysbd knows "Mr."
    assert coqa.first_words("with her mommy and 5 other sisters") == "with her mommy and 5"
    assert coqa.first_sentence("") == coqa.first_words("   ") == ""


def test_long_answers_score_higher_when_cut(story):
    t = select(["coqa"])[0]
    ex = story[:3]  # white | in a barn | no
    answers = ["white. She was the only white kitten in the whole barn", "in a barn", "No, she lived with her family"]
    scored = t.score(ex, {"answer": [gen(" " + a) for a in answers]})
    rows, m = scored.samples, scored.metrics
    assert [r["answer"] for r in rows] == answers
    assert [r["answer_first_sentence"] for r in rows] == ["white.", "in a barn", "No, she lived with her family"]
    assert [r["answer_first5words"] for r in rows] == ["white. She was the only", "in a barn", "No, she lived with her"]
    assert rows[0]["f1_first_sentence"] == 100 and rows[0]["f1"] < rows[0]["f1_first5words"] < 100
    assert rows[1]["f1"] == rows[1]["f1_first_sentence"] == rows[1]["f1_first5words"] == 100
    for metric in ("f1", "em", "f1_first_sentence", "em_first_sentence", "f1_first5words", "em_first5words"):
        assert m[metric] == pytest.approx(sum(r[metric] for r in rows) / 3)  # recomputable per example
    assert m["f1_first_sentence"] > m["f1_first5words"] > m["f1"]
    assert t.metrics["f1_first_sentence"].reference == "coqa/f1" and t.metrics["em_first5words"].reference is None


def test_lm_eval_prompt_layout_on_the_real_story(story):
    default, lm_eval = select(["coqa", "coqa:prompt=lm_eval"])
    ex = story[2]
    assert default.prompt_text(ex).endswith("\n\nQ: What color was Cotton?\nA: white\nQ: Where did she live?\nA: in a "
                                       "barn\nQ: Did she live alone?\nA:")
    assert lm_eval.prompt_text(ex).endswith("\n\nQ: What color was Cotton?\n\nA: white\n\nQ: Where did she live?\n\n"
                                       "A: in a barn\n\nQ: Did she live alone?\n\nA:")
    (req,) = lm_eval.requests([ex])["answer"]
    assert req.stop == ("\nQ:",) and req.prefix == ex["story"] and req.context.startswith(ex["story"] + "\n\n")
    assert lm_eval.answer(" \n no\nQ") == "no" and default.answer(" no") == "no"
    scored = lm_eval.score([ex], {"answer": [gen("\n\nNo, she did not.\n")]})
    assert scored.samples[0]["answer"] == "No, she did not." and "predictions/coqa@prompt=lm_eval.json" in scored.files


def test_both_prompts_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["--model", str(tiny_model_dir), "--tasks", "coqa,coqa:prompt=lm_eval", "--data-dir", str(DATA),
                 "--limit", "4", "--output", str(out), "--reference-size", "xl", "--no-progress", "--no-cache"]) == 0
    results = json.loads((out / "results.json").read_text())
    for name, stem in (("coqa", "coqa"), ("coqa:prompt=lm_eval", "coqa@prompt=lm_eval")):
        t = results["tasks"][name]
        assert {"f1", "f1_first_sentence", "f1_first5words", "em_first5words"} <= set(t["metrics"])
        assert (out / "predictions" / f"{stem}.json").is_file()
    a, b = ([json.loads(x) for x in (out / "samples" / f"{n}.jsonl").read_text().splitlines()]
            for n in ("coqa", "coqa@prompt=lm_eval"))
    # "\n\n" before a letter is two GPT-2 tokens: one more before "A:", two more for each earlier turn
    assert [y["prompt_tokens"] - x["prompt_tokens"] for x, y in zip(a, b)] == [1, 3, 5, 7]
