"""Plan mode: parameter counts of the four sizes, and token / FLOP counts checked by hand."""
import json

import pytest

from gpt2eval.cli.costs import causal_pairs, count_work, non_embedding_params, total_params
from gpt2eval.api.requests import Generation, Loglikelihood, RollingLoglikelihood
from gpt2eval.api.task import Task

from conftest import DATA, TOKENIZER_DIR

HELLO = "Hello world, this is GPT-2."  # 10 tokens; "Hello world," is 3 of them


class Fixed(Task):
    """A task whose requests are given (under one name)."""
    name = "fixed"

    def __init__(self, requests):
        super().__init__()
        self._requests = requests

    def requests(self, examples):
        return {"given": self._requests}


@pytest.mark.parametrize("size,layers,width,params", [
    ("small", 12, 768, 124_439_808), ("medium", 24, 1024, 354_823_168),
    ("large", 36, 1280, 774_030_080), ("xl", 48, 1600, 1_557_611_200)])
def test_parameter_counts_are_the_public_checkpoints(size, layers, width, params):
    from gpt2eval.models.sizes import SIZES
    assert SIZES[size][2] == (layers, width)
    assert total_params(layers, width) == params
    assert total_params(layers, width) - non_embedding_params(layers, width) == (50257 + 1024) * width


def test_causal_pairs():
    assert causal_pairs(1) == 1
    assert causal_pairs(4) == 1 + 2 + 3 + 4
    assert causal_pairs(4, start=2) == 3 + 4


def test_loglikelihood_counts_and_duplicates(tokenizer):
    reqs = [Loglikelihood("Hello world,", " this is GPT-2."),
            Loglikelihood("Hello world, ", "this is GPT-2."),  # the same item once the space moves over
            Loglikelihood("Hello world,", " this is GPT-2.")]
    w = count_work(Fixed(reqs), [None], tokenizer)
    assert (w.requests, w.sequences) == (3, 1)                # scored once, as the engine does
    assert (w.forwarded_tokens, w.scored_tokens) == (9, 7)    # 3 + 7 tokens, the last one never fed
    assert (w.attn_pairs, w.head_positions, w.tokens) == (45, 7, 9)
    n = 12 * (12 * 768 ** 2 + 13 * 768) + 2 * 768
    assert w.flops(12, 768) == 2 * n * 9 + 4 * 768 * 12 * 45 + 2 * 768 * 50257 * 7


def test_rolling_windows_counted_by_hand(tokenizer):
    w = count_work(Fixed([RollingLoglikelihood(" a" * 2500)]), [None], tokenizer)  # 2500 tokens " a"
    assert w.sequences == 3                        # 1024 + 1024 + 452 scored
    assert w.scored_tokens == 2500
    assert w.forwarded_tokens == 3 * 1024          # every window is full: the last one takes more context
    assert w.attn_pairs == 3 * 1024 * 1025 // 2
    assert w.head_positions == 2500


def test_generation_counts(tokenizer):
    w = count_work(Fixed([Generation(HELLO, max_new_tokens=5)]), [None], tokenizer)
    assert (w.generations, w.prompt_tokens, w.prefill_tokens, w.generate_tokens) == (1, 10, 10, 5)
    assert w.tokens == 10 + 4                      # the fifth new token is never fed back
    assert w.attn_pairs == 55 + (11 + 12 + 13 + 14)
    assert w.head_positions == 5


def test_shared_prefix_prefilled_once(tokenizer):
    story = "Story: the cat."  # 5 tokens, which begin both 14-token prompts
    reqs = [Generation(story + "\n\nQ: who?\nA:", 3, prefix=story),
            Generation(story + "\n\nQ: what?\nA:", 3, prefix=story)]
    w = count_work(Fixed(reqs), [None], tokenizer)
    assert (w.prompt_tokens, w.prefill_tokens) == (28, 9 + 9 + 5)
    assert w.attn_pairs == 2 * (105 - 15) + 15 + 2 * (2 * 14 + 3)
    assert w.head_positions == 3 + 3 + 1


def test_counts_equal_what_the_engine_forwards(engine_factory, tokenizer):
    reqs = [Loglikelihood("The cat sat on the", " mat"), Loglikelihood("", "Standalone"),
            RollingLoglikelihood("Numbers: 3.14159, 2.71828. " * 150)]
    eng = engine_factory(batch_size=4)
    eng.run(reqs)
    w = count_work(Fixed(reqs), [None], tokenizer, window=eng.window)
    assert eng.stats.tokens_forwarded == w.forwarded_tokens
    assert eng.stats.items_computed == w.sequences


