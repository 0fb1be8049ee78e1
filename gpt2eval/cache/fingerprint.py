"""What an answer depends on, as digests for the result cache's keys.

A cached answer may be served only where recomputing it would give the same bytes, so its key holds
everything that can change it (docs/cache.md):

- the model: a local folder's files (config.json, generation_config.json, tokenizer files, weights:
  every file at the top of the folder but documentation), a checkpoint file's bytes (nanoGPT,
  llm.c), or a hub id and its resolved commit; in every case also the configuration as loaded,
  and a tokenizer that does not come with the model (a checkpoint's) by its content;
- the dtype and the device type;
- the torch and transformers versions;
- the code that computes answers: a digest of the source of `ANSWERING_MODULES` (`code_digest`);
- the request (the engine's own key of its token ids and settings).

No torch import here: the `cache` subcommand computes the code digest without loading a model.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # gpt2eval/

# The modules whose code decides an answer's bytes: loading (dtype, attention kernel, tokenizer),
# encoding requests into tokens, batching (a batch's shape moves the last digits) and the chains of
# batches that hand a prefix's keys/values on, the forward pass and the head, decoding.
# tests/test_cache.py checks that every gpt2eval module the engine imports is in this list, and
# that a change to any byte of any of these files changes the digest.
ANSWERING_MODULES = ("engine/encode", "engine/schedule", "engine/chains", "engine/forward", "engine/heads",
                     "engine/decode", "engine/fused_decode", "engine/stats", "engine/engine", "models/load",
                     "models/sizes", "models/convert", "models/nanogpt", "models/llmc", "models/formats",
                     "api/requests", "models/random")  # random: how --model random:SIZE draws its weights

# Files of a model folder that cannot change an answer (everything else at its top is hashed).
DOC_SUFFIXES = (".md", ".rst")
DOC_PREFIXES = ("README", "LICENSE", "NOTICE", "USE_POLICY")


def code_digest(package: Path = PACKAGE, modules: tuple[str, ...] = ANSWERING_MODULES) -> str:
    """sha256 over the answering modules' source bytes, each preceded by its name."""
    h = hashlib.sha256()
    for name in modules:
        h.update(f"{name}.py\0".encode())
        h.update((package / f"{name}.py").read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:32]


def folder_files(folder: Path) -> list[Path]:
    """The files of a local model folder that go into its fingerprint, in a fixed order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(DOC_SUFFIXES) and not p.name.upper().startswith(DOC_PREFIXES))


def config_content(config) -> str:
    """The configuration as loaded, without where it was loaded from (a moved folder is the same model)."""
    d = config.to_dict()
    d.pop("_name_or_path", None)
    return json.dumps(d, sort_keys=True, default=str)


def model_fingerprint(model_id: str, config, *, dtype: str, device_type: str, torch_version: str,
                      transformers_version: str, commit: str | None = None, tokenizer: str | None = None) -> str:
    """One name for "these files (or this hub commit), loaded this way, by these libraries".
    tokenizer: a digest of a tokenizer that is not among the model's files."""
    h = hashlib.sha256(f"dtype={dtype}\0device={device_type}\0torch={torch_version}\0"
                       f"transformers={transformers_version}\0".encode())
    local = Path(model_id).expanduser()
    if local.is_dir():
        for f in folder_files(local):
            h.update(f"file={f.name}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
            h.update(b"\0")
    elif local.is_file():  # a checkpoint: its bytes, not its name (a moved file is the same model)
        h.update(b"checkpoint=")
        with open(local, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                h.update(block)
        h.update(b"\0")
    else:
        h.update(f"hub={model_id}@{commit or 'unknown-revision'}\0".encode())
    if tokenizer:
        h.update(f"tokenizer={tokenizer}\0".encode())
    h.update(f"config={config_content(config)}".encode())
    return h.hexdigest()[:32]


def model_label(model_id: str) -> str:
    """How the cache names a model: a local folder or checkpoint file by its absolute path (a run
    from another folder names it the same), a hub id as given."""
    local = Path(model_id).expanduser()
    return str(local.resolve()) if local.exists() else model_id
