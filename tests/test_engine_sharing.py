"""Shared prefixes across requests (issue 12 §1) and the decode loop and batching of §2: every
answer equals forwarding each request whole, with fewer tokens forwarded."""
import json
import random
import sys
from dataclasses import replace

import pytest
import torch

from conftest import DATA, REPO
from gpt2eval.engine.decode import suppressed_ids
from gpt2eval.engine.encode import ScoreItem, prefix_groups, unique_prefix_tokens
from gpt2eval.engine.forward import fused_gpt2
from gpt2eval.api.requests import Decoding, Generation, Loglikelihood, LoglikelihoodResult
from gpt2eval.engine.schedule import Scheduler, padded_tokens

sys.path.insert(0, str(REPO / "benchmarks"))
import mc_workload  # noqa: E402

STOP_WORDS = ("the", "a", "and", "of", "to", "he", "she", "it", "was")


def lambada_requests(n: int, sampled: int = 0):
    passages = [json.loads(line)["text"] for line in (DATA / "lambada/lambada_test.jsonl").open()][:n]
    split = [p.rsplit(" ", 1) for p in passages]
    reqs = [Loglikelihood(ctx, " " + word) for ctx, word in split]
    reqs += [Generation(ctx, 5, decoding=Decoding(suppress_words=STOP_WORDS)) for ctx, _ in split]
    reqs += [Generation(ctx, 5, decoding=Decoding(top_k=4), seed_key=f"s/{i}") for i, (ctx, _) in
             enumerate(split[:sampled])]
    return reqs


def assert_same(whole, shared, exact: bool):
    for a, b in zip(whole, shared, strict=True):
        if isinstance(a, LoglikelihoodResult):
            assert a.token_is_greedy == b.token_is_greedy and a.truncated == b.truncated
            if exact:
                assert a.token_logprobs == b.token_logprobs
            else:
                assert b.token_logprobs == pytest.approx(a.token_logprobs, rel=1e-5, abs=1e-5)
        else:  # a generation: the same tokens; their log-probabilities come from other forwards
            assert replace(a, token_logprobs=[]) == replace(b, token_logprobs=[])
            assert b.token_logprobs == pytest.approx(a.token_logprobs, rel=1e-5, abs=1e-5)


@pytest.fixture(params=["fused", "transformers"])
def path(request, tiny_model):
    """The fused GPT-2 forward, or the model's own forward (a hook turns the fused path off)."""
    hook = tiny_model.transformer.h[0].register_forward_hook(lambda *a: None) if request.param != "fused" else None
    assert fused_gpt2(tiny_model) == (hook is None)
    yield request.param
    if hook is not None:
        hook.remove()


@pytest.mark.parametrize("batch_size", [2, "auto"])
def test_lambada_decode_continues_from_the_loglikelihood_forward(engine_factory, path, batch_size):
    reqs = lambada_requests(14, sampled=4)
    whole = engine_factory(batch_size=batch_size, share_context=False, share_prefixes=False)
    engine = engine_factory(batch_size=batch_size)
    want, got = whole.run(reqs), engine.run(reqs)
    assert_same(want, got, exact=path == "fused")  # the fused scoring path is today's, bit for bit
    # Each passage forwarded once: the prompt tokens forwarded are the unique ones; decoding adds its steps.
    unique = engine.stats.unique_prompt_tokens
    assert engine.stats.prefill_tokens == 0
    assert engine.stats.tokens_forwarded - engine.stats.decode_forwarded <= 1.1 * unique
    assert whole.stats.tokens_forwarded - whole.stats.decode_forwarded > 1.9 * unique
    assert engine.stats.decode_tokens == whole.stats.decode_tokens > 0


def test_decodes_wait_for_several_scored_batches_to_fill_a_generation_batch(engine_factory, monkeypatch):
    """On CPU a scoring batch (1,024 padded tokens) keeps the contexts of a few passages; their
    decodes are pooled over consecutive scored batches (chains.pooled), up to the generation budget
    and to 1/POOL_CHAINS of the task's decode work, so that decode steps run on fuller batches."""
    import gpt2eval.engine.engine as engine_module
    from gpt2eval.engine.chains import POOL_CHAINS
    scored, decoded = [], []
    score_batch, generate_batch = engine_module.score_batch, engine_module.generate_batch
    monkeypatch.setattr(engine_module, "score_batch", lambda *a, **kw: scored.append(len(a[1])) or score_batch(*a, **kw))
    monkeypatch.setattr(engine_module, "generate_batch",
                        lambda *a, **kw: decoded.append(len(a[2])) or generate_batch(*a, **kw))
    reqs = lambada_requests(64)
    got = engine_factory(budgets={"score": 256, "generate": 8192}).run(reqs)
    assert sum(scored) == sum(decoded) == 64  # each passage scored once, and its decode run once
    assert POOL_CHAINS <= len(decoded) <= POOL_CHAINS + 2 < len(scored)  # decodes of several scored batches at once
    want = engine_factory(budgets={"score": 256, "generate": 8192}, share_context=False).run(reqs)
    assert_same(want, got, exact=False)


