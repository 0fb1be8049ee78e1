"""The engine against a naive one-request-at-a-time forward pass, and the rolling windows by hand."""
import math
import random

import pytest
import torch

from gpt2eval.engine.encode import ScoreItem, rolling_windows
from gpt2eval.engine.engine import Engine
from gpt2eval.engine.heads import target_logprobs
from gpt2eval.api.requests import Loglikelihood, RollingLoglikelihood

EOT = 50256
TEXTS = ["The cat sat on the mat.", "Hello world, this is GPT-2.", "In 1998 the company moved to",
         "A", "She opened the door and saw", "Numbers: 3.14159, 2.71828 and 1.41421 are famous constants"]


def naive_logprobs(model, input_ids, targets):
    """Full forward of one sequence, full LM head, float32 log-softmax: no batching, no tricks."""
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    n = len(targets)
    pos = range(len(input_ids) - n, len(input_ids))
    return ([lp[p, t].item() for p, t in zip(pos, targets)],
            [bool(logits[p].argmax() == t) for p, t in zip(pos, targets)])


def naive_loglikelihood(model, tokenizer, context, continuation):
    ctx = tokenizer(context)["input_ids"] or [EOT]
    cont = tokenizer(continuation)["input_ids"]
    full = ctx + cont
    return naive_logprobs(model, full[:-1], cont)


def requests():
    reqs = []
    for t in TEXTS:
        words = t.split(" ")
        for k in range(1, len(words)):
            reqs.append(Loglikelihood(" ".join(words[:k]), " " + " ".join(words[k:])))
    reqs.append(Loglikelihood("", "Standalone text without context"))
    reqs.append(Loglikelihood("Trailing space moves ", "over"))
    return reqs


@pytest.mark.parametrize("batch_size", [1, 3, 8, "auto"])
def test_loglikelihood_matches_naive_forward_any_batch_and_order(engine_factory, tiny_model, tokenizer, batch_size):
    reqs = requests()
    random.Random(batch_size if isinstance(batch_size, int) else 0).shuffle(reqs)
    got = engine_factory(batch_size=batch_size).run(reqs)
    for r, res in zip(reqs, got):
        context, continuation = r.context, r.continuation
        if context.endswith(" "):
            context, continuation = context[:-1], " " + continuation
        lps, greedy = naive_loglikelihood(tiny_model, tokenizer, context, continuation)
        assert res.token_logprobs == pytest.approx(lps, rel=1e-5, abs=1e-6)
        assert res.logprob == pytest.approx(sum(lps), rel=1e-5)
        assert res.token_is_greedy == greedy
        assert res.is_greedy == all(greedy)


def test_space_belongs_to_continuation(engine_factory):
    eng = engine_factory()
    a, b = eng.run([Loglikelihood("The cat sat on the ", "mat"), Loglikelihood("The cat sat on the", " mat")])
    assert a.token_logprobs == pytest.approx(b.token_logprobs, rel=1e-6)
    assert len(a.token_logprobs) == 1  # " mat" is one GPT-2 token


def test_rolling_windows_by_hand():
    t = list(range(100, 110))  # ten tokens t0..t9
    items = rolling_windows(t, EOT, window=4, stride=None)
    assert items == [
        ScoreItem((EOT, 100, 101, 102), (100, 101, 102, 103)),  # first token conditioned on <|endoftext|>
        ScoreItem((103, 104, 105, 106), (104, 105, 106, 107)),  # disjoint: one token of context
        ScoreItem((105, 106, 107, 108), (108, 109)),            # the last window takes the full context it can
    ]
    items = rolling_windows(t[:7], EOT, window=4, stride=2)
    assert items == [
        ScoreItem((EOT, 100, 101, 102), (100, 101, 102, 103)),
        ScoreItem((101, 102, 103, 104), (104, 105)),             # stride 2: two scored, two of context
        ScoreItem((102, 103, 104, 105), (106,)),
    ]
    for stride in (None, 1, 2, 3, 4):  # every token is scored exactly once, in order
        scored = [x for it in rolling_windows(t, EOT, 4, stride) for x in it.targets]
        assert scored == t
    with pytest.raises(ValueError):
        rolling_windows(t, EOT, 4, 5)


