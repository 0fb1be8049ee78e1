"""A request the engine cannot answer as asked is one clear error naming the task and the request,
before any model work; what is scored is never cut. Cutting a context on the left stays allowed
and is recorded."""
from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import DATA
from gpt2eval.cli.main import main
from gpt2eval.engine.encode import BadRequest
from gpt2eval.api.requests import Decoding, Generation, Loglikelihood, RollingLoglikelihood

WORDS = " the cat sat on a mat and then"  # 8 GPT-2 tokens


def continuation(n_tokens: int, tokenizer) -> str:
    text = WORDS * (n_tokens // 8 + 1)
    ids = tokenizer(text)["input_ids"][:n_tokens]
    assert len(ids) == n_tokens
    return tokenizer.decode(ids)


@pytest.mark.parametrize("bad, expected", [
    (lambda tok: Loglikelihood("Hello", continuation(1100, tok)),
     "continuation is 1100 tokens, longer than the 1024-token window"),
    (lambda tok: Loglikelihood("Hello", ""), "the continuation is empty"),
    (lambda tok: Generation("Hello", 1024), "max_new_tokens must be 1 to 1023"),
    (lambda tok: Generation("Hello", 0), "max_new_tokens must be 1 to 1023"),
    (lambda tok: Generation("Hello", 5, decoding=Decoding(top_k=2, temperature=0.0)), "temperature > 0"),
    (lambda tok: Generation("Hello", 5, decoding=Decoding(top_k=60000)), "0 < top_k <= 50257"),
    (lambda tok: Generation("Hello", 5, decoding=Decoding(top_k=-1)), "0 < top_k <= 50257"),
    (lambda tok: RollingLoglikelihood("Hello world", stride=0), "stride must be 1 to 1024"),
    (lambda tok: RollingLoglikelihood("Hello world", stride=2048), "stride must be 1 to 1024"),
    (lambda tok: Generation("Hello" * 1200, 10), "exceeds the 1024-token window"),
])
def test_a_request_that_cannot_be_answered_names_task_and_request(engine_factory, tokenizer, bad, expected):
    engine = engine_factory(batch_size=4)
    request = bad(tokenizer)
    good = [Loglikelihood("The cat sat on the", " mat")] * 3
    with pytest.raises(BadRequest, match=r"^task mytask: (Loglikelihood|Generation|RollingLoglikelihood)\(") as e:
        engine.run(good + [request], desc="mytask")
    assert expected in str(e.value) and "\n" not in str(e.value)
    if not isinstance(request, Generation) or "exceeds" not in expected:
        assert engine.stats.items_computed == 0  # found before any model work


def test_what_is_scored_is_never_cut_up_to_a_whole_window(tiny_model, tokenizer, engine_factory):
    engine = engine_factory(batch_size=2, window=64)
    cont = continuation(64, tokenizer)  # 64 targets: each sees "Hello" and the targets before it
    (res,) = engine.run([Loglikelihood("Hello", cont)])
    ids = tokenizer("Hello")["input_ids"] + tokenizer(cont)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(tiny_model(torch.tensor([ids[:-1]])).logits[0].float(), -1)
    assert len(res.token_logprobs) == 64 and not res.truncated
    assert res.token_logprobs == pytest.approx([lp[p, t].item() for p, t in zip(range(0, 64), ids[1:])],
                                               rel=1e-5, abs=1e-5)
    with pytest.raises(BadRequest, match="65 tokens, longer than the 64-token window"):
        engine.run([Loglikelihood("Hello", continuation(65, tokenizer))])


def test_the_context_may_still_be_cut_on_the_left_and_that_is_recorded(tiny_model, tokenizer, engine_factory):
    engine = engine_factory(batch_size=2, window=64)
    context = continuation(100, tokenizer)
    (res,) = engine.run([Loglikelihood(context, " mat")])
    ids = tokenizer(context)["input_ids"] + tokenizer(" mat")["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(tiny_model(torch.tensor([ids[-65:-1]])).logits[0, -1].float(), -1)
    assert res.truncated and res.token_logprobs == pytest.approx([lp[ids[-1]].item()], rel=1e-5)


def test_the_command_line_says_which_task_and_request_in_one_line(tiny_model_dir, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toolong.py").write_text(textwrap.dedent('''
        from gpt2eval.api.data import Dataset
        from gpt2eval.api.requests import Loglikelihood
        from gpt2eval.api.task import Metric, Scored, Task

        class TooLong(Task):
            name = "toolong"
            description = "asks for more than a window"
            metrics = {"lp": Metric(reference=None)}

            def load(self, data):
                return Dataset([1], n_full=1, source={"kind": "inline"})

            def requests(self, examples):
                return {"cats": Loglikelihood("Hello", " cat" * 1100)}

            def score(self, examples, answers):
                return Scored({"lp": answers["cats"].logprob})
    '''))
    assert main(["--model", str(tiny_model_dir), "--tasks", "toolong", "--include-path", str(plugins),
                 "--data-dir", str(DATA), "--no-cache", "--no-progress", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]  # (transformers' loading bar aside)
    assert err.endswith(line) and "Traceback" not in err
    assert line.startswith("error: task toolong: Loglikelihood(context ending 'Hello'")
    assert "1100 tokens, longer than the 1024-token window" in err
    assert not (tmp_path / "o" / "results.json").exists()
