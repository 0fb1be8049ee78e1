"""Which head scores a model: GPT-2's fused forward and blocked head only where that is the model's
own computation, and every other causal LM through its own forward's logits."""
from __future__ import annotations

import pytest
import torch

from gpt2eval import forward as forward_module
from gpt2eval.requests import Loglikelihood


def spy(monkeypatch, name):
    calls, real = [], getattr(forward_module, name)

    def wrapped(*a, **kw):
        calls.append(a[1].shape if len(a) > 1 else None)
        return real(*a, **kw)
    monkeypatch.setattr(forward_module, name, wrapped)
    return calls


def test_stock_gpt2_takes_the_fused_path_and_it_equals_the_models_forward(engine_factory, tiny_model, monkeypatch):
    assert tiny_model.config.n_head == 4  # the head split and merge are exercised
    assert forward_module.fused_gpt2(tiny_model)
    ids = torch.randint(0, 50257, (3, 37), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fused = forward_module.gpt2_hidden_states(tiny_model, ids.clone())
        own = tiny_model.transformer(input_ids=ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(fused, own, rtol=1e-5, atol=1e-5)
    calls = spy(monkeypatch, "gpt2_hidden_states")
    engine_factory(batch_size=4).run([Loglikelihood("The cat sat on the", " mat"), Loglikelihood("Hello", " world")])
    assert len(calls) == 1 and calls[0][0] == 2  # one fused forward for the batch of two


def test_anything_attached_to_gpt2_turns_the_fused_path_off(tiny_model):
    handle = tiny_model.transformer.h[0].mlp.register_forward_hook(lambda *a: None)
    try:
        assert not forward_module.fused_gpt2(tiny_model)
    finally:
        handle.remove()
    assert forward_module.fused_gpt2(tiny_model)
