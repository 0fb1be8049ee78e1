"""The fused decode step (fused_decode.py): rows continuing shared context keys/values get the
logits of the model's own forward over their whole sequence, and the decode path is the fused one."""
import pytest
import torch

from gpt2eval.engine import decode
from gpt2eval.engine.forward import fused_gpt2, gpt2_hidden_states
from gpt2eval.engine.fused_decode import ContextDecoder, stack_contexts
from gpt2eval.api.requests import Decoding, Generation


def own_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def context_kv(model, ids: list[int]) -> list:
    """A context's keys/values from its own forward: per layer (k, v) [heads, n, head_dim]."""
    kv: list = []
    gpt2_hidden_states(model, torch.tensor([ids]), keep_kv=kv)
    return [(k[0], v[0]) for k, v in kv]


def test_rows_sharing_a_context_get_the_models_own_logits(tiny_model, tokenizer):
    texts = ["The old man walked slowly to the door and", "She said", "It was a dark and stormy night; the rain"]
    contexts = [tokenizer(t)["input_ids"] for t in texts]
    layers, lengths = stack_contexts([context_kv(tiny_model, ids) for ids in contexts])
    assert lengths == [len(c) for c in contexts] and layers[0][0].shape[2] == max(lengths)
    # Uneven rows per context (3, 1, 2), interleaved: spare slots and the row order are exercised.
    row_context = [0, 2, 0, 1, 2, 0]
    dec = ContextDecoder(tiny_model, layers, lengths, row_context, max_steps=4)
    fed = [[] for _ in row_context]
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        nxt = torch.randint(0, len(tokenizer), (len(row_context),), generator=g)
        logits = dec.step(nxt.tolist(), [True] * len(row_context))
        for r, c in enumerate(row_context):
            fed[r].append(int(nxt[r]))
            want = own_logits(tiny_model, contexts[c] + fed[r])
            assert torch.allclose(logits[r], want, rtol=1e-4, atol=1e-4), (r, len(fed[r]))
            assert int(logits[r].argmax()) == int(want.argmax())


def test_generation_takes_the_fused_path_and_matches_the_models_forward(tiny_model, tokenizer, engine_factory,
                                                                        monkeypatch):
    assert fused_gpt2(tiny_model)
    reqs = [Generation("Once upon a time there was", 6),
            Generation("The meaning of the word", 6, decoding=Decoding(suppress_words=("the", "a", "of"))),
            Generation("He opened the box and found", 6, decoding=Decoding(top_k=5), seed_key="s/0")]
    want = engine_factory(batch_size=3).run(reqs)
    hook = tiny_model.transformer.h[0].register_forward_hook(lambda *a: None)  # the model's own forward
    try:
        assert not fused_gpt2(tiny_model)
        own = engine_factory(batch_size=3).run(reqs)
    finally:
        hook.remove()
    assert [r.token_ids for r in want] == [r.token_ids for r in own]

    def refuse(*a, **kw):
        raise AssertionError("the fused GPT-2 decoded through transformers' cache")
    monkeypatch.setattr(decode, "_transformers_start", refuse)
    assert [r.token_ids for r in engine_factory(batch_size=3).run(reqs)] == [r.token_ids for r in want]


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.1)])
def test_half_precision_step_stays_close(tiny_model, tokenizer, dtype, tol):
    model = type(tiny_model)(tiny_model.config).to(dtype).eval()
    model.load_state_dict(tiny_model.state_dict())
    ids = tokenizer("A short context for a low precision decode")["input_ids"]
    kv: list = []
    gpt2_hidden_states(model, torch.tensor([ids]), keep_kv=kv)
    layers, lengths = stack_contexts([[(k[0], v[0]) for k, v in kv]])
    dec = ContextDecoder(model, layers, lengths, [0, 0], max_steps=1)
    logits = dec.step([11, 13], [True, True])
    for r, t in enumerate((11, 13)):
        want = own_logits(model, ids + [t])
        assert (logits[r] - want).abs().max() < tol * want.abs().max()


