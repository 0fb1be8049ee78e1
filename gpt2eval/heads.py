"""Which head scores which architecture.

The blocked head of `forward.target_logprobs` (hidden states x output embedding, folded a block
of the vocabulary at a time) is only this model's own computation where nothing follows the
head: GPT-2 and Llama. Granite divides its logits by `logits_scaling`, Gemma2 soft-caps them,
Cohere scales them: every such model is scored from the logits of its own forward, at the asked-
for positions only.
"""
from __future__ import annotations

import torch

# Causal LMs whose logits are exactly output_embedding(base_model(ids).last_hidden_state), with
# nothing after the head (no scaling or soft-capping): the blocked head may stand in for their own.
# Each is checked against the model's forward in tests/test_heads.py; add one only with such a test.
HEAD_ONLY = {"GPT2LMHeadModel", "LlamaForCausalLM"}
OWN_LOGITS_BUDGET = {"cuda": 2 << 30, "cpu": 256 << 20}  # bytes of float32 logits per forward (else 512 MiB)


def head_only(model) -> bool:
    """Whether the blocked head (`target_logprobs`) computes this model's own logits: one of the
    HEAD_ONLY classes itself (not a subclass), its head a plain Linear, no hook anywhere on the head
    or the model's top that the blocked head would bypass."""
    head = model.get_output_embeddings()
    return (type(model).__name__ in HEAD_ONLY and type(model).__module__.startswith("transformers.")
            and type(head) is torch.nn.Linear and "forward" not in vars(head) and "forward" not in vars(model)
            and not (head._forward_hooks or head._forward_pre_hooks or model._forward_hooks
                     or model._forward_pre_hooks))


def own_logits_logprobs(model, ids: torch.Tensor, rows: list[int], cols: list[int], targets: list[int]):
    """log p(target) in float32 and greedy flags from the logits of the model's own forward (its
    scaling, soft-capping, whatever its head does), at the asked-for positions only
    (`logits_to_keep` as a boolean mask). The positions are taken in order, as many per forward as
    OWN_LOGITS_BUDGET allows; each forward takes only the rows it needs, cut after the last needed
    column (exact for a causal model). A row split between two forwards is forwarded twice."""
    vocab = model.get_output_embeddings().weight.shape[0]
    per_forward = max(1, OWN_LOGITS_BUDGET.get(ids.device.type, 512 << 20) // (4 * vocab))
    logprobs, greedy = [], []
    for s in range(0, len(targets), per_forward):
        r, c = rows[s:s + per_forward], cols[s:s + per_forward]
        t = torch.tensor(targets[s:s + per_forward], device=ids.device)
        sub = ids[r[0]:r[-1] + 1, :max(c) + 1]
        keep = torch.zeros(sub.shape, dtype=torch.bool, device=ids.device)
        keep[torch.tensor(r, device=ids.device) - r[0], torch.tensor(c, device=ids.device)] = True
        logits = model(input_ids=sub, use_cache=False, logits_to_keep=keep).logits.float()  # [kept, vocab], row-major
        logprobs.append(torch.log_softmax(logits, -1).gather(1, t[:, None]).squeeze(1))
        greedy.append(logits.argmax(-1) == t)  # ties: the lower id, as target_logprobs
    return torch.cat(logprobs), torch.cat(greedy)
