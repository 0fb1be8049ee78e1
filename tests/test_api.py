"""gpt2eval.evaluate / gpt2eval.plan from a training loop: a live nanoGPT-style module scores as
its checkpoint does, and is left as it was found; no file without `output`; `import gpt2eval`
stays light."""
import json
import subprocess
import sys

import pytest
import torch

import gpt2eval
from conftest import DATA, TOKENIZER_DIR
from own_gpt2 import tiny_gpt, write_nanogpt

LIMIT = 40
KW = dict(tokenizer=str(TOKENIZER_DIR), data_dir=DATA, limit=LIMIT, progress=False)


def snapshot(module):
    return ({k: v.detach().clone() for k, v in module.state_dict().items()},
            [m.training for m in module.modules()], {p.device for p in module.parameters()})


def assert_as_found(module, before):
    params, flags, devices = before
    now = module.state_dict()
    assert all(torch.equal(now[k], v) and now[k].dtype == v.dtype for k, v in params.items())  # bitwise
    assert [m.training for m in module.modules()] == flags
    assert {p.device for p in module.parameters()} == devices


def test_a_live_module_scores_as_its_checkpoint_and_is_left_as_found(tmp_path):
    from gpt2eval.cli.main import main
    module = tiny_gpt(vocab=50304).train()  # mid-training: train mode, gradients on
    module.transformer.h[1].eval()  # a mixed state is restored exactly too
    ckpt = write_nanogpt(tmp_path / "ckpt.pt", module, iter_num=750, compiled=True)
    before = snapshot(module)
    live = gpt2eval.evaluate(module, "lambada", **KW)
    assert_as_found(module, before)
    assert main(["--model", str(ckpt), "--tokenizer", str(TOKENIZER_DIR), "--tasks", "lambada", "--data-dir", str(DATA),
                 "--limit", str(LIMIT), "--output", str(tmp_path / "cli"), "--no-progress", "--no-cache"]) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert live["tasks"]["lambada"]["metrics"] == pytest.approx(cli["tasks"]["lambada"]["metrics"], rel=1e-9)
    assert live["tasks"]["lambada"]["intervals"]["ppl"]["ci_low"] == \
        pytest.approx(cli["tasks"]["lambada"]["intervals"]["ppl"]["ci_low"], rel=1e-9)
    assert live["model"]["format"] == "module" and cli["model"]["step"] == 750
    assert live["model"]["vocab_rows"] == 50304 and live["model"]["activation"] == "gelu"
    # a compiled or DDP-wrapped module is unwrapped, not called
    again = gpt2eval.evaluate(torch.compile(module), ["lambada"], step=750, **{**KW, "limit": 5})
    assert again["model"]["step"] == 750
    assert_as_found(module, before)


def test_read_in_place_unless_another_device_or_dtype_is_asked_for(tokenizer):
    from gpt2eval.models.live import adapt
    module = tiny_gpt(vocab=50304)
    before = snapshot(module)
    lm = adapt(module, tokenizer, "gpt2")
    assert lm.model.transformer.wte.weight.data_ptr() == module.transformer.wte.weight.data_ptr()
    assert lm.model.lm_head.weight is lm.model.transformer.wte.weight  # tied, as in nanoGPT
    c_fc = module.transformer.h[0].mlp.c_fc.weight
    assert lm.model.transformer.h[0].mlp.c_fc.weight.data_ptr() == c_fc.data_ptr()  # a transposed view, no copy
    copied = adapt(module, tokenizer, "gpt2", dtype="bfloat16")
    assert copied.model.transformer.wte.weight.dtype == torch.bfloat16 and copied.dtype == "bfloat16"
    assert_as_found(module, before)


