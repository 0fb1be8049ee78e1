"""Loading a causal LM and its tokenizer, and checking that the two belong together.

`load` is the one entry for every --model: it asks formats.py what the argument is (by content) and
hands a nanoGPT or llm.c checkpoint to its reader (nanogpt.py, llmc.py), whose tensors convert.py
turns into a transformers GPT-2; a folder or hub id goes to transformers as it is. A checkpoint
carries no tokenizer: it is scored with --tokenizer, by default GPT-2's own.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..cache.fingerprint import model_fingerprint
from .formats import detect_format
from .sizes import DTYPE_NAMES, GPT2_TOKENIZER, SIZES

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
    fingerprint: str | None   # names these files, config, dtype, device, versions: the result cache's model key
    format: str = "hf"        # formats.FORMATS, or "module" (a model object handed to gpt2eval.evaluate)
    step: int | None = None   # the training step of a checkpoint, where it says
    tokenizer_name: str | None = None  # where the tokenizer came from, when not from the model itself

    def describe(self) -> dict:
        cfg = self.model.config
        return {"id": self.model_id, "format": self.format, "step": self.step, "size": self.size,
                "paper_size": SIZES[self.size][1] if self.size else None,
                "n_params": sum(p.numel() for p in self.model.parameters()),
                "n_layer": cfg.num_hidden_layers, "n_embd": cfg.hidden_size,
                "context_length": getattr(cfg, "n_positions", None) or cfg.max_position_embeddings,
                "vocab_rows": self.model.get_output_embeddings().weight.shape[0],
                "activation": getattr(cfg, "activation_function", None) or getattr(cfg, "hidden_act", None),
                "tokenizer": self.tokenizer_name or self.model_id,
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


def load(model_id: str, *, device: str = "auto", dtype: str = "float32", revision: str | None = None,
         tokenizer=None) -> LoadedModel:
    """Any --model: a hub id, a model folder, a nanoGPT ckpt.pt or an llm.c model .bin (by content).
    tokenizer: a hub id or folder (or a tokenizer object) to score with instead of the model's
    own (a checkpoint's default: GPT-2's)."""
    fmt = detect_format(model_id)
    if fmt != "hf":
        return load_checkpoint(model_id, fmt, device=device, dtype=dtype, tokenizer=tokenizer)
    from transformers import AutoModelForCausalLM
    device = resolve_device(device)
    local = Path(model_id).expanduser()
    if not local.exists() and (model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1):
        raise UserError(f"--model {model_id}: no such file or folder (a hub id looks like openai-community/gpt2)")
    if tokenizer is None and local.is_dir() and not any((local / name).exists() for name in TOKENIZER_FILES):
        # transformers would build an empty tokenizer here, and the error would be about its size
        raise UserError(f"cannot load a tokenizer: model folder {model_id} has no tokenizer files "
                        f"({', '.join(TOKENIZER_FILES[:2])} + merges.txt, ...); "
                        "copy them from where the model came from, or name a tokenizer with --tokenizer")
    kw = {"revision": revision} if revision else {}
    if tokenizer is not None:
        tok = named_tokenizer(tokenizer)
    else:
        try:
            tok = load_tokenizer(model_id, **kw)
        except Exception as e:  # noqa: BLE001 - every loader failure becomes one clear line
            raise UserError(f"cannot load a tokenizer for {model_id!r} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]}); a local model folder needs its tokenizer files "
                            "(tokenizer.json or vocab.json + merges.txt); offline, pass a local folder, or name "
                            "one with --tokenizer") from None
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
    check_tokenizer(model.config, tok, model_id)
    model.to(device).eval()
    return LoadedModel(model, tok, model_id, size_of(model.config), dtype, device,
                       fingerprint(model_id, model, dtype, device, revision, tok if tokenizer else None),
                       tokenizer_name=None if tokenizer is None else tokenizer_label(tokenizer))


def check_model(model_id: str) -> str:
    """What a run checks of every --model before it loads any data or weights (a sweep never stops
    half-way on a bad file): the format, by content, and an llm.c file's length against its
    header. Returns the format."""
    fmt = detect_format(model_id)
    if fmt == "llmc":
        from .llmc import check
        check(model_id)
    return fmt


def shape_of(model_id: str) -> tuple[int, int, int, int]:
    """(n_layer, width, LM-head rows, context) of any --model, for plan mode: from an llm.c header
    (its real vocabulary: the padding is not scored), nanoGPT's model_args (the file is read) or a
    transformers config."""
    fmt = check_model(model_id)
    if fmt == "llmc":
        from .llmc import read_header
        h = read_header(model_id)
        return h.n_layer, h.n_embd, h.vocab, h.block_size
    if fmt == "nanogpt":
        from .nanogpt import read
        s = read(model_id).shape
        return s.n_layer, s.n_embd, s.vocab, s.n_positions
    from transformers import AutoConfig
    try:
        c = AutoConfig.from_pretrained(model_id)
    except Exception as e:  # noqa: BLE001 - one clear line
        raise UserError(f"--model {model_id}: cannot read its configuration ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160]})") from None
    return (c.num_hidden_layers, c.hidden_size, c.vocab_size,
            getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None) or 1024)


def load_checkpoint(path: str, fmt: str, *, device: str = "auto", dtype: str = "float32",
                    tokenizer=None) -> LoadedModel:
    """A nanoGPT or llm.c checkpoint file as a transformers GPT-2 that scores as its project's
    own code does (convert.py), with `tokenizer` (default GPT-2's). nanoGPT's vocabulary may be
    padded beyond the tokenizer's: those rows stay in its softmax."""
    from . import llmc, nanogpt
    from .convert import build_gpt2
    device = resolve_device(device)
    tok_name = tokenizer or GPT2_TOKENIZER
    tok = named_tokenizer(tok_name)  # before the weights: a missing tokenizer fails cheap
    ckpt = (nanogpt if fmt == "nanogpt" else llmc).read(path)
    model = build_gpt2(ckpt.shape, ckpt.tensors, linear_layout=ckpt.linear_layout, device=device,
                       dtype=DTYPES[dtype], head=ckpt.head)
    step = ckpt.step
    del ckpt  # the file's other tensors (llm.c's padded rows, bfloat16 originals) go now
    check_tokenizer(model.config, tok, path, padded_vocab=fmt == "nanogpt")
    return LoadedModel(model, tok, path, size_of(model.config), dtype, device,
                       fingerprint(path, model, dtype, device, None, tok), format=fmt, step=step,
                       tokenizer_name=tokenizer_label(tok_name))


def tokenizer_label(tokenizer) -> str:
    """How results.json names a tokenizer: its folder or hub id, or an object's name_or_path."""
    if isinstance(tokenizer, (str, os.PathLike)):
        return str(tokenizer)
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def named_tokenizer(name):
    """The tokenizer --tokenizer names (hub id or folder), or one clear line. A tokenizer object
    (gpt2eval.evaluate(tokenizer=...)) is returned as it is."""
    if not isinstance(name, (str, os.PathLike)):
        return name
    try:
        return load_tokenizer(str(name))
    except Exception as e:  # noqa: BLE001 - one clear line
        raise UserError(f"cannot load the tokenizer {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                        "a checkpoint carries no tokenizer: pass --tokenizer with a GPT-2 tokenizer folder "
                        "(vocab.json + merges.txt) or a hub id available offline") from None


def load_tokenizer(name_or_dir: str, **kw):
    """AutoTokenizer, or for a bare folder of OpenAI's vocab.json + merges.txt (no tokenizer
    config), GPT2TokenizerFast.from_pretrained on the folder. Never GPT2TokenizerFast(vocab_file=...),
    which transformers 5.x turns into an empty tokenizer."""
    from transformers import AutoTokenizer, GPT2TokenizerFast
    folder = Path(name_or_dir).expanduser()
    bare = folder.is_dir() and not (folder / "tokenizer_config.json").exists() and \
        (folder / "vocab.json").exists() and (folder / "merges.txt").exists()
    return GPT2TokenizerFast.from_pretrained(str(folder)) if bare else AutoTokenizer.from_pretrained(name_or_dir, **kw)


def check_tokenizer(config, tokenizer, model_id: str, padded_vocab: bool = False) -> None:
    """Refuse to score with a tokenizer that does not match the model: the numbers would be noise.

    padded_vocab: the model's vocabulary may have rows beyond the tokenizer's, which no input
    token selects but which its softmax covers (nanoGPT pads 50,257 to 50,304 when it trains from
    scratch); a GPT-2 must then have at least the tokenizer's rows, instead of exactly as many,
    and the tokenizer must still encode like GPT-2's."""
    if len(tokenizer) > config.vocab_size:
        raise UserError(f"tokenizer of {model_id!r} has {len(tokenizer)} tokens but the model's vocabulary has "
                        f"{config.vocab_size}; use the model's own tokenizer")
    if getattr(config, "model_type", "") == "gpt2":
        if len(tokenizer) != config.vocab_size and not padded_vocab:
            raise UserError(f"GPT-2 model {model_id!r} has vocab_size {config.vocab_size} but its tokenizer has "
                            f"{len(tokenizer)} tokens; use the GPT-2 tokenizer")
        got = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if got != PROBE_IDS:
            raise UserError(f"tokenizer of {model_id!r} encodes {PROBE_TEXT!r} as {got[:12]}, not GPT-2's {PROBE_IDS}; "
                            "it is not the GPT-2 tokenizer (an empty or foreign one?)")
    if tokenizer.eos_token_id is None:
        raise UserError(f"tokenizer of {model_id!r} has no end-of-text token; the engine needs one")


def fingerprint(model_id: str, model, dtype: str, device: str, revision: str | None, tokenizer=None) -> str:
    """Names these exact files (or hub commit, or checkpoint file), configuration, dtype, device
    type and library versions: the model half of a result-cache key (gpt2eval.cache.fingerprint).
    tokenizer: one that does not come with the model (a checkpoint's, --tokenizer), named by its
    content: it decides which tokens a decode may not choose and how they read as text."""
    import transformers
    commit = getattr(model.config, "_commit_hash", None) or revision
    return model_fingerprint(model_id, model.config, dtype=dtype, device_type=torch.device(device).type,
                             torch_version=torch.__version__, transformers_version=transformers.__version__,
                             commit=commit, tokenizer=None if tokenizer is None else tokenizer_digest(tokenizer))


def tokenizer_digest(tokenizer) -> str:
    """sha256 of a fast tokenizer's whole definition (vocabulary, merges, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:32]


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
