"""Test helpers for your-own-GPT-2 checkpoints, written here from the two projects' published model
definitions and file formats (none of it goes through gpt2eval's loaders):

- `GPT`: a nanoGPT-style module (transformer.wte/wpe/h/ln_f, tied lm_head, nn.Linear layers,
  optional biases, nn.GELU() or the tanh GELU), whose forward is the reference: plain attention
  with an explicit causal mask, and a softmax over every row of lm_head;
- `write_nanogpt` / `write_llmc`: the files nanoGPT's train.py and llm.c's write_model save;
- `reference_answers`: a task's requests answered by a `GPT` forward, one sequence at a time, with
  no cache, no batching and no blocked head: the numbers a checkpoint's own code would give.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

TINY = Path(__file__).resolve().parents[2] / "shared" / "models" / "tiny-lambada"  # also used by benchmarks/
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 128
    bias: bool = True
    dropout: float = 0.0
    gelu: str = "none"  # "none": nn.GELU() as nanoGPT; "tanh": GPT-2's and llm.c's


class LayerNorm(nn.Module):
    def __init__(self, n, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head = c.n_head
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in self.c_attn(x).split(d, 2))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.n_head)
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool, device=x.device).tril(), float("-inf"))
        y = self.drop(scores.softmax(-1)) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU(approximate=c.gelu)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1, self.attn = LayerNorm(c.n_embd, c.bias), Attention(c)
        self.ln_2, self.mlp = LayerNorm(c.n_embd, c.bias), MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout), h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=LayerNorm(c.n_embd, c.bias)))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        t = idx.shape[1]
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t, device=idx.device)))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)

    def all_logits(self, idx):
        return self(idx, torch.full_like(idx, -1))[0]


def tiny_state(folder: Path = TINY) -> dict:
    """A transformers GPT-2 folder's weights (tiny-lambada's by default) in nanoGPT's layout
    (nn.Linear: [out, in])."""
    from safetensors.torch import load_file
    sd = load_file(str(Path(folder) / "model.safetensors"))
    sd = {k if k.startswith("transformer.") else "transformer." + k: v for k, v in sd.items()}
    sd = {k: v.t().contiguous() if k.endswith(CONV1D) else v for k, v in sd.items() if not k.endswith(".attn.bias")}
    sd.pop("transformer.lm_head.weight", None)
    return sd


def tiny_gpt(vocab: int = 50304, gelu: str = "none", bias: bool = True, seed: int = 0,
             padded_scale: float = 0.02, folder: Path = TINY) -> GPT:
    """A `GPT` holding tiny-lambada's weights (or another GPT-2 folder's); rows beyond 50,257 are
    small random values (a nanoGPT trained from scratch has trained, non-zero padded rows);
    bias=False drops the biases."""
    sd = tiny_state(folder)
    cfg = json.loads((Path(folder) / "config.json").read_text())
    model = GPT(GPTConfig(vocab_size=vocab, gelu=gelu, bias=bias, n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                          n_embd=cfg["n_embd"], block_size=cfg["n_positions"]))
    wte = sd["transformer.wte.weight"]
    if vocab > wte.shape[0]:
        g = torch.Generator().manual_seed(seed)
        extra = torch.randn(vocab - wte.shape[0], wte.shape[1], generator=g) * padded_scale
        sd["transformer.wte.weight"] = torch.cat([wte, extra])
    if not bias:
        sd = {k: v for k, v in sd.items() if not k.endswith("bias")}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd)
    return model.eval()


def write_nanogpt(path, model: GPT, iter_num: int = 1000, compiled: bool = False, drop=()):
    """A ckpt.pt as nanoGPT's train.py saves it (keys `_orig_mod.`-prefixed when compiled)."""
    c = model.config
    prefix = "_orig_mod." if compiled else ""
    ckpt = {"model": {prefix + k: v for k, v in model.state_dict().items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 6e-4, "betas": (0.9, 0.95), "params": [0, 1]}]},
            "model_args": dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
                               bias=c.bias, vocab_size=c.vocab_size, dropout=c.dropout),
            "iter_num": iter_num, "best_val_loss": torch.tensor(3.25),
            "config": {"out_dir": "out", "batch_size": 12, "compile": compiled, "dtype": "bfloat16"}}
    for key in drop:
        del ckpt[key]
    torch.save(ckpt, path)
    return path