def test_a_module_that_is_not_gpt2_is_refused(tokenizer):
    from gpt2eval.errors import UserError
    from gpt2eval.models.live import adapt
    relu = tiny_gpt(vocab=50257)
    for block in relu.transformer.h:
        block.mlp.gelu = torch.nn.ReLU()
    with pytest.raises(UserError, match="neither the exact nor the tanh GELU"):
        adapt(relu, tokenizer, "gpt2")
    scaled = tiny_gpt(vocab=50257)
    scaled.forward = lambda idx, targets=None: (2 * type(scaled).forward(scaled, idx, targets)[0], None)
    with pytest.raises(UserError, match="disagree"):  # its own forward is what counts
        adapt(scaled, tokenizer, "gpt2")
    with pytest.raises(UserError, match="cannot score a Linear"):
        adapt(torch.nn.Linear(2, 2), tokenizer, "gpt2")


def test_a_transformers_model_is_scored_in_place_and_left_in_train_mode(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    before = snapshot(model)
    out = gpt2eval.evaluate(model, ["lambada"], **{**KW, "limit": 5})
    assert out["model"]["format"] == "hf" and out["tasks"]["lambada"]["n_examples"] == 5
    assert_as_found(model, before)


def test_no_file_without_output_and_a_run_folder_with_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = tiny_gpt(vocab=50257)
    gpt2eval.evaluate(module, "lambada", **{**KW, "limit": 3})
    assert list(tmp_path.iterdir()) == []
    gpt2eval.evaluate(module, "lambada", output=tmp_path / "run", **{**KW, "limit": 3})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["comparison.csv", "results.json", "samples"]


def test_bad_arguments_raise_one_clear_error(tmp_path):
    from gpt2eval.errors import UserError
    with pytest.raises(UserError, match="limit must be a positive integer"):
        gpt2eval.evaluate(tiny_gpt(50257), "lambada", **{**KW, "limit": 0})
    with pytest.raises(UserError, match="unknown task"):
        gpt2eval.evaluate(tiny_gpt(50257), "nope", **KW)
    with pytest.raises(UserError, match="matches no file|no such file"):
        gpt2eval.evaluate(str(tmp_path / "missing" / "ckpt.pt"), "lambada", **KW)


def test_the_cache_serves_a_second_call_on_the_same_weights(tmp_path):
    module = tiny_gpt(vocab=50257)
    first = gpt2eval.evaluate(module, "lambada", cache=tmp_path / "c.sqlite", **{**KW, "limit": 4})
    second = gpt2eval.evaluate(module, "lambada", cache=tmp_path / "c.sqlite", **{**KW, "limit": 4})
    assert second["tasks"]["lambada"]["items_cached"] > 0 and second["tasks"]["lambada"]["items_computed"] == 0
    assert second["tasks"]["lambada"]["metrics"] == first["tasks"]["lambada"]["metrics"]
    with torch.no_grad():
        module.transformer.ln_f.weight.mul_(1.01)  # a training step later: other weights, another key
    third = gpt2eval.evaluate(module, "lambada", cache=tmp_path / "c.sqlite", **{**KW, "limit": 4})
    assert third["tasks"]["lambada"]["items_cached"] == 0


def test_plan_prices_the_same_call(tmp_path):
    module = tiny_gpt(vocab=50304)
    priced = gpt2eval.plan(module, "lambada", tokenizer=str(TOKENIZER_DIR), data_dir=DATA, limit=10)
    assert priced["shape"] == {"n_layer": 2, "n_embd": 128, "vocab": 50304, "n_positions": 1024}
    assert priced["flops"] > 0 and priced["seconds"]["peak"] > 0
    ckpt = gpt2eval.plan(write_nanogpt(tmp_path / "ckpt.pt", module), "lambada", tokenizer=str(TOKENIZER_DIR),
                         data_dir=DATA, limit=10)
    assert ckpt["flops"] == priced["flops"]


def test_import_gpt2eval_stays_light():
    probe = "import sys, gpt2eval; print('torch' in sys.modules, callable(gpt2eval.evaluate))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr
