"""Shared fixtures: the real GPT-2 tokenizer, the real data in ../shared, a tiny random GPT-2."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
TOKENIZER_DIR = SHARED / "tokenizers" / "gpt2"


@pytest.fixture(scope="session")
def tokenizer():
    from gpt2eval.models.load import load_tokenizer
    return load_tokenizer(str(TOKENIZER_DIR))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random GPT-2 with 4 attention heads (16 wide each, so the fused forward's
    head split and merge are exercised) and the real tokenizer, saved as a model folder."""
    from gpt2eval.models.load import make_random_model
    return make_random_model(tmp_path_factory.mktemp("tiny-gpt2"), TOKENIZER_DIR, n_layer=2, n_embd=64, n_head=4,
                             seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                attn_implementation="sdpa").eval()


@pytest.fixture()
def engine_factory(tiny_model, tokenizer):
    from gpt2eval.engine.engine import Engine

    def make(**kw):
        kw.setdefault("progress", False)
        return Engine(tiny_model, tokenizer, **kw)
    return make
