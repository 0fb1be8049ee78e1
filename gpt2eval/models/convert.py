"""A GPT-2 that is not a transformers model (a nanoGPT or llm.c checkpoint's tensors, a training
loop's module) as transformers' GPT2LMHeadModel around the same tensors, so that every fast path
of the engine (fused forward, blocked LM head, shared prefixes, fused decode) serves it.

What makes the result score exactly as the source's own code does:
- activation: the configuration names the source's GELU ("gelu" = the exact erf form of nanoGPT's
  nn.GELU(); "gelu_new" = the tanh form of GPT-2 and llm.c), and the fused kernels follow it;
- vocabulary: the head keeps exactly the rows the source's softmax runs over (the reader decides:
  nanoGPT's padded rows stay, llm.c's padding is cut off before it gets here);
- layout: nn.Linear keeps weights as [out, in], GPT-2's Conv1D as [in, out]; a Linear weight is
  used as its transposed view (no copy: the matrix products take either layout);
- bias=False (nanoGPT's option): the missing biases are zeros, which add nothing.

The model is built on the meta device and its parameters are then set to the given tensors, moved
or cast only where the device or dtype asked for differs: a source already in place is not copied.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ACTIVATIONS = ("gelu", "gelu_new")  # transformers' names: the exact erf GELU, GPT-2's tanh approximation
BLOCK_MATRICES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BLOCK_VECTORS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.bias", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                 "mlp.c_fc.bias", "mlp.c_proj.bias")
OPTIONAL = ("bias",)  # parameter names a bias=False model leaves out (zeros stand in)


@dataclass(frozen=True)
class GPT2Shape:
    """What a GPT-2 is, beyond its tensors."""
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab: int               # rows of the LM head, all of them in the softmax
    activation: str          # one of ACTIVATIONS
    layer_norm_eps: float = 1e-5


@dataclass
class Checkpoint:
    """A checkpoint as a reader (nanogpt.py, llmc.py) hands it to `build_gpt2`: tensors under GPT-2's names."""
    format: str                        # formats.FORMATS
    shape: GPT2Shape
    tensors: dict
    linear_layout: bool                # block matrices are [out, in] (nn.Linear)
    step: int | None                   # the training step it was saved at, where known
    head: torch.Tensor | None = None   # an LM head that is not the token embedding (None: tied)


def expected_names(n_layer: int) -> list[str]:
    """GPT-2's parameter names (nanoGPT's and llm.c's are the same), lm_head left out (tied)."""
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(n_layer):
        names += [f"transformer.h.{i}.{n}" for n in BLOCK_MATRICES + BLOCK_VECTORS]
    return names + ["transformer.ln_f.weight", "transformer.ln_f.bias"]


def build_gpt2(shape: GPT2Shape, tensors: dict[str, torch.Tensor], *, linear_layout: bool,
               device: str | torch.device, dtype: torch.dtype, head: torch.Tensor | None = None):
    """GPT2LMHeadModel (eval mode, no gradients) whose parameters are `tensors` (GPT-2's names,
    `expected_names`; biases may be missing), moved to `device` and cast to `dtype` only where
    they differ. linear_layout: the block matrices are [out, in] (nn.Linear). head: an LM head
    that is not the token embedding (None: tied, as in nanoGPT and llm.c)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    if shape.activation not in ACTIVATIONS:
        raise ValueError(f"activation {shape.activation!r} is not one of {ACTIVATIONS}")
    config = GPT2Config(vocab_size=shape.vocab, n_positions=shape.n_positions, n_embd=shape.n_embd,
                        n_layer=shape.n_layer, n_head=shape.n_head, activation_function=shape.activation,
                        layer_norm_epsilon=shape.layer_norm_eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        tie_word_embeddings=head is None, bos_token_id=50256, eos_token_id=50256)
    config._attn_implementation = "sdpa"  # what the unfused path would use (the fused one is SDPA too)
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    for name in expected_names(shape.n_layer):
        t = tensors.get(name)
        if t is None:
            if name.rsplit(".", 1)[-1] not in OPTIONAL:
                raise ValueError(f"missing tensor {name}")
            t = torch.zeros(model.get_parameter(name).shape, dtype=dtype, device=device)
        t = t.detach().to(device=device, dtype=dtype)
        if linear_layout and name.endswith(BLOCK_MATRICES):
            t = t.t()  # a view: [out, in] read as [in, out]
        _set(model, name, t)
    model.lm_head.weight = model.transformer.wte.weight if head is None else \
        torch.nn.Parameter(head.detach().to(device=device, dtype=dtype), requires_grad=False)
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise ValueError(f"tensors not set: {', '.join(left[:4])}")
    return model.eval()


def _set(model, name: str, tensor: torch.Tensor) -> None:
    owner, leaf = name.rsplit(".", 1)
    module = model.get_submodule(owner)
    expected = module._parameters[leaf].shape
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected)} for GPT-2's layout")
    module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
