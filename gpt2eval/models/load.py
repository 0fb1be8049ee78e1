"""Loading a causal LM and its tokenizer, and checking that the two belong together."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..cache.fingerprint import model_fingerprint
from .sizes import DTYPE_NAMES, SIZES

PROBE_TEXT = "Hello world, this is GPT-2."
PROBE_IDS = [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 13]
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    model_id: str
    size: str | None          # "small".."xl" when the architecture matches a paper size
    dtype: str
    device: str
    fingerprint: str          # names these files, config, dtype, device, versions: the result cache's model key

    def describe(self) -> dict:
        cfg = self.model.config
        return {"id": self.model_id, "size": self.size,
                "paper_size": SIZES[self.size][1] if self.size else None,
                "n_params": sum(p.numel() for p in self.model.parameters()),
                "n_layer": cfg.num_hidden_layers, "n_embd": cfg.hidden_size,
                "context_length": getattr(cfg, "n_positions", None) or cfg.max_position_embeddings,
                "dtype": self.dtype, "device": self.device, "fingerprint": self.fingerprint,
                "attention": getattr(cfg, "_attn_implementation", None)}


def resolve_device(device: str) -> str:
    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
        if device == "mps" and not torch.backends.mps.is_available():
            raise UserError("--device mps was asked for but MPS is not available; use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def size_of(config) -> str | None:
    """Which paper size an architecture is, if any (a random model of the same shape counts)."""
    if getattr(config, "model_type", "") != "gpt2":
        return None
    shape = (config.num_hidden_layers, config.hidden_size)
    return next((s for s, (_, _, sh) in SIZES.items() if sh == shape), None)


def load(model_id: str, *, device: str = "auto", dtype: str = "float32", revision: str | None = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM
    device = resolve_device(device)
    local = Path(model_id).expanduser()
    if local.exists() and not local.is_dir():
        raise UserError(f"--model {model_id} is a file; give a model folder or a hub id")
    if not local.exists() and (model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1):
        raise UserError(f"--model {model_id}: no such folder (a hub id looks like openai-community/gpt2)")
    if local.is_dir() and not any((local / name).exists() for name in TOKENIZER_FILES):
        # transformers would build an empty tokenizer here, and the error would be about its size
        raise UserError(f"cannot load a tokenizer: model folder {model_id} has no tokenizer files "
                        f"({', '.join(TOKENIZER_FILES[:2])} + merges.txt, ...); "
                        "copy them from where the model came from")
    kw = {"revision": revision} if revision else {}
    try:
        tokenizer = load_tokenizer(model_id, **kw)
    except Exception as e:  # noqa: BLE001 - every loader failure becomes one clear line
        raise UserError(f"cannot load a tokenizer for {model_id!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "a local model folder needs its tokenizer files (tokenizer.json or vocab.json + merges.txt); "
                        "offline, pass a local model folder (or --model random:SIZE)") from None
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(model_id, dtype=DTYPES[dtype], attn_implementation="sdpa", **kw)
        except ValueError as e:  # an architecture without SDPA (Gemma2: soft-capped attention): its own default
            if "scaled_dot_product_attention" not in str(e):
                raise
            model = AutoModelForCausalLM.from_pretrained(model_id, dtype=DTYPES[dtype], **kw)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load model {model_id!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "check the id or folder, or your network / HF_HUB_OFFLINE setting") from None
    check_tokenizer(model.config, tokenizer, model_id)
    model.to(device).eval()
    return LoadedModel(model, tokenizer, model_id, size_of(model.config), dtype, device,
                       fingerprint(model_id, model, dtype, device, revision))


def load_tokenizer(name_or_dir: str, **kw):
    """AutoTokenizer, or for a bare folder of OpenAI's vocab.json + merges.txt (no tokenizer
    config), GPT2TokenizerFast.from_pretrained on the folder. Never GPT2TokenizerFast(vocab_file=...),
    which transformers 5.x turns into an empty tokenizer."""
    from transformers import AutoTokenizer, GPT2TokenizerFast
    folder = Path(name_or_dir).expanduser()
    bare = folder.is_dir() and not (folder / "tokenizer_config.json").exists() and \
        (folder / "vocab.json").exists() and (folder / "merges.txt").exists()
    return GPT2TokenizerFast.from_pretrained(str(folder)) if bare else AutoTokenizer.from_pretrained(name_or_dir, **kw)


def check_tokenizer(config, tokenizer, model_id: str) -> None:
    """Refuse to score with a tokenizer that does not match the model: the numbers would be noise."""
    if len(tokenizer) > config.vocab_size:
        raise UserError(f"tokenizer of {model_id!r} has {len(tokenizer)} tokens but the model's vocabulary has "
                        f"{config.vocab_size}; use the model's own tokenizer")
    if getattr(config, "model_type", "") == "gpt2":
        if len(tokenizer) != config.vocab_size:
            raise UserError(f"GPT-2 model {model_id!r} has vocab_size {config.vocab_size} but its tokenizer has "
                            f"{len(tokenizer)} tokens; use the GPT-2 tokenizer")
        got = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if got != PROBE_IDS:
            raise UserError(f"tokenizer of {model_id!r} encodes {PROBE_TEXT!r} as {got[:12]}, not GPT-2's {PROBE_IDS}; "
                            "it is not the GPT-2 tokenizer (an empty or foreign one?)")
    if tokenizer.eos_token_id is None:
        raise UserError(f"tokenizer of {model_id!r} has no end-of-text token; the engine needs one")


def fingerprint(model_id: str, model, dtype: str, device: str, revision: str | None) -> str:
    """Names these exact files (or hub commit), configuration, dtype, device type and library
    versions: the model half of a result-cache key (gpt2eval.cache.fingerprint)."""
    import transformers
    commit = getattr(model.config, "_commit_hash", None) or revision
    return model_fingerprint(model_id, model.config, dtype=dtype, device_type=torch.device(device).type,
                             torch_version=torch.__version__, transformers_version=transformers.__version__,
                             commit=commit)


def make_random_model(path: str | os.PathLike, tokenizer_dir: str | os.PathLike, *, size: str = "small",
                      n_layer: int | None = None, n_embd: int | None = None, n_head: int | None = None,
                      seed: int = 0) -> Path:
    """Write a randomly initialised GPT-2 with the real tokenizer: for tests, benchmarks and demos."""
    from transformers import GPT2Config, GPT2LMHeadModel
    layers, embd = SIZES[size][2]
    n_layer, n_embd = n_layer or layers, n_embd or embd
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head or max(1, n_embd // 64), vocab_size=50257,
                        n_positions=1024)
    path = Path(path)
    GPT2LMHeadModel(config).save_pretrained(path)
    load_tokenizer(str(tokenizer_dir)).save_pretrained(path)
    return path
