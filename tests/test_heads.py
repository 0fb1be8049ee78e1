"""Which head scores a model: GPT-2's fused forward and blocked head only where that is the model's
own computation, and every other causal LM through its own forward's logits."""
from __future__ import annotations

import pytest
import torch

from gpt2eval.engine import forward as forward_module
from gpt2eval.engine import heads as heads_module
from gpt2eval.api.requests import Loglikelihood


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


# ---- other architectures: tiny random models built from configs, the real GPT-2 tokenizer ---------

COMMON = dict(vocab_size=50257, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, bos_token_id=50256, eos_token_id=50256,
              pad_token_id=50256)
# name -> (config class, what its head does beyond hidden x output embedding, whether head-only is exact)
ARCHITECTURES = {
    "gemma2": ("Gemma2Config", dict(head_dim=16, query_pre_attn_scalar=16, final_logit_softcapping=0.5), False),
    "granite": ("GraniteConfig", dict(logits_scaling=4.0), False),
    "cohere": ("CohereConfig", dict(logit_scale=4.0), False),
    "qwen2": ("Qwen2Config", {}, False),  # nothing after its head, but not on the list: its own forward scores it
    "llama": ("LlamaConfig", {}, True),  # on the HEAD_ONLY list, checked here against its own forward
}
TEXT = ("The committee met on Tuesday to discuss the budget. After a long debate, the members agreed to postpone "
        "the vote until the next session, when the treasurer would present revised figures. ") * 16


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch_model(request, tmp_path_factory):
    import transformers

    from conftest import TOKENIZER_DIR
    from gpt2eval.models.load import load, load_tokenizer
    config_class, extra, exact = ARCHITECTURES[request.param]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config_class)(**COMMON, **extra))
    with torch.no_grad():  # random logits big enough that scaling and soft-capping matter
        model.get_output_embeddings().weight.mul_(20.0)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    load_tokenizer(str(TOKENIZER_DIR)).save_pretrained(folder)
    lm = load(str(folder), device="cpu")  # through gpt2eval's own loader (Gemma2: no SDPA, its default)
    assert lm.model.config.model_type == request.param
    return request.param, lm, exact


def own_forward(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)


def test_log_likelihoods_equal_log_softmax_of_the_models_own_forward(arch_model, tokenizer):
    from gpt2eval.engine.engine import Engine
    from gpt2eval.api.requests import RollingLoglikelihood
    name, lm, exact = arch_model
    engine = Engine(lm.model, lm.tokenizer, batch_size=3, progress=False)
    assert engine.window == 256 and heads_module.head_only(lm.model) == exact
    words = TEXT.split(" ")
    reqs = [Loglikelihood(" ".join(words[:k]), " " + " ".join(words[k:k + 3])) for k in (2, 5, 9, 17, 30)]
    for r, res in zip(reqs, engine.run(reqs)):
        ctx, cont = tokenizer(r.context)["input_ids"], tokenizer(r.continuation)["input_ids"]
        lp = own_forward(lm.model, ctx + cont[:-1])
        want = [lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)]
        assert res.token_logprobs == pytest.approx(want, rel=1e-5, abs=1e-5), name
        assert res.token_is_greedy == [bool(lp[len(ctx) - 1 + j].argmax() == t) for j, t in enumerate(cont)]
    (rolled,) = engine.run([RollingLoglikelihood(TEXT)])  # several 256-token windows
    from gpt2eval.engine.encode import rolling_windows
    windows = rolling_windows(tokenizer(TEXT)["input_ids"], 50256, 256, None)
    assert len(windows) == 3
    want = []
    for it in windows:  # each window through the model alone, its targets at its last positions
        lp = own_forward(lm.model, list(it.input_ids))
        n = len(it.input_ids) - len(it.targets)
        want += [lp[n + j, t].item() for j, t in enumerate(it.targets)]
    assert rolled.token_logprobs == pytest.approx(want, rel=1e-5, abs=1e-5), name


def test_the_blocked_head_alone_would_be_wrong_where_the_head_does_more(arch_model, tokenizer):
    """Why the head-only path is kept to HEAD_ONLY: on these models it differs from their own forward."""
    name, lm, exact = arch_model
    ids = tokenizer(TEXT)["input_ids"][:40]
    with torch.no_grad():
        hidden = lm.model.base_model(input_ids=torch.tensor([ids[:-1]])).last_hidden_state[0]
    lp = heads_module.target_logprobs(lm.model.get_output_embeddings(), hidden, torch.tensor(ids[1:]), 64).logprobs
    own = own_forward(lm.model, ids[:-1]).gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
    gap = (lp - own).abs().max().item()
    if name in ("gemma2", "granite", "cohere"):
        assert gap > 0.1, (name, gap)
    else:
        assert gap < 1e-4, (name, gap)


def test_scoring_in_blocks_of_positions_gives_the_same_answers(arch_model, tokenizer, monkeypatch):
    from gpt2eval.engine.engine import Engine
    name, lm, exact = arch_model
    if exact:
        monkeypatch.setattr(heads_module, "HEAD_ONLY", set())  # the own-logits path for this one too
    words = TEXT.split(" ")
    reqs = [Loglikelihood(" ".join(words[:k]), " " + " ".join(words[k:k + 4])) for k in (3, 8, 20)]
    whole = Engine(lm.model, lm.tokenizer, batch_size=3, progress=False).run(reqs)
    monkeypatch.setattr(heads_module, "OWN_LOGITS_BUDGET", {"cpu": 3 * 4 * 50257})  # 3 positions per forward
    calls = []
    real = lm.model.forward
    monkeypatch.setattr(lm.model, "forward", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    blocked = Engine(lm.model, lm.tokenizer, batch_size=3, progress=False).run(reqs)
    assert len(calls) >= 4  # 12+ positions, 3 at a time
    for a, b in zip(whole, blocked):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, rel=1e-5, abs=1e-5)
        assert a.token_is_greedy == b.token_is_greedy


def test_generation_and_scoring_agree(arch_model, tokenizer):
    """Greedy generation calls the model's own forward; scoring what it generated finds every token greedy."""
    from gpt2eval.engine.encode import ScoreItem
    from gpt2eval.engine.engine import Engine
    from gpt2eval.api.requests import Generation
    name, lm, exact = arch_model
    engine = Engine(lm.model, lm.tokenizer, batch_size=2, progress=False)
    contexts = ["The committee met on Tuesday to", "After a long debate, the members"]
    gens = engine.generate([Generation(c, 8) for c in contexts])
    items = []
    for c, g in zip(contexts, gens):
        assert 0 < len(g.token_ids) <= 8
        ctx = tokenizer(c)["input_ids"]
        items.append(ScoreItem(tuple(ctx + g.token_ids[:-1]), tuple(g.token_ids)))
    for (lps, greedy), g in zip(engine.score(items), gens):
        assert all(greedy), (name, g.token_ids, lps)