def test_samples_decoded_from_a_shared_context_do_not_depend_on_the_batch(engine_factory):
    reqs = lambada_requests(6, sampled=6)
    base = engine_factory(batch_size=1).run(reqs)
    mixed = reqs[:3] + reqs[6:9] + reqs[12:15]  # half of them, in other company
    again = engine_factory(batch_size="auto").run(mixed)
    assert [r.raw_text for r in again[3:]] == [r.raw_text for r in base[6:9] + base[12:15]]


def test_cached_generations_are_not_decoded_again_and_cached_items_not_kept(engine_factory):
    class DictCache(dict):
        def get_many(self, keys):
            return {k: self[k] for k in keys if k in self}

        def put_many(self, items):
            self.update(items)
    reqs = lambada_requests(5)
    cache = DictCache()
    first = engine_factory(cache=cache).run(reqs[5:])  # the generations alone
    engine = engine_factory(cache=cache)
    both = engine.run(reqs)
    assert both[5:] == first and engine.stats.decode_tokens == 0 and engine.stats.items_cached == 5


@pytest.mark.parametrize("batch_size", [3, "auto"])
def test_multiple_choice_forwards_the_shared_context_once(engine_factory, path, batch_size):
    reqs = mc_workload.requests(DATA / "cbt/cbt_valid.txt", 3)
    assert len(reqs) == 30
    whole = engine_factory(window=1024, batch_size=batch_size, share_prefixes=False)
    engine = engine_factory(window=1024, batch_size=batch_size)
    assert_same(whole.run(reqs), engine.run(reqs), exact=False)
    unique = engine.stats.unique_prompt_tokens
    assert engine.stats.tokens_forwarded <= 1.3 * unique < whole.stats.tokens_forwarded / 5


def test_prefix_groups_by_hand():
    ctx = tuple(range(100, 140))
    items = [ScoreItem(ctx + (k,) * k, (9,) * (k + 1)) for k in (1, 2, 3)]  # 10 candidates' shape, 3 of them
    items += [ScoreItem((1, 2, 3), (4,)), ScoreItem(ctx[:10] + (7,) * 30, (5,))]  # too short a share
    groups, alone = prefix_groups(items)
    assert groups == [(ctx[:39], [0, 1, 2])]  # up to the position predicting the first target
    assert sorted(alone) == [3, 4]
    assert unique_prefix_tokens([it.input_ids for it in items]) == 41 + 2 + 3 + 3 + 30


class _Tiny(torch.nn.Module):
    config = None

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


@pytest.mark.parametrize("kind", ["score", "generate"])
def test_token_budget_is_a_hard_invariant(kind):
    """Issue 12's example: lengths 500, 480, 100, 450, 440, 430 and a budget of 1,000 once gave a
    batch of 4 x 450. Now no batch's padded tokens exceed the budget, in whatever order."""
    sched = Scheduler(_Tiny(), budgets={"score": 1000, "generate": 1000})
    lengths = [500, 480, 100, 450, 440, 430]
    batches = list(sched.batches(lengths, lambda n: [(1, n)], kind))
    assert [len(b) * max(b) for b in batches] == [1000, 900, 880]
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 1000) for _ in range(rng.randint(1, 30))]
        batches = list(sched.batches(lengths, lambda n: [(1, n)], kind))
        assert sum(batches, []) == lengths
        assert all(len(b) * max(b) <= 1000 for b in batches)
    groups = [((0,) * rng.randint(1, 600), rng.randint(1, 10), rng.randint(1, 40)) for _ in range(50)]
    shape = lambda g: [(1, len(g[0])), (g[1], g[2])]  # noqa: E731
    assert all(padded_tokens([shape(g) for g in b]) <= 1000 for b in sched.batches(groups, shape, kind))


def naive_suppressed_greedy(model, ids, banned, n):
    out = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids + out])).logits[0, -1].float()
        logits[banned] = float("-inf")
        out.append(int(logits.argmax()))
    return out


def test_suppressed_words_are_masked_for_the_whole_batch(engine_factory, tiny_model, tokenizer):
    reqs = lambada_requests(4)[4:]
    engine = engine_factory(batch_size=4)
    got = engine.run(reqs)
    banned = suppressed_ids(tokenizer, STOP_WORDS, engine.suppress_memo)  # the ids the run banned (memoised)
    assert tokenizer.convert_tokens_to_ids("Ġthe") in banned and tokenizer.convert_tokens_to_ids("the") not in banned
    for r, res in zip(reqs, got):
        ids = naive_suppressed_greedy(tiny_model, tokenizer(r.context)["input_ids"], banned, 5)
        assert res.raw_text == tokenizer.decode(ids)
