"""A model object from a training loop as the engine's model, the object left as it was found.

Two kinds are accepted (after unwrapping torch.compile's `_orig_mod` and DDP's `module`):
- a transformers model: scored as it is, in place;
- a nanoGPT- or llm.c-style `GPT` module (transformer.wte / wpe / h / ln_f, lm_head, nn.Linear
  layers): convert.build_gpt2 wraps its own tensors in a transformers GPT-2, so the engine's fast
  paths serve it.

Scored as its own forward scores it: its MLP's activation module is probed (the exact erf GELU
of nanoGPT's nn.GELU() or the tanh form of llm.c's), every row of lm_head stays in the softmax
(its forward's cross-entropy covers them all, padding included), and before anything is scored
one forward of the module itself on a probe sequence is compared with the wrapper's: a module
that computes something else is refused, not scored wrongly.

Left as found: no parameter is written (the wrapper holds detached views of them), the training
flag of every submodule is restored (`kept_as_found`), and the module never moves. It is read in
place when the device and dtype asked for are its own; otherwise the wrapper gets one converted
copy of the weights, made tensor by tensor.
"""
from __future__ import annotations

import copy
import hashlib
from contextlib import contextmanager

import torch

from ..cache.fingerprint import model_fingerprint
from ..errors import UserError
from .convert import GPT2Shape, build_gpt2, expected_names
from .load import DTYPES, PROBE_IDS, LoadedModel, check_tokenizer, resolve_device, size_of, tokenizer_digest

DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
GELU_FORMS = {"gelu": "none", "gelu_new": "tanh"}  # convert.ACTIVATIONS as torch's gelu(approximate=...)
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6}  # of the largest logit; 3e-2 for 16-bit types