LLMC_ORDER = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
              "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
              "mlp.c_proj.weight", "mlp.c_proj.bias")


def write_llmc(path, sd: dict, *, n_layer=2, n_head=2, n_embd=128, block_size=1024, bf16=False, padded=50304):
    """A model .bin as llm.c's write_model saves it: header, then write_tensors' order, the
    vocabulary padded with zero rows to `padded`."""
    header = [0] * 256
    header[:8] = [20240326, 5 if bf16 else 3, block_size, 50257, n_layer, n_head, n_embd, padded]
    wte = sd["transformer.wte.weight"][:50257]
    tensors = [torch.cat([wte, torch.zeros(padded - 50257, n_embd)]), sd["transformer.wpe.weight"]]
    for kind in LLMC_ORDER:
        tensors += [sd[f"transformer.h.{i}.{kind}"] for i in range(n_layer)]
    tensors += [sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"]]
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        for t in tensors:
            t = t.detach().float().contiguous()
            f.write((t.to(torch.bfloat16).view(torch.int16) if bf16 else t).numpy().tobytes())
    return path


def llmc_reference(sd: dict, bf16: bool) -> GPT:
    """llm.c's semantics as a `GPT`: the tanh GELU, the 50,257 real rows only, bfloat16-rounded weights
    for a version 5 file (scored in float32)."""
    model = GPT(GPTConfig(vocab_size=50257, gelu="tanh"))
    sd = {k: (v.to(torch.bfloat16).float() if bf16 else v) for k, v in sd.items()}
    sd["transformer.wte.weight"] = sd["transformer.wte.weight"][:50257]
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd)
    return model.eval()


@torch.inference_mode()
def reference_answers(model: GPT, tokenizer, requests) -> list:
    """Each request answered by `model`'s full forward over its tokens, one at a time: log-likelihoods
    from a log-softmax over all of lm_head's rows; generations greedy over every row, banned
    words masked, decoded to the end of their budget (a filter reads only the first word)."""
    from gpt2eval.api.requests import Generation, GenerationResult, Loglikelihood, LoglikelihoodResult
    from gpt2eval.engine.decode import suppressed_ids
    from gpt2eval.engine.encode import Encoder
    enc, memo, out = Encoder(tokenizer, model.config.block_size), {}, []
    for r in requests:
        if isinstance(r, Loglikelihood):
            (item,), (cut,) = enc.loglikelihood([r])
            ids = torch.tensor([item.input_ids])
            logp = model.all_logits(ids)[0].float().log_softmax(-1)
            n, t = len(item.input_ids), list(item.targets)
            rows = logp[n - len(t):n]  # an item's last positions predict its targets (the engine's layout)
            lp = rows[torch.arange(len(t)), torch.tensor(t)].tolist()
            greedy = (rows.argmax(-1) == torch.tensor(t)).tolist()
            out.append(LoglikelihoodResult(sum(lp), all(greedy), lp, greedy, cut))
        else:
            assert isinstance(r, Generation) and r.decoding.greedy
            ids = enc.prompt(r, {}).ids
            ban = suppressed_ids(tokenizer, r.decoding.suppress_words, memo, r.decoding.suppress_mode) \
                if r.decoding.suppress_words else []
            new = []
            for _ in range(r.max_new_tokens):
                logits = model(torch.tensor([ids + new]))[0][0, -1].float()
                logits[ban] = float("-inf")
                nxt = int(logits.argmax())
                if nxt == tokenizer.eos_token_id:
                    break
                new.append(nxt)
            text = tokenizer.decode(new)
            out.append(GenerationResult(text=text, raw_text=text, n_tokens=len(new), stopped_by="length",
                                        token_ids=new))
    return out
