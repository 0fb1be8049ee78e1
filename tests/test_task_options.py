"""Task options (`--tasks name:key=value,key=value`): how --tasks is read, each option becoming an
attribute of the task, the task's identity (`key`) naming its non-default options in results.json,
samples and comparison.csv, the values recorded in the protocol, and one line for every mistake."""
import csv
import json
import textwrap

import pytest

from gpt2eval.api.plugins import parse_tasks, select, split_spec
from gpt2eval.api.task import Option, Task
from gpt2eval.cli.main import main
from gpt2eval.errors import UserError

PLUGIN = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Option, Scored, Task

    WORDS = ["cat", "dog", "sun", "tree", "book", "fish"]

    class Endings(Task):
        """The log-probability of a word after a fixed context; `n` words, `case` of the words."""
        name = "endings"
        metrics = {"mean_logprob": Metric(None, "mean log-probability of the word")}
        protocol = {"prompt": "'The word is' + ' ' + word"}
        options = {"n": Option(3, "how many words are scored"),
                   "case": Option("lower", "the words' case", choices=("lower", "upper"))}

        def load(self, data):
            return Dataset(list(WORDS), n_full=len(WORDS), source={"kind": "inline"})

        def requests(self, examples):
            words = [w.upper() if self.case == "upper" else w for w in examples[: self.n]]
            return {"word": [Loglikelihood("The word is", " " + w) for w in words]}

        def score(self, examples, answers):
            lps = [r.logprob for r in answers["word"]]
            return Scored({"mean_logprob": sum(lps) / len(lps)}, [{"logprob": x} for x in lps])
''')


@pytest.fixture()
def plugin_dir(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "endings.py").write_text(PLUGIN)
    return folder


def test_tasks_are_read_with_their_options():
    assert parse_tasks("wikitext103:stride=512,detokenize=none,ptb") == ["wikitext103:stride=512,detokenize=none", "ptb"]
    assert parse_tasks(" lambada , ptb:stride=256 ,") == ["lambada", "ptb:stride=256"]
    assert split_spec("wikitext103:stride=512,detokenize=none") == ("wikitext103", {"stride": "512", "detokenize": "none"})
    with pytest.raises(UserError, match="option stride=5 follows no task"):
        parse_tasks("stride=5,ptb")
    with pytest.raises(UserError, match="'stride' is not key=value"):
        split_spec("ptb:stride")


def test_options_become_attributes_and_the_non_default_ones_the_tasks_key(plugin_dir):
    default, changed = select(["endings", "endings:case=upper,n=2"], [str(plugin_dir)])
    assert (default.n, default.case, default.key) == (3, "lower", "endings")
    assert (changed.n, changed.case) == (2, "upper") and isinstance(changed.n, int)
    assert changed.key == "endings:n=2,case=upper"  # the task's declared order, not the command line's
    assert changed.file_stem == "endings@n=2+case=upper"
    assert select(["endings:n=3"], [str(plugin_dir)])[0].key == "endings"  # a default is no change


@pytest.mark.parametrize("spec,message", [
    ("endings:m=2", "task endings has no option m (its options: n, case; python run_eval.py --list-tasks)"),
    ("endings:n=two", "task endings: option n=two is not an integer; n: how many words are scored"),
    ("endings:case=title", "task endings: option case=title is not one of lower, upper"),
    ("ptb:streams=article", "task ptb has no option streams (its options: stride, detokenize, digits;"),  # WikiText's
])
def test_a_bad_option_is_one_line(plugin_dir, spec, message):
    with pytest.raises(UserError) as e:
        select([spec], [str(plugin_dir)])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_same_task_twice_with_the_same_options_is_refused(plugin_dir):
    with pytest.raises(UserError, match="names endings twice"):
        select(["endings", "endings:n=3"], [str(plugin_dir)])


def test_a_task_class_refuses_an_option_it_does_not_declare():
    class Plain(Task):
        name = "plain"
    with pytest.raises(UserError, match="task plain has no option x .its options: none"):
        Plain(x=1)


def test_a_run_keys_its_outputs_by_the_tasks_identity_and_records_the_options(plugin_dir, tiny_model_dir, tmp_path,
                                                                              capsys):
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_dir), "--reference-size", "small", "--include-path", str(plugin_dir),
                 "--tasks", "endings,endings:n=2,case=upper", "--output", str(out), "--no-cache",
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    plain, upper = results["tasks"]["endings"], results["tasks"]["endings:n=2,case=upper"]
    assert plain["options"] == {"n": 3, "case": "lower"} and upper["options"] == {"n": 2, "case": "upper"}
    assert upper["protocol"]["options"] == "n=2, case=upper" and plain["protocol"]["options"] == "n=3, case=lower"
    assert (plain["n_requests"], upper["n_requests"]) == (3, 2)
    assert plain["metrics"]["mean_logprob"] != upper["metrics"]["mean_logprob"]
    assert len((out / "samples" / "endings@n=2+case=upper.jsonl").read_text().splitlines()) == 2
    assert len((out / "samples" / "endings.jsonl").read_text().splitlines()) == 3
    with open(out / "comparison.csv", newline="") as f:
        assert {r["task"] for r in csv.DictReader(f)} == {"endings", "endings:n=2,case=upper"}


def test_a_bad_option_on_the_command_line_exits_2_before_any_model_loads(plugin_dir, tmp_path, capsys):
    assert main(["--model", str(tmp_path / "no-such-model"), "--include-path", str(plugin_dir),
                 "--tasks", "endings:n=zero", "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("error: task endings: option n=zero is not an integer; "
                                               "n: how many words are scored")
