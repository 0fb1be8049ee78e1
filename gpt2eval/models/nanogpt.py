"""Reading nanoGPT's checkpoints: the `ckpt.pt` that its train.py saves, a dict with `model` (the
GPT's state dict), `model_args` (n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout),
`iter_num`, and the optimizer state and training config, which are not needed here.

How nanoGPT's own model scores, and what this reader hands on so that gpt2eval scores the same:
- its MLP is nn.GELU(), the exact erf GELU (GPT-2's is the tanh approximation): "gelu";
- its loss is a softmax over every row of lm_head, so a vocabulary padded to 50,304 for training
  from scratch keeps all 50,304 rows (padded rows are trained towards low logits, not zero);
- its layers are nn.Linear ([out, in] weights) and, with bias=False, have no biases at all;
- lm_head is tied to the token embedding; a state dict saved from a torch.compile'd model has
  every key prefixed with `_orig_mod.`, and without flash attention each block carries its
  causal mask as a buffer `attn.bias`: both are undone here.

torch.load runs with weights_only=True: a nanoGPT checkpoint holds only tensors and plain values
(numbers, strings, dicts, lists), so nothing in the file is executed; a file that needs more (any
other pickled object) is refused rather than unpickled.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import UserError
from .convert import Checkpoint, GPT2Shape, expected_names

COMPILED_PREFIX = "_orig_mod."
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")  # `bias` defaults to True when absent


def read(path: str | Path) -> Checkpoint:
    where = f"--model {path}"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{where}: a torch file holding objects other than tensors and plain values, which "
                        f"gpt2eval does not unpickle (weights_only=True: {str(e).splitlines()[0][:160]}); save "
                        "the checkpoint's `model`, `model_args` and `iter_num` alone") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{where}: not a readable torch checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160]}); a truncated or partly written file?") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        keys = ", ".join(map(str, list(ckpt)[:6])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{where}: a torch file but not a nanoGPT checkpoint: it needs the keys 'model' and "
                        f"'model_args' (as nanoGPT's train.py saves), found {keys or 'no keys'}")
    args = ckpt["model_args"]
    missing = [k for k in MODEL_ARGS if not isinstance(args, dict) or not isinstance(args.get(k), int)]
    if missing:
        raise UserError(f"{where}: model_args lacks the integer(s) {', '.join(missing)}")
    if not isinstance(ckpt["model"], dict):
        raise UserError(f"{where}: its 'model' is a {type(ckpt['model']).__name__}, not a state dict")
    state = {k.removeprefix(COMPILED_PREFIX): v for k, v in ckpt["model"].items()}
    state = {k: v for k, v in state.items() if not (k.endswith(".attn.bias") and v.dim() == 4)}  # causal masks
    n_layer, n_embd, vocab = args["n_layer"], args["n_embd"], args["vocab_size"]
    if n_embd % args["n_head"]:
        raise UserError(f"{where}: n_embd {n_embd} is not a multiple of n_head {args['n_head']}")
    names = expected_names(n_layer)
    bias = args.get("bias", True)
    wanted = [n for n in names if bias or not n.endswith("bias")] + ["lm_head.weight"]
    lacking = [n for n in wanted if n not in state]
    extra = [n for n in state if n not in wanted]
    if lacking or extra:
        raise UserError(f"{where}: the state dict does not match model_args (n_layer={n_layer}, bias={bias}): "
                        + (f"missing {', '.join(lacking[:3])}" if lacking else "")
                        + ("; " if lacking and extra else "") + (f"unexpected {', '.join(extra[:3])}" if extra else ""))
    wte, lm_head = state["transformer.wte.weight"], state.pop("lm_head.weight")
    if tuple(wte.shape) != (vocab, n_embd) or tuple(state["transformer.wpe.weight"].shape) != (args["block_size"], n_embd):
        raise UserError(f"{where}: wte {tuple(wte.shape)} / wpe {tuple(state['transformer.wpe.weight'].shape)} "
                        f"do not match model_args (vocab_size={vocab}, block_size={args['block_size']}, n_embd={n_embd})")
    tied = lm_head.data_ptr() == wte.data_ptr() or torch.equal(lm_head, wte)
    step = ckpt.get("iter_num")
    shape = GPT2Shape(n_layer=n_layer, n_head=args["n_head"], n_embd=n_embd, n_positions=args["block_size"],
                      vocab=vocab, activation="gelu")
    return Checkpoint("nanogpt", shape, state, linear_layout=True, step=int(step) if step is not None else None,
                      head=None if tied else lm_head)