def test_rows_feeding_the_same_tokens_are_computed_once_until_they_part(tiny_model, tokenizer):
    contexts = [tokenizer(t)["input_ids"] for t in ("The cat sat on the mat and then", "Rain fell on the")]
    layers, lengths = stack_contexts([context_kv(tiny_model, ids) for ids in contexts])
    row_context = [0, 0, 0, 1, 1]
    dec = ContextDecoder(tiny_model, layers, lengths, row_context, max_steps=4)
    # Per step: the token each row feeds and whether it is still decoding. Steps 0-1: every row of
    # a context agrees (2 states); step 2: row 1 parts from row 0, row 4 from row 3 (4 states);
    # step 3: row 0 is done (row 2, which followed it, takes a copy of its state), and rows 1 and 2,
    # like rows 3 and 4, feed one token but hold different states (4 states).
    schedule = [([262, 262, 262, 318, 318], [True] * 5, 2),
                ([11, 11, 11, 13, 13], [True] * 5, 4),
                ([290, 257, 290, 290, 257], [True] * 5, 8),
                ([50256, 464, 464, 464, 464], [False, True, True, True, True], 12)]
    fed = [[] for _ in row_context]
    for ids, active, run_after in schedule:
        logits = dec.step(ids, active)
        assert dec.positions_run == run_after
        for r, c in enumerate(row_context):
            if not active[r]:
                continue
            fed[r].append(ids[r])
            want = own_logits(tiny_model, contexts[c] + fed[r])
            assert torch.allclose(logits[r], want, rtol=1e-4, atol=1e-4), (r, fed[r])


@pytest.mark.parametrize("text,complete", [("", False), (" the", False), (" the ", True), (" ...", False),
                                           ("\n\nPower ", True), (" , and", False), (" , and\n", True),
                                           (" word.", False), (" word. The", True)])
def test_first_word_complete(text, complete):
    assert decode.first_word_complete(text) == complete


def test_lambada_predictions_equal_those_of_decoding_every_token(tokenizer):
    """On the trained tiny model (its generations are words), stopping once the first word is
    complete leaves every prediction as decoding all 5 / 6 tokens gives, with fewer steps."""
    from dataclasses import replace
    from conftest import DATA, SHARED
    from gpt2eval.engine.engine import Engine
    from gpt2eval.models.load import load
    from gpt2eval.api.answers import flatten, unflatten
    from gpt2eval.api.data import DataSource
    from gpt2eval.api.plugins import select
    lm = load(str(SHARED / "models" / "tiny-lambada"), device="cpu", dtype="float32")
    task = select(["lambada"])[0]
    examples = task.load(DataSource(DATA)).examples[:60]
    named = task.requests(examples)
    reqs = flatten(task.name, named)
    full = [replace(r, stop_after_word=False) if isinstance(r, Generation) else r for r in reqs]
    assert sum(isinstance(r, Generation) and r.stop_after_word for r in reqs) == 120
    stopping, whole = Engine(lm.model, lm.tokenizer, progress=False), Engine(lm.model, lm.tokenizer, progress=False)
    got = task.score(examples, unflatten(named, stopping.run(reqs)))
    want = task.score(examples, unflatten(named, whole.run(full)))
    assert got.samples == want.samples and got.metrics == want.metrics
    assert want.metrics["acc_stopword_filter"] > 0
    assert stopping.stats.decode_tokens < 0.8 * whole.stats.decode_tokens


def test_contexts_with_no_row_decoding_are_dropped_and_the_rest_still_right(tiny_model, tokenizer):
    texts = ["One two three four", "The river ran", "A long time ago in a land far", "Yes"]
    contexts = [tokenizer(t)["input_ids"] for t in texts]
    layers, lengths = stack_contexts([context_kv(tiny_model, ids) for ids in contexts])
    row_context = [0, 0, 1, 1, 2, 2, 3, 3]
    dec = ContextDecoder(tiny_model, layers, lengths, row_context, max_steps=4)
    # Step 1: contexts 0 and 1 are done (half idle: the block keeps 2); step 2: context 2 too (1 left).
    alive = [[True] * 8, [False] * 4 + [True] * 4, [False] * 6 + [True] * 2, [False] * 6 + [True] * 2]
    blocks = []
    g = torch.Generator().manual_seed(1)
    fed = [[] for _ in row_context]
    for active in alive:
        ids = torch.randint(0, len(tokenizer), (8,), generator=g).tolist()
        logits = dec.step(ids, active)
        blocks.append(dec.layers[0][0].shape[0])
        for r, c in enumerate(row_context):
            if active[r]:
                fed[r].append(ids[r])
                assert torch.allclose(logits[r], own_logits(tiny_model, contexts[c] + fed[r]), rtol=1e-4, atol=1e-4)
    assert blocks == [4, 2, 1, 1]
