"""`--model random:SIZE`: a randomly initialised GPT-2 built in memory, to try the whole pipeline
offline before any weights are downloaded. Nothing is written to disk for it.

SIZE is `tiny` (2 layers, 64 wide: seconds per task on a CPU) or one of the paper's four shapes
(small, medium, large, xl). The weights come from the run's --seed alone (torch's generator, forked
so that the rest of the run's randomness is untouched), and the tokenizer is GPT-2's, from
--tokenizer (a folder with vocab.json and merges.txt, or a hub id; default openai-community/gpt2,
read from the local hub cache when the hub cannot be reached). Its numbers are meaningless, and
every output says so: results.json's model block has `random`, the console and the report name it.
The result cache's fingerprint is the shape, the seed, a digest of the tokenizer's content and the
usual dtype, device and library versions: the same command reuses its answers, and nothing else does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import hub
from ..cache.fingerprint import model_fingerprint
from ..errors import UserError
from .load import DTYPES, LoadedModel, check_tokenizer, load_tokenizer, resolve_device, size_of
from .sizes import N_CTX, SIZES, VOCAB

PREFIX = "random:"
DEFAULT_TOKENIZER = "openai-community/gpt2"
# name -> (n_layer, n_embd, n_head): tiny, then the paper's four (64-wide heads, as GPT-2's)
SHAPES = {"tiny": (2, 64, 4), **{s: (layers, d, d // 64) for s, (_, _, (layers, d)) in SIZES.items()}}
MEANINGLESS = "randomly initialised weights: its numbers are meaningless (a test of the pipeline, not of GPT-2)"


def is_random(model_id: str) -> bool:
    return model_id.startswith(PREFIX)


def shape_of(model_id: str) -> str:
    """"random:tiny" -> "tiny"; an unknown shape is one line that lists the others."""
    shape = model_id[len(PREFIX):]
    if shape not in SHAPES:
        raise UserError(f"--model {model_id}: no such random shape; choose random:{', random:'.join(SHAPES)}")
    return shape


def describe_shape(n_layer: int, n_embd: int, n_head: int) -> str:
    """"2 layers, 64 wide, 4 heads", with the paper size it matches, if any."""
    size = next((s for s, (_, _, sh) in SIZES.items() if sh == (n_layer, n_embd)), None)
    text = f"{n_layer} layer{'s' * (n_layer != 1)}, {n_embd} wide, {n_head} head{'s' * (n_head != 1)}"
    return text + (f": the {size} shape" if size else "")


@dataclass
class RandomModel(LoadedModel):
    random: dict = field(default_factory=dict)  # shape, seed, tokenizer and its digest, and the warning

    def describe(self) -> dict:
        return {**super().describe(), "random": self.random}


def tokenizer_digest(tokenizer) -> str:
    """A digest of the tokenizer's content (vocabulary, merges, special tokens), wherever it was read from."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()[:32]


def _tokenizer(source: str, model_id: str):
    if not Path(source).expanduser().is_dir():
        if source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise UserError(f"--tokenizer {source}: no such folder (a folder with vocab.json and merges.txt, or a hub "
                            f"id such as {DEFAULT_TOKENIZER})")
        why = hub.unreachable(hub.MODELS)
        if why and not hub.in_hub_cache(source, "vocab.json"):
            raise UserError(f"--model {model_id} needs the GPT-2 tokenizer: {source} is not in the local hub cache "
                            f"({hub.hub_cache_dir()}) and the hub cannot be reached ({why}); pass --tokenizer with a "
                            "folder holding vocab.json and merges.txt")
    try:
        return load_tokenizer(source)
    except Exception as e:  # noqa: BLE001 - one clear line
        raise UserError(f"cannot load the tokenizer {source!r} for --model {model_id} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''}); pass --tokenizer with a folder holding "
                        "vocab.json and merges.txt") from None


def load_random(model_id: str, *, tokenizer: str | None = None, device: str = "auto", dtype: str = "float32",
                seed: int = 0, log=print) -> RandomModel:
    """Build the model `random:SIZE` names, with the GPT-2 tokenizer from `tokenizer`."""
    from transformers import GPT2Config, GPT2LMHeadModel
    import transformers
    shape = shape_of(model_id)
    device = resolve_device(device)
    source = tokenizer or DEFAULT_TOKENIZER
    tok = _tokenizer(source, model_id)
    n_layer, n_embd, n_head = SHAPES[shape]
    log(f"building {model_id}: a GPT-2 of {describe_shape(n_layer, n_embd, n_head)}, weights from seed {seed}, "
        f"tokenizer {source}; {MEANINGLESS}")
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=VOCAB, n_positions=N_CTX)
    with torch.random.fork_rng(devices=[]):  # the run's own random state stays as it was
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)  # initialised on the CPU: the same weights on every device
    check_tokenizer(model.config, tok, model_id)
    model.to(DTYPES[dtype]).to(device).eval()
    digest = tokenizer_digest(tok)
    fingerprint = model_fingerprint(model_id, model.config, dtype=dtype, device_type=torch.device(device).type,
                                    torch_version=torch.__version__, transformers_version=transformers.__version__,
                                    commit=f"seed={seed};tokenizer={digest}")
    info = {"shape": shape, "seed": seed, "tokenizer": source, "tokenizer_sha256": digest, "note": MEANINGLESS}
    return RandomModel(model, tok, model_id, size_of(model.config), dtype, device, fingerprint, random=info)
