"""Engine generation: parity with Hugging Face's one-at-a-time greedy generate, per-example seeds,
stop strings, truncation rules, and KV-prefix reuse (identical outputs, fewer prefill tokens)."""
import json
import random

import pytest
import torch

from conftest import DATA
from gpt2eval.engine.encode import ContextTooLong
from gpt2eval.api.requests import Decoding, Generation

PROMPTS = ["A", "Hello world", "The quick brown fox jumps over the lazy dog and then",
           "Q: Who was the man behind The Chipmunks?\nA:", "In 1998 the company moved to",
           "Once upon a time, in a barn near a farm house, there lived a little white kitten named Cotton. " * 3,
           "Numbers: 3.14159, 2.71828", "She opened the door", "x y z " * 40]
NEW = 12


def hf_greedy(model, tokenizer, prompt, max_new_tokens):
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def assert_same_generations(got, want):
    """Every field identical, but the token log-probabilities, which are floats from another
    computation path (a shared prefix's keys/values, another batch): equal to float tolerance."""
    assert [{**vars(r), "token_logprobs": None} for r in got] == [{**vars(r), "token_logprobs": None} for r in want]
    for a, b in zip(got, want):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


@pytest.fixture(scope="module")
def hf_outputs(tiny_model, tokenizer):
    return [hf_greedy(tiny_model, tokenizer, p, NEW) for p in PROMPTS]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_greedy_matches_hf_generate_for_every_batch_size(engine_factory, tokenizer, hf_outputs, batch_size):
    got = engine_factory(batch_size=batch_size).generate([Generation(p, NEW) for p in PROMPTS])
    for res, ref in zip(got, hf_outputs):
        assert res.raw_text == tokenizer.decode(ref)
        assert res.n_tokens == len(ref)
        assert res.stopped_by == ("eos" if len(ref) < NEW else "length")


def sampled(prompt, key, k=5):
    return Generation(prompt, 16, decoding=Decoding(top_k=k), seed_key=key)


def test_samples_do_not_depend_on_batch_size_order_or_company(engine_factory):
    reqs = [sampled(p, f"t/{i}") for i, p in enumerate(PROMPTS[:7])]
    base = [r.raw_text for r in engine_factory(batch_size=1).generate(reqs)]
    for bs in (3, "auto"):
        assert [r.raw_text for r in engine_factory(batch_size=bs).generate(reqs)] == base
    order = list(range(len(reqs)))
    random.Random(0).shuffle(order)
    shuffled = engine_factory(batch_size=4).generate([reqs[i] for i in order])
    assert [shuffled[order.index(i)].raw_text for i in range(len(reqs))] == base
    # In other company: the same request beside unrelated ones, and alone.
    mixed = engine_factory(batch_size=4).generate([sampled("Other text", "other/1"), reqs[3], sampled("B", "b")])
    assert mixed[1].raw_text == base[3]
    assert engine_factory(batch_size=1).generate([reqs[3]])[0].raw_text == base[3]


def test_seed_key_and_run_seed_choose_the_stream(engine_factory):
    prompt = "The weather today is"
    one, two = engine_factory().generate([sampled(prompt, "a"), sampled(prompt, "b")])
    assert one.raw_text != two.raw_text
    again = engine_factory().generate([sampled(prompt, "a")])[0]
    assert again.raw_text == one.raw_text
    assert engine_factory(seed=99).generate([sampled(prompt, "a")])[0].raw_text != one.raw_text