@pytest.mark.parametrize("stride", [None, 16, 5])
def test_rolling_matches_naive_windows(tiny_model, tokenizer, stride):
    text = " ".join(TEXTS) * 3
    eng = Engine(tiny_model, tokenizer, batch_size=4, progress=False, window=32)
    (res,) = eng.run([RollingLoglikelihood(text, stride=stride)])
    ids = tokenizer(text)["input_ids"]
    assert res.n_tokens == len(ids)
    expected = []
    for it in rolling_windows(ids, EOT, 32, stride):
        expected += naive_logprobs(tiny_model, list(it.input_ids), list(it.targets))[0]
    assert res.token_logprobs == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # token_starts map each token back to its characters in the text
    ends = res.token_starts[1:] + [len(text)]
    assert [text[a:b] for a, b in zip(res.token_starts, ends)] == [tokenizer.decode([i]) for i in ids]


def test_rolling_first_window_scores_first_token_after_eot(engine_factory, tiny_model, tokenizer):
    (res,) = engine_factory().run([RollingLoglikelihood("Hello world")])
    ids = tokenizer("Hello world")["input_ids"]
    lps, _ = naive_logprobs(tiny_model, [EOT] + ids[:-1], ids)
    assert res.token_logprobs == pytest.approx(lps, rel=1e-5)


def test_mixed_run_keeps_order_and_caches(engine_factory):
    class DictCache(dict):
        def get_many(self, keys):
            return {k: self[k] for k in keys if k in self}

        def put_many(self, items):
            self.update(items)

    cache = DictCache()
    reqs = [RollingLoglikelihood("One two three four."), Loglikelihood("One two", " three"),
            Loglikelihood("Hello", " world")]
    eng = engine_factory(batch_size=2, cache=cache)
    first = eng.run(reqs)
    computed = eng.stats.items_computed
    again = engine_factory(batch_size=2, cache=cache)
    second = again.run(reqs)
    assert again.stats.items_computed == 0 and again.stats.items_cached == computed
    assert [getattr(r, "logprob") for r in first] == [getattr(r, "logprob") for r in second]
    assert isinstance(first[0].logprob, float) and math.isfinite(first[1].logprob)


def test_half_precision_logsoftmax_in_float32(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    eng = Engine(model, tokenizer, batch_size=2, progress=False)
    (res,) = eng.run([Loglikelihood("The cat sat on the", " mat")])
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer("The cat sat on the")["input_ids"]])).logits[0, -1].float()
    expected = torch.log_softmax(logits, -1)[tokenizer(" mat")["input_ids"][0]].item()
    assert res.logprob == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("rows,cols", [(1024, 2048), (512, 8192), (7, 1000), (300, 5003)])
def test_blocked_lm_head_equals_full_log_softmax(rows, cols):
    """Any block shape (the CPU and GPU ones, and sizes that do not divide the vocabulary) gives
    log_softmax's log-probability and argmax's greedy flag, ties going to the lower id as argmax."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 5003, bias=False)
    with torch.no_grad():
        head.weight[4000] = head.weight[17]  # a tie across blocks: the lower id (17) is the argmax
    hidden = torch.randn(300, 16) * 3
    hidden[0] = hidden[2] = head.weight[17].detach() * 10  # rows 0 and 2: their argmax is that tie
    logits = hidden @ head.weight.detach().T
    targets = torch.randint(0, 5003, (300,))
    targets[1] = logits[1].argmax()  # at least one greedy target besides the tie
    targets[0] = 4000  # equal to the top logit, but not argmax's choice
    targets[2] = 17  # the tie's lower id: argmax's choice
    with torch.inference_mode():
        lp, greedy, no_rows = target_logprobs(head, hidden, targets, rows, cols)
    expected = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(lp, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(greedy, logits.argmax(-1) == targets)
    assert greedy[1] and greedy[2] and not greedy[0]
    assert no_rows is None  # no whole rows asked for
    # Whole rows of logits taken from the passing blocks (a decode's first logits): those rows exactly.
    wanted = [299, 0, 7, 150, 7]
    with torch.inference_mode():
        lp2, greedy2, full = target_logprobs(head, hidden, targets, rows, cols, full_rows=wanted)
    assert torch.equal(lp2, lp) and torch.equal(greedy2, greedy)
    assert full.shape == (5, 5003) and torch.allclose(full, logits[wanted], rtol=1e-5, atol=1e-4)
