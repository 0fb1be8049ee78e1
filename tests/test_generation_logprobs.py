"""GenerationResult.token_logprobs: each generated token's log-probability under the model's own
distribution (before suppressed words or temperature), computed here independently by forwarding
the prompt and the generated tokens whole; on both decode paths, for greedy, suppressed and
sampled rows, for a row ended by end-of-text, and read back from the cache unchanged."""
import pytest
import torch

from gpt2eval.api.requests import Decoding, Generation
from gpt2eval.engine.forward import fused_gpt2

PROMPTS = ["Q: who wrote the book the origin of species\nA:", "The quick brown fox jumps over the lazy dog and then",
           "Once upon a time, in a barn near a farm house, there lived", "Numbers: 3.14159, 2.71828"]


def own_logprobs(model, tokenizer, prompt: str, ids: list[int]) -> list[float]:
    """log p(ids[i] | prompt, ids[:i]) from one forward of the whole sequence."""
    context = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context + ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return [float(logprobs[len(context) - 1 + i, t]) for i, t in enumerate(ids)]


def requests():
    out = [Generation(p, 8) for p in PROMPTS]
    out += [Generation(p, 8, decoding=Decoding(suppress_words=("the", "a", "and"))) for p in PROMPTS]
    out += [Generation(p, 8, decoding=Decoding(top_k=5), seed_key=f"s/{i}") for i, p in enumerate(PROMPTS)]
    return out


@pytest.mark.parametrize("path", ["fused", "transformers"])
def test_token_logprobs_are_the_models_own(engine_factory, tiny_model, tokenizer, path):
    hook = tiny_model.transformer.h[0].register_forward_hook(lambda *a: None) if path != "fused" else None
    try:
        assert fused_gpt2(tiny_model) == (hook is None)
        results = engine_factory(batch_size=5).generate(requests())
    finally:
        if hook is not None:
            hook.remove()
    not_greedy = 0  # suppressed and sampled tokens that are not the model's argmax
    for req, r in zip(requests(), results):
        assert len(r.token_logprobs) == len(r.token_ids) == r.n_tokens > 0 and r.stopped_by == "length"
        want = own_logprobs(tiny_model, tokenizer, req.context, r.token_ids)
        assert r.token_logprobs == pytest.approx(want, abs=1e-4) and all(lp <= 0 for lp in r.token_logprobs)
        greedy = engine_factory().generate([Generation(req.context, 1)])[0]
        not_greedy += r.token_ids[0] != greedy.token_ids[0]
    assert not_greedy >= 2  # the masked and sampled choices were exercised, with unmasked probabilities


def test_a_row_ended_by_end_of_text_records_that_tokens_probability(engine_factory, tiny_model, tokenizer):
    eot = tokenizer.eos_token_id

    def favour_end(module, args, output):  # the LM head's logits, end-of-text made the argmax
        output[..., eot] = output.max(-1).values + 0.5
        return output
    hook = tiny_model.get_output_embeddings().register_forward_hook(favour_end)
    try:
        (r,) = engine_factory().generate([Generation("Hello world", 6)])
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([tokenizer("Hello world")["input_ids"]])).logits[0, -1].float()
    finally:
        hook.remove()
    assert r.token_ids == [] and r.stopped_by == "eos" and len(r.token_logprobs) == 1
    assert r.token_logprobs[0] == pytest.approx(float(torch.log_softmax(logits, -1)[eot]), abs=1e-4)
    assert r.token_logprobs[0] < 0.0  # chosen as the argmax, yet far from certain on a near-flat random model


def test_cached_generations_keep_their_logprobs(engine_factory):
    class DictCache(dict):
        def get_many(self, keys):
            return {k: self[k] for k in keys if k in self}

        def put_many(self, items):
            self.update(items)
    cache, reqs = DictCache(), [Generation(p, 6, stop=("\n",)) for p in PROMPTS]
    first = engine_factory(cache=cache).generate(reqs)
    assert all(len(v["token_logprobs"]) == len(v["token_ids"]) for v in cache.values())
    again = engine_factory(cache=cache).generate(reqs)
    assert [r.token_logprobs for r in again] == [r.token_logprobs for r in first]  # bit for bit
