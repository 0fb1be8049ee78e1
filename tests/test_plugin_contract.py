"""The plugin contract: named requests in, answers under the same names out; a plugin that breaks it,
or was written against the old flat-list contract, gets one line; the built-in tasks keep the request
order the engine has always seen; and the documented example plugin runs as docs/plugins.md shows it."""
import json
import sys
import textwrap

import pytest

from conftest import DATA, REPO
from gpt2eval.api.answers import flatten, unflatten
from gpt2eval.api.data import DataSource
from gpt2eval.api.plugins import discover, select
from gpt2eval.api.requests import Generation, Loglikelihood, RollingLoglikelihood
from gpt2eval.cli.main import main
from gpt2eval.errors import UserError

EXAMPLE = REPO / "docs" / "examples" / "sentence_completion.py"


def ll(i):
    return Loglikelihood("context", f" option {i}")


def test_requests_are_laid_out_depth_first_in_insertion_order_and_answers_come_back_in_their_place():
    named = {"z": [ll(0), (ll(1), ll(2))], "a": {"k": ll(3), 7: [ll(4)]}, "one": RollingLoglikelihood("text")}
    assert flatten("t", named) == [ll(0), ll(1), ll(2), ll(3), ll(4), RollingLoglikelihood("text")]
    answers = unflatten(named, ["r0", "r1", "r2", "r3", "r4", "r5"])
    assert answers == {"z": ["r0", ("r1", "r2")], "a": {"k": "r3", 7: ["r4"]}, "one": "r5"}
    assert list(answers) == ["z", "a", "one"] and isinstance(answers["z"][1], tuple)
    assert unflatten({"none": []}, []) == {"none": []}
    with pytest.raises(ValueError, match="7 answers to 6 requests"):
        unflatten(named, ["r"] * 7)


@pytest.mark.parametrize("named,message", [
    ({"target": [ll(0), ll(1), ll(2), "a word"]},
     "task t: requests()['target'][3] is a str, not a request (Loglikelihood, RollingLoglikelihood, Generation) "
     "nor a list, tuple or dict of them"),
    ({"x": {"deep": [(ll(0), None)]}}, "task t: requests()['x']['deep'][0][1] is a NoneType, not a request"),
    ([ll(0), ll(1)], "task t: requests() returned a list; the plugin contract changed in gpt2eval 0.2: a task "
                     "returns a dict of named requests and score() gets the answers under the same names, in the same nesting "
                     "(see docs/plugins.md)"),
    (None, "task t: requests() returned a NoneType, not a dict of named requests (see docs/plugins.md)"),
    ({3: [ll(0)]}, "task t: requests() has the key 3, not a name (a str)"),
])
def test_a_broken_contract_is_one_line_naming_the_task_and_the_place(named, message):
    with pytest.raises(UserError) as e:
        flatten("t", named)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


OLD_PLUGIN = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Scored, Task

    class OldStyle(Task):
        """Written against the flat-list contract: requests() returns a list, score() slices it."""
        name = "oldstyle"
        metrics = {"lp": Metric(None)}

        def load(self, data):
            return Dataset(["a", "b"], n_full=2, source={"kind": "inline"})

        def requests(self, examples):
            return [Loglikelihood("Hello", " " + x) for x in examples]

        def score(self, examples, results):
            return Scored({"lp": results[0].logprob + results[1].logprob})
''')


def test_a_plugin_of_the_old_contract_fails_with_one_line_saying_what_changed(tiny_model_dir, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "oldstyle.py").write_text(OLD_PLUGIN)
    assert main(["--model", str(tiny_model_dir), "--tasks", "oldstyle", "--include-path", str(plugins),
                 "--no-cache", "--no-progress", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert err.endswith(line) and "Traceback" not in err
    assert line == ("error: task oldstyle: requests() returned a list; the plugin contract changed in gpt2eval 0.2: "
                    "a task returns a dict of named requests and score() gets the answers under the same names, in the same nesting "
                    "(see docs/plugins.md)")


# ---- the built-in tasks keep the engine's request order (batching order can move the last digits) ---------

def test_lambada_asks_every_target_then_each_filter_passage_by_passage():
    t = select(["lambada"])[0]
    examples = t.load(DataSource(DATA)).examples[:3]
    flat = flatten(t.name, t.requests(examples))
    assert [type(r) for r in flat] == [Loglikelihood] * 3 + [Generation] * 6
    assert [r.context for r in flat[:3]] == [r.context for r in flat[3:6]] == [ctx for ctx, _ in examples]
    assert all(r.decoding.suppress_mode == "stripped_text" for r in flat[6:])


def test_winograd_asks_every_partial_option_then_every_full_one():
    t = select(["winograd"])[0]
    examples = t.load(DataSource(DATA)).examples[:2]
    questions = [partial for partial, _ in examples] + [full for _, full in examples]
    assert flatten(t.name, t.requests(examples)) == [Loglikelihood(c, r) for q in questions for c, r in q.options]


def test_cnn_dailymail_asks_article_by_article_each_row_its_draws():
    t = select(["cnn_dailymail"])[0]
    t.samples = 2
    examples = t.load(DataSource(DATA)).examples[:2]
    keys = [r.seed_key for r in flatten(t.name, t.requests(examples))]
    assert keys == [f"cnn_dailymail/{ex['id']}/{row}{draw}" for ex in examples for row in ("tldr", "no_hint")
                    for draw in ("", "/draw1")]


# ---- the example plugin of docs/plugins.md ------------------------------------------------------------------

def test_the_documented_plugin_is_the_file_verbatim_and_short():
    source = EXAMPLE.read_text()
    doc = (REPO / "docs" / "plugins.md").read_text()
    assert f"```python\n{source}```" in doc
    assert len(source.splitlines()) <= 40
    assert f"--include-path {EXAMPLE.parent.relative_to(REPO)}" in doc and "--tasks sentence_completion" in doc


def test_the_documented_plugin_runs_from_its_folder_and_scores_what_the_engine_answers(tiny_model_dir, tmp_path,
                                                                                      engine_factory):
    out = tmp_path / "run"
    assert main(["--model", str(tiny_model_dir), "--tasks", "sentence_completion", "--include-path",
                 str(EXAMPLE.parent), "--no-cache", "--no-progress", "--output", str(out)]) == 0
    task = json.loads((out / "results.json").read_text())["tasks"]["sentence_completion"]
    rows = [json.loads(x) for x in (out / "samples" / "sentence_completion.jsonl").read_text().splitlines()]
    assert task["n_examples"] == task["n_full"] == len(rows) == 8 and task["n_requests"] == 24
    assert task["metrics"]["acc"] == 100 * sum(r["correct"] for r in rows) / 8
    assert task["intervals"]["acc"]["ci_low"] <= task["metrics"]["acc"] <= task["intervals"]["acc"]["ci_high"]
    sentences = sys.modules[discover([str(EXAMPLE.parent)])["sentence_completion"].__module__].SENTENCES
    assert [s for s, _, _ in sentences] == [r["beginning"] for r in rows]
    engine = engine_factory()
    for (beginning, endings, gold), row in zip(sentences, rows, strict=True):
        by_engine = [r.logprob for r in engine.run([Loglikelihood(beginning, e) for e in endings])]
        assert row["scores"] == pytest.approx(by_engine, abs=1e-4)
        best = max(range(3), key=lambda k: (by_engine[k], -k))
        assert row["chosen"] == endings[best] and row["correct"] == (best == gold)
