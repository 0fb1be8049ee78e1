"""What a --model argument names, decided by a file's content and never by its name, and the list
of models one --model argument expands to. No torch here: the command line and plan mode use it.

The formats:
- "hf": a folder (transformers' files) or a hub id;
- "llmc": a file whose first int32 (little-endian) is llm.c's magic 20240326, as `write_model` in
  llm.c's train_gpt2.py and its C trainers write `model_%08d.bin` (llmc.py reads the rest);
- "nanogpt": a file that torch.save wrote (a zip archive, or a legacy pickle stream), as nanoGPT's
  train.py writes `ckpt.pt` (nanogpt.py checks that it really is one: `model`, `model_args`).
Any other file is refused with one line that says what was found.
"""
from __future__ import annotations

import glob
import re
import struct
from pathlib import Path

from ..errors import UserError

FORMATS = ("hf", "nanogpt", "llmc")
LLMC_MAGIC = 20240326
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default archive since torch 1.6
PICKLE_START = 0x80  # a pickle stream's PROTO opcode: torch.save(..., _use_new_zipfile_serialization=False)
LLMC_STEP = re.compile(r"model_(\d+)\.bin$")  # llm.c's checkpoints: model_%08d.bin, the training step
GLOB_CHARS = set("*?[")


def detect_format(model: str) -> str:
    """"hf", "nanogpt" or "llmc" for one --model argument (module docstring); UserError for a
    file that is none of them."""
    path = Path(model).expanduser()
    if not path.is_file():
        return "hf"  # a folder or a hub id: load.py says what is wrong with it, if anything
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) >= 4 and struct.unpack("<i", head[:4])[0] == LLMC_MAGIC:
        return "llmc"
    if head.startswith(ZIP_MAGIC) or (head[:1] and head[0] == PICKLE_START):
        return "nanogpt"
    found = struct.unpack("<i", head[:4])[0] if len(head) >= 4 else f"{len(head)} bytes in all"
    raise UserError(f"--model {model}: not a model gpt2eval reads: not an llm.c model .bin (its first int32 is "
                    f"{found}, not the magic {LLMC_MAGIC}), not a torch.save file such as nanoGPT's ckpt.pt, and "
                    "not a Hugging Face model folder")


def step_from_name(path: str | Path) -> int | None:
    """The training step in an llm.c checkpoint's name (model_00004000.bin -> 4000), else None."""
    m = LLMC_STEP.search(Path(path).name)
    return int(m.group(1)) if m else None


def expand_models(spec: str) -> list[str]:
    """One --model argument as a list of models: comma-separated, each a hub id, a folder, a file or
    a glob ("log124M/model_*.bin", quoted so that the shell leaves it alone). A glob's matches come
    in name order (llm.c pads its steps to 8 digits, so that is step order); one that matches
    nothing is a UserError."""
    models = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if GLOB_CHARS & set(part):
            matches = sorted(glob.glob(str(Path(part).expanduser())))
            if not matches:
                raise UserError(f"--model {part}: the pattern matches no file or folder (quote it so that the "
                                "shell passes it on; check the folder and the step digits)")
            models += matches
        else:
            models.append(part)
    if not models:
        raise UserError("--model is empty; give a model folder, hub id, checkpoint file or a glob of them")
    return list(dict.fromkeys(models))


def run_names(models: list[str], sizes: tuple[str, ...] = ()) -> list[str]:
    """A sub-folder name per model of a run: a size as it is, a folder or hub id by its last part, a
    checkpoint file by its name without the suffix (model_00004000). Where two would be the same
    (out-a/ckpt.pt, out-b/ckpt.pt) the parent folders are prefixed until they differ."""
    def name(m: str, depth: int) -> str:
        if m in sizes:
            return m
        p = Path(m)
        last = p.stem if p.is_file() else p.name
        parents = [q.name for q in list(p.parents)[:depth] if q.name][::-1]
        return "_".join(parents + [last]) or m

    depth = [0] * len(models)
    names = [name(m, 0) for m in models]
    for _ in range(64):  # paths are never that deep; the loop ends long before
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        for i, n in enumerate(names):
            if n in clashes:
                depth[i] += 1
                names[i] = name(models[i], depth[i])
    return [f"{i:03d}_{n}" for i, n in enumerate(names)]