def unwrap(model):
    """The module a torch.compile'd (`_orig_mod`) or DDP-wrapped (`module`) model runs."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        else:
            return model


def is_transformers_model(model) -> bool:
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config") \
        and hasattr(model, "get_output_embeddings")


def is_gpt_module(model) -> bool:
    tr = getattr(model, "transformer", None)
    return isinstance(model, torch.nn.Module) and isinstance(getattr(model, "lm_head", None), torch.nn.Linear) \
        and all(hasattr(tr, name) for name in ("wte", "wpe", "h", "ln_f"))


def object_shape(model) -> tuple[int, int, int, int]:
    """(n_layer, width, LM-head rows, context) of a model object (plan mode's pricing)."""
    m = unwrap(model)
    if is_transformers_model(m):
        c = m.config
        return (c.num_hidden_layers, c.hidden_size, m.get_output_embeddings().weight.shape[0],
                getattr(c, "n_positions", None) or c.max_position_embeddings)
    if is_gpt_module(m):
        tr = m.transformer
        return len(tr.h), tr.wte.weight.shape[1], m.lm_head.weight.shape[0], tr.wpe.weight.shape[0]
    raise not_a_model(m)


def not_a_model(model) -> UserError:
    return UserError(f"gpt2eval cannot score a {type(model).__name__}: give a checkpoint path or model folder, a "
                     "transformers model, or a nanoGPT/llm.c-style GPT module (transformer.wte/wpe/h/ln_f, lm_head)")


@contextmanager
def kept_as_found(model):
    """Every submodule's training flag as it was on entry, restored on exit (also on an error)."""
    flags = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def adapt(model, tokenizer, tokenizer_name: str, *, device: str | None = None, dtype: str | None = None,
          fingerprinted: bool = False, label: str | None = None) -> LoadedModel:
    """The LoadedModel of a model object (module docstring). device, dtype: None keeps the model's
    own. fingerprinted: compute the result-cache key (a digest of every weight: only with a cache)."""
    model = unwrap(model)
    label = label or f"{type(model).__name__} (in memory)"
    if is_transformers_model(model):
        wrapper, fmt = _transformers(model, device, dtype), "hf"
        check_tokenizer(wrapper.config, tokenizer, label)
    elif is_gpt_module(model):
        wrapper, fmt = _gpt_module(model, device, dtype, label), "module"
        check_tokenizer(wrapper.config, tokenizer, label, padded_vocab=True)
    else:
        raise not_a_model(model)
    first = next(wrapper.parameters())
    dev = first.device
    fp = _fingerprint(label, wrapper, tokenizer, dev.type) if fingerprinted else None
    return LoadedModel(wrapper, tokenizer, label, size_of(wrapper.config), DTYPE_NAMES.get(first.dtype, str(first.dtype)),
                       str(dev), fp, format=fmt, tokenizer_name=tokenizer_name)


def _target(device: str | None, dtype: str | None, own: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(resolve_device(device)) if device else own.device
    if dev.type == own.device.type and dev.index is None:
        dev = own.device  # "cuda" names the module's own GPU
    return dev, DTYPES[dtype] if dtype else own.dtype


def _transformers(model, device, dtype):
    first = next(model.parameters())
    dev, dt = _target(device, dtype, first)
    if dev == first.device and dt == first.dtype:
        return model  # in place; the caller restores its training flags (kept_as_found)
    return copy.deepcopy(model).to(device=dev, dtype=dt)  # the copy's tensors are cast one by one


def probe_activation(mlp) -> str | None:
    """"gelu" (exact) or "gelu_new" (tanh) for the one activation module of a GPT MLP, by its values;
    None where there is no such module (the activation is then found by the forward check)."""
    acts = [m for m in mlp.children() if not isinstance(m, (torch.nn.Linear, torch.nn.Dropout))]
    if len(acts) != 1:
        return None
    x = torch.linspace(-6, 6, 481)
    with torch.no_grad():
        y = acts[0](x).float()
    errors = {name: (y - torch.nn.functional.gelu(x, approximate=a)).abs().max().item() for name, a in GELU_FORMS.items()}
    best = min(errors, key=errors.get)
    return best if errors[best] < 1e-5 else "unknown"


def _gpt_module(model, device, dtype, label: str):
    tr = model.transformer
    params = dict(model.named_parameters(remove_duplicate=False))
    wte, head = tr.wte.weight, model.lm_head.weight
    n_head = getattr(getattr(model, "config", None), "n_head", None) or getattr(tr.h[0].attn, "n_head", None)
    if not n_head:
        raise UserError(f"{label}: no n_head in its config or attention modules; gpt2eval cannot split its heads")
    eps = getattr(tr.ln_f, "eps", 1e-5)  # nanoGPT's own LayerNorm has no attribute: 1e-5 in its forward
    names = expected_names(len(tr.h))
    lacking = [n for n in names if n not in params and not n.endswith("bias")]
    if lacking:
        raise UserError(f"{label}: not a GPT-2-shaped module: no {', '.join(lacking[:3])}")
    tensors = {n: params[n] for n in names if n in params}
    own_head = None if head is wte or head.data_ptr() == wte.data_ptr() else head
    found = probe_activation(tr.h[0].mlp)
    if found == "unknown":
        raise UserError(f"{label}: its MLP's activation is neither the exact nor the tanh GELU; gpt2eval's GPT-2 "
                        "kernels compute only those two")
    candidates = [found] if found else list(GELU_FORMS)

    def wrap(activation, dev, dt):
        shape = GPT2Shape(n_layer=len(tr.h), n_head=n_head, n_embd=wte.shape[1], n_positions=tr.wpe.weight.shape[0],
                          vocab=head.shape[0], activation=activation, layer_norm_eps=eps)
        return build_gpt2(shape, tensors, linear_layout=True, device=dev, dtype=dt, head=own_head)

    misses = {}
    for activation in candidates:  # in place (views), checked against the module's own forward
        in_place = wrap(activation, wte.device, wte.dtype)
        misses[activation] = _forward_gap(model, in_place)
        if misses[activation] <= CHECK_TOLERANCE.get(wte.dtype, 3e-2):
            break
    else:
        raise UserError(f"{label}: its own forward and gpt2eval's GPT-2 reading of its weights disagree (largest "
                        f"logit gap, relative: {min(misses.values()):.2g}); it is not a nanoGPT/llm.c-style GPT-2 "
                        "that gpt2eval can score exactly")
    dev, dt = _target(device, dtype, wte)
    if dev == wte.device and dt == wte.dtype:
        return in_place
    del in_place
    return wrap(activation, dev, dt)


@torch.inference_mode()
def _forward_gap(module, wrapper) -> float:
    """Largest |logit difference| / largest |logit| at the last position of a probe sequence: the
    module's own forward (in eval mode, its flags restored) against the wrapper's."""
    ids = torch.tensor([PROBE_IDS[:wrapper.config.n_positions]], device=next(wrapper.parameters()).device)
    with kept_as_found(module):
        module.eval()
        try:
            out = module(ids)
        except Exception as e:  # noqa: BLE001 - one clear line
            raise UserError(f"cannot check the module against its own forward: module(idx) raised "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    logits = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
    own = logits[0, -1].float()
    ours = wrapper(input_ids=ids, use_cache=False).logits[0, -1].float()
    if own.shape != ours.shape:
        raise UserError(f"the module's logits have {own.shape[-1]} entries, its lm_head {ours.shape[-1]} rows")
    return ((own - ours).abs().max() / own.abs().max().clamp(min=1)).item()


def _fingerprint(label: str, model, tokenizer, device_type: str) -> str:
    """The result-cache key of weights that live in memory: a digest of every parameter's bytes."""
    import transformers
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}\0".encode())
        h.update(p.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
    dtype = DTYPE_NAMES.get(next(model.parameters()).dtype, "other")
    return model_fingerprint(label, model.config, dtype=dtype, device_type=device_type,
                             torch_version=torch.__version__, transformers_version=transformers.__version__,
                             commit=h.hexdigest(), tokenizer=tokenizer_digest(tokenizer))