def test_plan_subcommand(tmp_path, capsys, tokenizer):
    from gpt2eval.cli.main import main
    out = tmp_path / "plan.json"
    assert main(["plan", "--sizes", "small,xl", "--tasks", "lambada", "--limit", "3", "--tokenizer",
                 str(TOKENIZER_DIR), "--data-dir", str(DATA), "--peak-tflops", "989,100", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "TOTAL" in text and "989TFLOP/s" in text
    rows = json.loads(out.read_text())
    assert [r["size"] for r in rows] == ["small", "xl"]
    small, xl = rows
    assert small["examples"] == 3 and small["generations"] == 6   # LAMBADA: the two stop-word-filter decodes
    assert small["forwarded_tokens"] == xl["forwarded_tokens"]     # tokens do not depend on the size
    assert xl["flops"] > 10 * small["flops"]
    assert small["seconds@100TFLOP/s"] == pytest.approx(small["flops"] / 100e12)
    # the targets of LAMBADA's first three passages, counted straight from the tokenizer
    lines = (DATA / "lambada" / "lambada_test.jsonl").read_text().splitlines()[:3]
    words = [" " + json.loads(line)["text"].rsplit(" ", 1)[1] for line in lines]
    assert small["scored_tokens"] == sum(len(tokenizer(w)["input_ids"]) for w in words)


def test_plan_names_a_task_with_options_by_its_key(capsys):
    from gpt2eval.cli.main import main
    assert main(["plan", "--sizes", "small", "--tasks", "ptb,ptb:stride=256", "--limit", "200", "--tokenizer",
                 str(TOKENIZER_DIR), "--data-dir", str(DATA)]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()
            if line.split()[:2] in (["small", "ptb"], ["small", "ptb:stride=256"])}
    assert set(rows) == {"ptb", "ptb:stride=256"}


def test_plan_rejects_unknown_size(capsys):
    from gpt2eval.cli.main import main
    assert main(["plan", "--sizes", "huge", "--tokenizer", str(TOKENIZER_DIR)]) == 2
    assert "unknown size" in capsys.readouterr().err


def test_shared_contexts_counted_as_the_engine_forwards_them(engine_factory, tokenizer):
    """LAMBADA's decode continues from its log-likelihood forward (no prefill), and multiple-choice
    candidates share their context's forward: plan mode counts what the engine forwards."""
    import sys
    from conftest import REPO
    sys.path.insert(0, str(REPO / "benchmarks"))
    import mc_workload
    lines = (DATA / "lambada" / "lambada_test.jsonl").read_text().splitlines()[:4]
    split = [json.loads(line)["text"].rsplit(" ", 1) for line in lines]
    reqs = [Loglikelihood(c, " " + t) for c, t in split] + [Generation(c, 3) for c, _ in split]
    reqs += mc_workload.requests(DATA / "cbt" / "cbt_valid.txt", 2)
    eng = engine_factory()
    eng.run(reqs)
    w = count_work(Fixed(reqs), [None], tokenizer, window=eng.window)
    assert (w.prefill_tokens, w.from_context) == (0, 4)
    prompt_positions = eng.stats.tokens_forwarded - eng.stats.decode_forwarded
    assert w.tokens == prompt_positions + 4 * 2  # plan: every decode runs its 2 steps (no early eos)
    assert w.forwarded_tokens == prompt_positions
    assert 0 < eng.stats.decode_forwarded <= eng.stats.decode_tokens <= 4 * 2
    assert w.forwarded_tokens < 1.1 * eng.stats.unique_prompt_tokens


def test_decode_steps_are_memory_bound_in_the_lower_bound(tokenizer):
    from gpt2eval.cli.costs import decode_reads
    from gpt2eval.cli.plan import Plan
    assert decode_reads([(10, 5), (8, 5), (3, 2)], budget=30) == (4 + 1, 2 * (11 + 12 + 13 + 14) + 4)
    w = count_work(Fixed([Generation(HELLO, max_new_tokens=100)]), [None], tokenizer)
    (row,) = Plan(["xl"], {"peak": 989.0}, [w]).rows()
    weights = total_params(48, 1600) * 2
    assert row["decode_steps"] == 99
    assert row["decode_read_s"] >= 99 * weights / 3.35e12
    assert row["bound@peak"] == pytest.approx(row["seconds@peak"] - row["decode_flops"] / 989e12
                                              + row["decode_read_s"])
    assert row["bound@peak"] > 20 * row["seconds@peak"]  # one row decoding: the weights' reads dominate


def test_plan_of_the_paper_offline_prices_what_it_can(capsys, monkeypatch):
    """enwik8, text8 and 1BW are not in ../shared/data: offline, plan stops on the first with one
    line naming the way out, and with --skip-unavailable prices the rest and lists those three."""
    from gpt2eval.cli.main import main
    monkeypatch.setenv("GPT2EVAL_CACHE_DIR", "/nonexistent-gpt2eval-cache")
    args = ["plan", "--sizes", "small", "--tasks", "winograd,enwik8,text8,1bw", "--limit", "2", "--tokenizer",
            str(TOKENIZER_DIR), "--data-dir", str(DATA)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "enwik8" in err and "--skip-unavailable" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--skip-unavailable"]) == 0
    text = capsys.readouterr().out
    assert "winograd" in text and "TOTAL" in text
    assert [line.split()[2].rstrip(":") for line in text.splitlines() if line.startswith("NOT PRICED")] == \
        ["enwik8", "text8", "1bw"]
