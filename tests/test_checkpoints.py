"""nanoGPT and llm.c checkpoints: read by content, scored as their own projects' code scores them
(against reference forwards written in tests/own_gpt2.py from the published model definitions),
through the engine's fast paths; sweeps over a training run; bad files refused with one line."""
import json
import math
import shutil

import pytest
import torch

from conftest import DATA, TOKENIZER_DIR
from own_gpt2 import llmc_reference, reference_answers, tiny_gpt, tiny_state, write_llmc, write_nanogpt

N_PASSAGES = 100
FLAGS = ("correct", "correct_last_token", "correct_stopword_filter", "correct_stopword_filter_bflm")


@pytest.fixture(scope="module")
def lambada():
    from gpt2eval.api.data import DataSource
    from gpt2eval.api.plugins import select
    task = select(["lambada"])[0]
    return task, task.load(DataSource(DATA)).examples[:N_PASSAGES]


def reference(model, lambada, tokenizer, loglikelihood_only=False):
    """The task's own scoring of a reference model's answers: (metrics, samples)."""
    from gpt2eval.api.answers import flatten, unflatten
    task, examples = lambada
    named = task.requests(examples)
    if loglikelihood_only:
        answers = reference_answers(model, tokenizer, named["target"])
        return math.exp(-sum(a.logprob for a in answers) / len(answers))
    flat = reference_answers(model, tokenizer, flatten(task.key, named))
    scored = task.score(examples, unflatten(named, flat))
    return scored.metrics, scored.samples


def run_cli(model_path, out, *extra, limit=N_PASSAGES):
    from gpt2eval.cli.main import main
    code = main(["--model", str(model_path), "--tokenizer", str(TOKENIZER_DIR), "--tasks", "lambada",
                 "--data-dir", str(DATA), "--limit", str(limit), "--output", str(out), "--no-progress",
                 "--no-cache", *extra])
    assert code == 0
    return out


def assert_same_as_reference(out, ref_metrics, ref_samples):
    result = json.loads((out / "results.json").read_text())
    ours = result["tasks"]["lambada"]["metrics"]
    assert ours["ppl"] == pytest.approx(ref_metrics["ppl"], rel=1e-4)
    samples = [json.loads(line) for line in (out / "samples" / "lambada.jsonl").read_text().splitlines()]
    for flag in FLAGS:  # every accuracy decision, passage by passage
        assert [s[flag] for s in samples] == [s[flag] for s in ref_samples], flag
    for metric in ours:
        if metric != "ppl":
            assert ours[metric] == ref_metrics[metric], metric
    return result


@pytest.mark.parametrize("compiled,vocab,bias", [(True, 50304, True), (False, 50257, True)],
                         ids=["orig_mod-prefixed-padded-50304", "plain-50257"])
def test_nanogpt_checkpoint_scores_as_nanogpt(tmp_path, lambada, tokenizer, compiled, vocab, bias):
    model = tiny_gpt(vocab=vocab, gelu="none", bias=bias)
    ckpt = write_nanogpt(tmp_path / "ckpt.pt", model, iter_num=5000, compiled=compiled)
    result = assert_same_as_reference(run_cli(ckpt, tmp_path / "run"), *reference(model, lambada, tokenizer))
    assert result["model"]["format"] == "nanogpt" and result["model"]["step"] == 5000
    assert result["model"]["vocab_rows"] == vocab and result["model"]["activation"] == "gelu"


def test_nanogpt_bias_false_checkpoint(tmp_path, lambada, tokenizer):
    """bias=False: no bias in any Linear or LayerNorm (zeros stand in, adding nothing)."""
    model = tiny_gpt(vocab=50304, bias=False)
    ckpt = write_nanogpt(tmp_path / "ckpt.pt", model)
    out = run_cli(ckpt, tmp_path / "run", limit=30)
    ppl = json.loads((out / "results.json").read_text())["tasks"]["lambada"]["metrics"]["ppl"]
    assert ppl == pytest.approx(reference(model, (lambada[0], lambada[1][:30]), tokenizer, True), rel=1e-4)


@pytest.mark.parametrize("bf16", [False, True], ids=["version3-float32", "version5-bfloat16"])
def test_llmc_checkpoint_scores_as_llmc(tmp_path, lambada, tokenizer, bf16):
    sd = tiny_state()
    path = write_llmc(tmp_path / "model_00002000.bin", sd, bf16=bf16)
    result = assert_same_as_reference(run_cli(path, tmp_path / "run"), *reference(llmc_reference(sd, bf16), lambada,
                                                                                    tokenizer))
    assert result["model"]["format"] == "llmc" and result["model"]["step"] == 2000
    assert result["model"]["vocab_rows"] == 50257 and result["model"]["activation"] == "gelu_new"