def test_stop_strings_cut_at_the_first_occurrence(engine_factory):
    prompt = PROMPTS[2]
    free = engine_factory().generate([Generation(prompt, 20)])[0]
    stop = free.raw_text[len(free.raw_text) // 2:][:3]  # a piece of the greedy output's second half
    assert stop.strip(), free.raw_text
    cut = free.raw_text.index(stop)
    res = engine_factory().generate([Generation(prompt, 20, stop=("never-generated", stop))])[0]
    assert res.stopped_by == "stop"
    assert res.text == free.raw_text[:cut]
    assert res.raw_text.startswith(free.raw_text[:cut] + stop) and res.n_tokens <= free.n_tokens
    # Of several stop strings, the earliest occurrence wins, whatever the order given.
    early = free.raw_text[:cut].strip()[-2:] or stop
    both = engine_factory().generate([Generation(prompt, 20, stop=(stop, early))])[0]
    assert both.text == free.raw_text[:free.raw_text.index(early)]


def test_context_too_long_is_an_error_unless_a_truncation_rule_is_given(engine_factory, tokenizer):
    engine = engine_factory(window=64)
    long_text = "one two three four five six seven eight nine ten " * 8  # 80 tokens
    with pytest.raises(ContextTooLong, match="64-token window"):
        engine.generate([Generation(long_text, 8)])
    full = tokenizer(long_text)["input_ids"]
    res = engine.generate([Generation(long_text, 8, truncate="left")])[0]
    assert (res.prompt_tokens, res.truncated_tokens) == (56, len(full) - 56)
    assert engine.encoder.prompt(Generation(long_text, 8, truncate="left"), {}).ids == full[-56:]


def test_prefix_end_truncation_keeps_the_start_of_the_prefix_and_the_rest_whole(engine_factory, tokenizer):
    engine = engine_factory(window=64)
    article = "Alpha beta gamma delta epsilon zeta eta theta iota kappa. " * 8
    prompt = engine.encoder.prompt(Generation(article + "\nTL;DR:", 10, prefix=article, truncate="prefix_end"), {})
    hint = tokenizer("\nTL;DR:")["input_ids"]
    assert len(prompt.ids) == 54 and prompt.ids[-len(hint):] == hint
    assert prompt.ids[:prompt.n_prefix] == tokenizer(article)["input_ids"][:54 - len(hint)]
    assert prompt.dropped == len(tokenizer(article)["input_ids"]) - prompt.n_prefix
    with pytest.raises(ValueError):
        Generation("text", 5, prefix="other")  # a prefix must begin the context


def coqa_requests():
    story = json.loads((DATA / "coqa" / "coqa-dev-v1.0_first_story.json").read_text())["data"][0]
    text, history, reqs = story["story"].strip(), "", []
    for q, a in zip(story["questions"], story["answers"]):
        reqs.append(Generation(f"{text}\n\n{history}Q: {q['input_text']}\nA:", 10, stop=("\n",), prefix=text))
        history += f"Q: {q['input_text']}\nA: {a['input_text']}\n"
    return reqs


@pytest.mark.parametrize("batch_size", [1, 5, "auto"])
def test_prefix_reuse_gives_identical_outputs_and_saves_prefill(engine_factory, tokenizer, batch_size):
    reqs = coqa_requests()
    plain, reused = engine_factory(batch_size=batch_size), engine_factory(batch_size=batch_size)
    want = plain.generate(reqs, reuse_prefix=False)
    got = reused.generate(reqs, reuse_prefix=True)
    assert_same_generations(got, want)
    lengths = [len(tokenizer(r.context)["input_ids"]) for r in reqs]
    story = len(tokenizer(reqs[0].prefix)["input_ids"])
    assert plain.stats.prefill_tokens == sum(lengths)
    assert reused.stats.prefill_tokens == story + sum(n - story for n in lengths)


def test_prefix_reuse_with_sampling_and_truncated_variants(engine_factory):
    # Two prompts per article, as cnn_dailymail sends them: with and without a hint, cut to fit.
    articles = ["The council met on Monday to discuss the new budget for the town. " * k for k in (2, 30)]
    reqs = [Generation(a + hint, 20, decoding=Decoding(top_k=2), seed_key=f"{i}/{hint}", prefix=a,
                       truncate="prefix_end") for i, a in enumerate(articles) for hint in ("\nTL;DR:", "")]
    want = engine_factory(window=256, batch_size=3).generate(reqs, reuse_prefix=False)
    engine = engine_factory(window=256, batch_size=3)
    got = engine.generate(reqs)
    assert_same_generations(got, want)
    assert got[2].truncated_tokens > 0 and got[3].truncated_tokens > 0
    assert engine.stats.prefill_tokens < sum(r.prompt_tokens for r in got)


def test_prefix_not_a_token_prefix_falls_back(engine_factory, tokenizer):
    # "...\n\n" alone ends in one token (628); followed by "Q" it is "\n", "\n" (198, 198).
    story = "Cotton lived in a barn.\n\n"
    assert tokenizer(story)["input_ids"][-1] == 628
    reqs = [Generation(story + f"Q: question {i}?\nA:", 6, prefix=story) for i in range(3)]
    engine = engine_factory()
    got = engine.generate(reqs)
    assert engine.stats.prefill_tokens == sum(len(tokenizer(r.context)["input_ids"]) for r in reqs)
    assert_same_generations(got, engine_factory().generate(reqs, reuse_prefix=False))
