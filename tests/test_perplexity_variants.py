"""The perplexity tasks' variants on the real files: the word denominator without <eos>, WikiText
scored per article (wikitext*:streams=article), and PTB with its `N` as a digit (ptb:digits=1)."""
import math

import pytest

from conftest import DATA
from gpt2eval.api.answers import flatten, unflatten
from gpt2eval.api.data import DataSource
from gpt2eval.protocols.detokenize import ptb_detokenize
from gpt2eval.api.requests import RollingResult
from gpt2eval.api.plugins import select


def load(name):
    t = select([name])[0]
    return t, t.load(DataSource(DATA))


def run_and_score(engine, task, examples):
    """As the runner does: the named requests through the engine, the answers back under their names."""
    named = task.requests(examples)
    return task.score(examples, unflatten(named, engine.run(flatten(task.name, named))))


@pytest.mark.parametrize("name,n_words", [("ptb", 82430 - 3761), ("wikitext103", 245569 - 4358),
                                          ("wikitext2", 245569 - 4358)])
def test_word_denominator_is_the_original_tokens_without_eos(name, n_words):
    from gpt2eval.protocols.perplexity import count_words
    _, ds = load(name)
    assert sum(count_words(o) for o, _ in ds.examples) == n_words


def test_word_ppl_by_hand_beside_the_per_token_ppl():
    t = select(["ptb"])[0]
    examples = [(" a b c \n", "a b c\n"), (" d e \n", "d e\n")]  # 5 words, 7 tokens with <eos>
    scored = t.score(examples, {"stream": RollingResult([-1.0, -2.0, -1.0, -0.5, -0.5, -3.0, -1.0], [0, 1, 3, 5, 6, 7, 9])})
    assert scored.metrics["ppl"] == pytest.approx(math.exp(9.0 / 7))
    assert scored.metrics["word_ppl"] == pytest.approx(math.exp(9.0 / 5))
    assert [s["words"] for s in scored.samples] == [3, 2] and scored.extra["words"] == 5
    # 37.37 per lm-eval word is about 35.1 per token with <eos> on the same total NLL (WikiText test)
    assert math.exp(math.log(37.37) * 241211 / 245569) == pytest.approx(35.1, abs=0.1)
    assert t.metrics["word_ppl"].reference == "ptb/ppl"


@pytest.mark.parametrize("name", ["wikitext103:streams=article", "wikitext2:streams=article"])
def test_per_article_tasks_split_where_lm_eval_does(name):
    t, ds = load(name)
    assert len(ds.examples) == ds.n_full == 62 and ds.source["verified"]
    assert sum(len(a) for a in ds.examples) == 4358
    first = [o for o, _ in ds.examples[0][:2]]
    assert first[0] == " \n" and first[1].startswith(" = Robert ")  # the leading blank line joins the first
    assert all(a[0][0].startswith(" = ") for a in ds.examples[1:])
    titles = [a[0][0].strip() for a in ds.examples]
    k = titles.index("= Constant k filter =")  # two formula lines of it pass lm-eval's rule, kept as it is
    assert titles[k + 1].startswith("= 1 ") and titles[k + 2].startswith("= 1 ")
    assert not any(a[0][0].startswith(" = = ") for a in ds.examples)
    from gpt2eval.protocols.detokenize import count_original_tokens
    assert sum(count_original_tokens(o) for a in ds.examples for o, _ in a) == 245569
    reqs = t.requests(ds.examples)["article"]
    assert len(reqs) == 62 and reqs[1].text.startswith("= Du Fu =")
    base = name.split(":")[0]
    assert t.metrics["ppl"].reference == f"{base}/ppl" and t.protocol["windows"].startswith("one stream per article")


def test_per_article_scores_each_article_as_the_one_stream_task_scores_it_alone(engine_factory):
    per_article, ds = load("wikitext2:streams=article")
    one_stream, lines = load("wikitext2")
    engine = engine_factory()
    arts = ds.examples[:3]
    scored = run_and_score(engine, per_article, arts)
    assert len(scored.samples) == 3 and scored.extra["streams"] == 3
    start = 0
    for art, row in zip(arts, scored.samples):
        alone = lines.examples[start:start + len(art)]
        assert list(alone) == list(art)
        s = run_and_score(engine, one_stream, alone)
        assert row["nll"] == pytest.approx(s.extra["total_nll"], rel=1e-5)
        assert row["original_tokens"] == s.extra["original_tokens"] and row["words"] == s.extra["words"]
        start += len(art)
    whole = lines.examples[:start]
    joint = run_and_score(engine, one_stream, whole)
    assert joint.extra["original_tokens"] == scored.extra["original_tokens"]
    assert joint.extra["total_nll"] != pytest.approx(scored.extra["total_nll"], rel=1e-6)  # context crosses articles
    n = scored.extra
    total = sum(r["nll"] for r in scored.samples)
    assert scored.metrics["ppl"] == pytest.approx(math.exp(total / n["original_tokens"]))


def test_ptb_digits_1_changes_only_the_number_placeholder():
    t, ds = load("ptb:digits=1")
    _, plain = load("ptb")
    assert len(ds.examples) == 3761 and t.metrics["ppl"].reference == "ptb/ppl"
    digit = "".join(d for _, d in ds.examples)
    text = "".join(d for _, d in plain.examples)
    assert text == ptb_detokenize((DATA / "ptb/ptb.test.txt").read_text())
    assert text.count("N") == 2523 and "N" not in digit  # PTB is lower-case: a capital N is the placeholder
    assert text.replace("N", "1") == digit                 # and nothing else changes
    assert "1" not in (DATA / "ptb/ptb.test.txt").read_text().split()  # no token "1" of its own: invertible
    assert "$1" in digit and "1 1" in digit
    assert [o for o, _ in ds.examples] == [o for o, _ in plain.examples]  # same original tokens (82,430)


def test_options_run_and_pair_with_their_base_tasks_paper_rows(tiny_model_dir, tmp_path):
    import csv
    import json

    from gpt2eval.cli.main import main
    out = tmp_path / "run"
    assert main(["--model", str(tiny_model_dir), "--tasks", "wikitext2:streams=article,ptb:digits=1",
                 "--data-dir", str(DATA), "--limit", "2", "--output", str(out), "--reference-size", "small",
                 "--no-progress", "--no-cache"]) == 0
    results = json.loads((out / "results.json").read_text())
    art = results["tasks"]["wikitext2:streams=article"]
    assert art["n_examples"] == 2 and art["n_full"] == 62 and art["subset"] and art["extra"]["streams"] == 2
    rows = [json.loads(x) for x in (out / "samples" / "wikitext2@streams=article.jsonl").read_text().splitlines()]
    assert [r["article"] for r in rows] == [0, 1] and all(r["lines"] > 1 and r["words"] > 0 for r in rows)
    words = sum(r["words"] for r in rows)
    assert art["metrics"]["word_ppl"] == pytest.approx(math.exp(sum(r["nll"] for r in rows) / words))
    with open(out / "comparison.csv", newline="") as f:
        paper = {(r["task"], r["metric"]): r["paper"] for r in csv.DictReader(f)}
    assert paper[("wikitext2:streams=article", "ppl")] == paper[("wikitext2:streams=article", "word_ppl")] == "29.41"
    assert paper[("ptb:digits=1", "ppl")] == paper[("ptb:digits=1", "word_ppl")] == "65.85"
    assert paper[("ptb:digits=1", "token_ppl")] == ""
