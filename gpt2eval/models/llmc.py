"""Reading llm.c's model files: what `write_model` in llm.c's train_gpt2.py writes, and its C/CUDA
trainers write as `model_%08d.bin` during training.

The file is a header of 256 little-endian int32 (magic 20240326; version 3 = every tensor float32,
5 = every tensor bfloat16; block size, vocabulary, layers, heads, width, padded vocabulary), then
the parameters back to back in `write_tensors`' order: wte (padded vocabulary x width), wpe, then
for each kind every layer's tensor (ln_1 weights, ln_1 biases, qkv weights, qkv biases, attention
projection weights and biases, ln_2 weights and biases, MLP up weights and biases, MLP down weights
and biases), then ln_f's weight and bias. Matrices are nn.Linear's [out, in].

How llm.c scores, and what this reader hands on so that gpt2eval scores the same: the tanh GELU
("gelu_new", as GPT-2); the vocabulary is padded (to a multiple of 128: 50,304) with zero rows for
the speed of its kernels only, and its softmax runs over the real 50,257 tokens, so the padded
rows are cut off here (a view: no copy) and never reach the LM head.

A file of the wrong length (a checkpoint still being written, or cut short) is refused by its
size, before anything is read.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import UserError
from .convert import Checkpoint, GPT2Shape
from .formats import LLMC_MAGIC, step_from_name

HEADER_INTS = 256
VERSIONS = {3: torch.float32, 5: torch.bfloat16}
PER_LAYER = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
             "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias")  # write_tensors' order


class Header(NamedTuple):
    version: int
    block_size: int
    vocab: int
    n_layer: int
    n_head: int
    n_embd: int
    padded_vocab: int


def read_header(path: str | Path) -> Header:
    where = f"--model {path}"
    with open(path, "rb") as f:
        raw = f.read(4 * HEADER_INTS)
    if len(raw) < 4 * HEADER_INTS:
        raise UserError(f"{where}: an llm.c model file is truncated: {len(raw)} bytes, not even its "
                        f"{4 * HEADER_INTS}-byte header")
    ints = struct.unpack(f"<{HEADER_INTS}i", raw)
    if ints[0] != LLMC_MAGIC:
        raise UserError(f"{where}: not an llm.c model file: magic {ints[0]}, expected {LLMC_MAGIC}")
    if ints[1] not in VERSIONS:
        raise UserError(f"{where}: llm.c model version {ints[1]}; gpt2eval reads versions 3 (float32) and 5 "
                        "(bfloat16), those with a padded vocabulary; export it again with a current llm.c")
    h = Header(*ints[1:8])
    if min(h[1:]) <= 0 or h.n_embd % h.n_head or h.padded_vocab < h.vocab:
        raise UserError(f"{where}: an llm.c header that describes no GPT-2: {h._asdict()}")
    return h


def tensor_sizes(h: Header) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor in file order; per-layer kinds as one [n_layer, ...] block."""
    L, C, V = h.n_layer, h.n_embd, h.padded_vocab
    per_layer = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,),
                 "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
                 "mlp.c_fc.weight": (4 * C, C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (C, 4 * C),
                 "mlp.c_proj.bias": (C,)}
    return ([("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (h.block_size, C))]
            + [(kind, (L, *per_layer[kind])) for kind in PER_LAYER]
            + [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))])


def check(path: str | Path) -> Header:
    """The header, and the file's length checked against it (a file still being written, or cut
    short, is refused here, before its tensors are read)."""
    h = read_header(path)
    expected = 4 * HEADER_INTS + _count(h) * VERSIONS[h.version].itemsize
    found = os.path.getsize(path)
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise UserError(f"--model {path}: llm.c model file {what}: {found} bytes, expected {expected} for "
                        f"{h.n_layer} layers x {h.n_embd} wide, vocabulary {h.padded_vocab}, version {h.version}")
    return h


def read(path: str | Path) -> Checkpoint:
    h = check(path)
    dtype = VERSIONS[h.version]
    sizes = tensor_sizes(h)
    count = _count(h)
    raw = bytearray(os.path.getsize(path))
    with open(path, "rb") as f:
        f.readinto(raw)
    values = torch.frombuffer(raw, dtype=dtype, offset=4 * HEADER_INTS, count=count)
    tensors, at = {}, 0
    for name, shape in sizes:
        block = values[at:at + _numel(shape)].view(shape)
        at += _numel(shape)
        if name in PER_LAYER:
            for i in range(h.n_layer):
                tensors[f"transformer.h.{i}.{name}"] = block[i]
        else:
            tensors[name] = block
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"][:h.vocab]  # the real tokens only
    shape = GPT2Shape(n_layer=h.n_layer, n_head=h.n_head, n_embd=h.n_embd, n_positions=h.block_size, vocab=h.vocab,
                      activation="gelu_new")
    return Checkpoint("llmc", shape, tensors, linear_layout=True, step=step_from_name(path))


def _count(h: Header) -> int:
    return sum(_numel(shape) for _, shape in tensor_sizes(h))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
