"""The engine's split by job: the modules that need no model import no torch, and the encoder
that plan mode uses directly gives the engine's own items."""
import subprocess
import sys

import pytest

from gpt2eval.engine.encode import Encoder
from gpt2eval.api.requests import Loglikelihood, RollingLoglikelihood


@pytest.mark.parametrize("module", ["gpt2eval.reporting.compare", "gpt2eval.cli.score", "gpt2eval.engine.encode", "gpt2eval.cli.plan",
                                    "gpt2eval.models.sizes", "gpt2eval.reporting.report", "gpt2eval.cli.main"])
def test_modules_without_a_model_do_not_import_torch(module):
    probe = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_encoder_items_are_the_engines(engine_factory, tokenizer):
    engine = engine_factory(window=32)
    reqs = [Loglikelihood("The cat sat on the", " mat"), Loglikelihood("", "Standalone text"),
            Loglikelihood("Trailing space moves ", "over")]
    seen = []
    engine.score = lambda items, desc="", **kw: seen.extend(items) or [([0.0] * len(it.targets), [True]) for it in items]
    engine.run(reqs)
    items, truncated = Encoder(tokenizer, 32).loglikelihood(reqs)
    assert items == seen and truncated == [False] * 3
    assert items[2].targets == tuple(tokenizer(" over")["input_ids"])
    text = "one two three four five six seven eight nine ten " * 5
    windows, starts = Encoder(tokenizer, 32).rolling([RollingLoglikelihood(text)])
    assert sum(len(it.targets) for it in windows[0]) == len(tokenizer(text)["input_ids"]) == len(starts[0])