def test_each_difference_moves_ppl_beyond_the_tolerance(lambada, tokenizer):
    """What the loaders honour is not noise: a loader that scored nanoGPT with GPT-2's tanh GELU, or
    cut its padded rows, or kept llm.c's zero rows in the softmax, would miss the 1e-4 tolerance."""
    nanogpt = reference(tiny_gpt(50304, "none"), lambada, tokenizer, True)
    assert abs(reference(tiny_gpt(50304, "tanh"), lambada, tokenizer, True) / nanogpt - 1) > 1e-4
    assert abs(reference(tiny_gpt(50257, "none"), lambada, tokenizer, True) / nanogpt - 1) > 1e-4
    sd = tiny_state()
    llmc = reference(llmc_reference(sd, False), lambada, tokenizer, True)
    with_zero_rows = tiny_gpt(50304, "tanh", padded_scale=0.0)  # llm.c's padding, left in the softmax
    assert abs(reference(with_zero_rows, lambada, tokenizer, True) / llmc - 1) > 1e-4


def test_the_fast_paths_serve_checkpoints(tmp_path, monkeypatch):
    """Fused forward, blocked head, fused decode, shared prefixes: all used for both formats."""
    from gpt2eval.api.answers import flatten
    from gpt2eval.api.data import DataSource
    from gpt2eval.api.plugins import select
    from gpt2eval.engine import forward, fused_decode
    from gpt2eval.engine.engine import Engine
    from gpt2eval.models.load import load
    seen = {"fused": [], "head": 0, "decode_steps": 0}
    real_fused, real_head, real_step = forward.fused_gpt2, forward.target_logprobs, fused_decode.ContextDecoder.step

    def fused(model):
        seen["fused"].append(real_fused(model))
        return seen["fused"][-1]

    def head(*a, **kw):
        seen["head"] += 1
        return real_head(*a, **kw)

    def step(self, *a, **kw):
        seen["decode_steps"] += 1
        return real_step(self, *a, **kw)
    monkeypatch.setattr(forward, "fused_gpt2", fused)
    monkeypatch.setattr(forward, "target_logprobs", head)
    monkeypatch.setattr(fused_decode.ContextDecoder, "step", step)
    paths = [write_nanogpt(tmp_path / "ckpt.pt", tiny_gpt(50304)), write_llmc(tmp_path / "model_00000100.bin", tiny_state())]
    for path in paths:
        seen.update(fused=[], head=0, decode_steps=0)
        lm = load(str(path), device="cpu", tokenizer=str(TOKENIZER_DIR))
        engine = Engine(lm.model, lm.tokenizer, progress=False)
        assert engine.share_prefixes and engine.share_context
        task = select(["lambada"])[0]
        engine.run(flatten(task.key, task.requests(task.load(DataSource(DATA)).examples[:4])))
        assert seen["fused"] and all(seen["fused"]), path
        assert seen["head"] > 0 and seen["decode_steps"] > 0, (path, seen)


def test_fused_exact_gelu_matches_transformers(tmp_path):
    """The fused forward and decode compute the exact GELU where the configuration says "gelu"."""
    from gpt2eval.engine.forward import fused_gpt2, gpt2_hidden_states
    from gpt2eval.models.load import load
    lm = load(str(write_nanogpt(tmp_path / "ckpt.pt", tiny_gpt(50304))), device="cpu", tokenizer=str(TOKENIZER_DIR))
    assert lm.model.config.activation_function == "gelu" and fused_gpt2(lm.model)
    ids = torch.tensor([[464, 3290, 3332, 319, 262, 2603, 13, 632, 373]])
    with torch.inference_mode():
        ours = gpt2_hidden_states(lm.model, ids)
        theirs = lm.model.transformer(input_ids=ids).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_sweep_over_a_glob_records_steps_and_draws_them(tmp_path, capsys):
    from gpt2eval.cli.main import main
    sd = tiny_state()
    log = tmp_path / "log124M"
    log.mkdir()
    write_llmc(log / "model_00002000.bin", sd)
    write_llmc(log / "model_00004000.bin", {k: v * 1.01 if k.endswith("ln_f.weight") else v for k, v in sd.items()})
    out = run_cli(str(log / "model_*.bin"), tmp_path / "sweep", limit=5)
    runs = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/results.json")}
    assert sorted(runs) == ["model_00002000", "model_00004000"]
    assert [runs[k]["model"]["step"] for k in sorted(runs)] == [2000, 4000]
    assert all(r["model"]["format"] == "llmc" for r in runs.values())
    assert runs["model_00002000"]["model"]["fingerprint"] != runs["model_00004000"]["model"]["fingerprint"]
    capsys.readouterr()
    assert main(["compare", str(out), "--plot", str(tmp_path / "plots")]) == 0
    png = tmp_path / "plots" / "steps__lambada.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "plots" / "steps.csv").read_text().splitlines()
    header, body = rows[0].split(","), [r.split(",") for r in rows[1:]]
    assert len(body) == 2 * 5  # two steps x lambada's five metrics
    ppl = [r for r in body if r[header.index("metric")] == "ppl"]
    assert [int(r[header.index("step")]) for r in ppl] == [2000, 4000]
    assert float(ppl[0][header.index("paper_117M")]) == 35.13  # the paper's line beside each point


def one_line_error(capsys, argv) -> str:
    from gpt2eval.cli.main import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_checkpoints_one_line_exit_2(tmp_path, capsys):
    good = write_llmc(tmp_path / "good.bin", tiny_state())
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-1000])
    wrong_magic = tmp_path / "wrong.bin"
    raw = bytearray(good.read_bytes())
    raw[:4] = (20240327).to_bytes(4, "little")
    wrong_magic.write_bytes(bytes(raw))
    no_args = write_nanogpt(tmp_path / "ckpt.pt", tiny_gpt(50257), drop=("model_args",))
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    cases = {truncated: "truncated", wrong_magic: "20240327", no_args: "model_args", text: "not a model gpt2eval reads",
             tmp_path / "nothing" / "model_*.bin": "matches no file"}
    for path, words in cases.items():
        out = tmp_path / f"out-{path.name}"
        err = one_line_error(capsys, ["--model", str(path), "--tokenizer", str(TOKENIZER_DIR), "--tasks", "lambada",
                                      "--data-dir", str(DATA), "--limit", "2", "--output", str(out), "--no-cache"])
        assert words in err and "Traceback" not in err, err
        assert not out.exists()  # nothing half-written


def test_a_bad_file_stops_a_sweep_before_it_starts(tmp_path, capsys):
    write_llmc(tmp_path / "model_00001000.bin", tiny_state())
    (tmp_path / "model_00002000.bin").write_bytes((tmp_path / "model_00001000.bin").read_bytes()[:5000])
    err = one_line_error(capsys, ["--model", str(tmp_path / "model_*.bin"), "--tokenizer", str(TOKENIZER_DIR),
                                  "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "2",
                                  "--output", str(tmp_path / "out"), "--no-cache"])
    assert "model_00002000.bin" in err and "truncated" in err
    assert not (tmp_path / "out").exists()


def test_the_fingerprint_names_the_checkpoint_bytes(tmp_path):
    from gpt2eval.models.load import load
    a = write_llmc(tmp_path / "model_00000001.bin", tiny_state())
    moved = tmp_path / "elsewhere.bin"
    shutil.copy(a, moved)
    changed = tmp_path / "changed.bin"
    raw = bytearray(a.read_bytes())
    raw[-1] ^= 1  # one bit of ln_f's last bias
    changed.write_bytes(bytes(raw))
    fp = {p: load(str(p), device="cpu", tokenizer=str(TOKENIZER_DIR)).fingerprint for p in (a, moved, changed)}
    assert fp[a] == fp[moved] != fp[changed]


def test_tokenizer_check_accepts_nanogpt_padding_only(tmp_path, tokenizer):
    from gpt2eval.errors import UserError
    from gpt2eval.models.load import check_tokenizer
    from transformers import GPT2Config
    check_tokenizer(GPT2Config(vocab_size=50304), tokenizer, "ckpt.pt", padded_vocab=True)
    with pytest.raises(UserError, match="vocab_size 50304"):
        check_tokenizer(GPT2Config(vocab_size=50304), tokenizer, "model", padded_vocab=False)
    with pytest.raises(UserError, match="50257 tokens but the model's vocabulary has 65"):
        check_tokenizer(GPT2Config(vocab_size=65), tokenizer, "shakespeare_char/ckpt.pt", padded_vocab=True)


def test_plan_prices_a_checkpoint(tmp_path, capsys):
    from gpt2eval.cli.main import main
    path = write_llmc(tmp_path / "model_00000100.bin", tiny_state())
    assert main(["plan", "--model", str(path), "--tasks", "lambada", "--limit", "3", "--tokenizer",
                 str(TOKENIZER_DIR), "--data-dir", str(DATA)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model_00000100 ")]
    assert [line.split()[1] for line in lines] == ["lambada", "TOTAL"]
