"""GPT-2's decode step, fused, continuing from context keys/values that rows share read-only.

Why: LAMBADA decodes every passage twice (its two stop-word filters) from the keys/values its
scoring forward kept. Copying those keys/values into one cache row per decode, and transformers'
cache growing by concatenation at every step, cost three times the decode's own arithmetic
(profiled on CPU, 300 passages: 10 of 13 s). Here each context's keys/values are stacked once,
[contexts, heads, L, head_dim], and never copied again; every step writes its new keys/values in
place into buffers sized for the whole decode. The rows decoding one context are its queries:
one matrix product per layer against the context block for all of them, then one against each
row's own new tokens, under one softmax.

The operations are GPT-2's own (forward.gpt2_hidden_states, for the models `fused_gpt2` accepts),
with attention split in two products: the logits equal the model's within float tolerance, and
the greedy decisions are the same (tested against forwarding every prompt whole).
"""
from __future__ import annotations

import torch

from .forward import GELU_APPROXIMATE
from .heads import to_device


def stack_contexts(contexts: list[list]) -> tuple[list, list[int]]:
    """Per layer (k, v) [contexts, heads, L, head_dim], each context right-padded with zeros to
    the longest, from contexts given as per layer (k, v) [heads, n, head_dim]; and their lengths."""
    lengths = [c[0][0].shape[1] for c in contexts]
    heads, _, head_dim = contexts[0][0][0].shape
    like = contexts[0][0][0]

    def stack(layer: int, kv: int) -> torch.Tensor:  # one copy of each context, into its row
        out = like.new_zeros((len(contexts), heads, max(lengths), head_dim))
        for c, n in enumerate(lengths):
            out[c, :, :n] = contexts[c][layer][kv]
        return out
    return [(stack(layer, 0), stack(layer, 1)) for layer in range(len(contexts[0]))], lengths


class ContextDecoder:
    """Feeds one token per row and returns every row's next-token logits (float32).

    layers: per layer (k, v) [contexts, heads, L, head_dim] (a prefill's or `stack_contexts`');
    context c's real positions are its first lengths[c]. row_context[r]: the context row r
    continues.

    Only rows still decoding are computed, and rows of one context whose tokens so far are the
    same (LAMBADA's two filters agree until one chooses a word the other bans) are one state,
    computed once: a row follows its context's first row until their tokens differ, and then
    gets its own copy of the new keys/values written so far. The computed rows are laid out as
    [contexts, slots] against the context block, slots being the most any context needs this step."""

    def __init__(self, model, layers: list, lengths: list[int], row_context: list[int], max_steps: int):
        self.model, self.layers, self.row_context = model, layers, list(row_context)
        device, dtype = layers[0][0].device, layers[0][0].dtype
        n_ctx, heads, width, head_dim = layers[0][0].shape
        self.device, self.scale = device, head_dim ** -0.5
        first: dict[int, int] = {}
        self.follows = [first.setdefault(c, r) for r, c in enumerate(row_context)]  # the row whose state r shares
        # Padding positions of the context block: -inf before the softmax.
        bias = torch.zeros((n_ctx, 1, 1, width), dtype=torch.float32)
        for c, n in enumerate(lengths):
            bias[c, :, :, n:] = float("-inf")
        self.bias, self.lengths = bias.to(device), list(lengths)
        self.top = (getattr(model.config, "n_positions", None) or model.config.max_position_embeddings) - 1
        # Each row's new keys/values, written in place step by step (zeros: spare slots read them).
        self.new = [(torch.zeros((len(row_context), heads, max_steps, head_dim), dtype=dtype, device=device),
                     torch.zeros((len(row_context), heads, max_steps, head_dim), dtype=dtype, device=device))
                    for _ in layers]
        self.t, self.positions_run = 0, 0
        self.block_of = list(range(n_ctx))  # context -> its row in the context block (-1: dropped)

    def _drop_idle(self, live: list[int]) -> None:
        """Keep only the live contexts in the block. A step reads the whole block (measured on CPU:
        67 contexts with 13 rows decoding cost 117 ms a step, 13 contexts 69 ms), so once half the
        contexts have no row decoding, the others are copied into a smaller block."""
        at = to_device([self.block_of[c] for c in live], self.device)
        self.layers = [(k.index_select(0, at), v.index_select(0, at)) for k, v in self.layers]
        self.bias = self.bias.index_select(0, at)
        self.block_of = [-1] * len(self.block_of)
        for i, c in enumerate(live):
            self.block_of[c] = i

    def _split(self, ids: list[int], active: list[bool]) -> list[int]:
        """Rows that must be computed this step, after parting the rows whose token differs from
        the row they follow (each part led by its first row, given a copy of the leader's state)."""
        parts: dict[tuple[int, int], int] = {}  # (row followed, token) -> the part's leader
        copies = []
        for r, f in enumerate(self.follows):
            if not active[r]:
                continue
            leader = parts.setdefault((f, ids[r]), r)
            if leader == r and r != f and self.t:
                copies.append((r, f))
            self.follows[r] = leader
        if copies:
            dst, src = (to_device(list(x), self.device) for x in zip(*copies))
            for kn, vn in self.new:
                kn[dst, :, :self.t], vn[dst, :, :self.t] = kn[src, :, :self.t], vn[src, :, :self.t]
        return sorted(set(parts.values()))

    @torch.inference_mode()
    def step(self, ids: list[int], active: list[bool]) -> torch.Tensor:
        """ids: the token each row feeds now; active: which rows are still decoding. Returns
        logits [rows, vocab]; an inactive row's are another row's (it is not computed)."""
        tr, cfg, t = self.model.transformer, self.model.config, self.t
        d, heads, eps = cfg.n_embd, cfg.n_head, cfg.layer_norm_epsilon
        approximate = GELU_APPROXIMATE[cfg.activation_function]  # tanh (GPT-2, llm.c) or exact (nanoGPT)
        run = self._split(ids, active)
        live = sorted({self.row_context[r] for r in run})
        if 2 * len(live) <= self.bias.shape[0]:
            self._drop_idle(live)
        n_ctx = self.bias.shape[0]
        per_ctx = [[] for _ in range(n_ctx)]
        for r in run:
            per_ctx[self.block_of[self.row_context[r]]].append(r)
        g = max(len(rows) for rows in per_ctx)
        # Slot s = c * g + j computes row per_ctx[c][j]; a spare slot reads its context's first
        # row's state (or row 0's) and its output is dropped.
        slot_row, real = [], []
        for c, rows in enumerate(per_ctx):
            spare = rows[0] if rows else self.follows[0]
            for j in range(g):
                real.append(j < len(rows))
                slot_row.append(rows[j] if j < len(rows) else spare)
        S = len(slot_row)
        computed = [s for s in range(S) if real[s]]
        # Index tensors through to_device: on CUDA a plain copy from the host would wait for the queue.
        real_slots, written = to_device(computed, self.device), to_device([slot_row[s] for s in computed], self.device)
        slot_rows = to_device(slot_row, self.device)
        slot_ids = to_device([ids[r] for r in slot_row], self.device)
        positions = to_device([self.lengths[self.row_context[r]] + t for r in slot_row], self.device)
        x = tr.wte(slot_ids) + tr.wpe(positions.clamp(max=self.top))  # [S, d]
        for block, (kc, vc), (kn, vn) in zip(tr.h, self.layers, self.new):
            attn, mlp = block.attn, block.mlp
            h = torch.nn.functional.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, eps)
            q, k, v = torch.addmm(attn.c_attn.bias, h, attn.c_attn.weight).view(S, 3, heads, d // heads).unbind(1)
            kn[written, :, t], vn[written, :, t] = k[real_slots], v[real_slots]
            k_new, v_new = kn[slot_rows, :, :t + 1], vn[slot_rows, :, :t + 1]  # [S, H, t+1, head_dim]
            k_new[:, :, t], v_new[:, :, t] = k, v  # a spare slot attends to its own token
            q_ctx = q.view(n_ctx, g, heads, -1).transpose(1, 2)  # [contexts, heads, slots, head_dim]
            s_ctx = (q_ctx @ kc.transpose(-1, -2)).float() * self.scale + self.bias  # [C, H, g, L]
            s_new = (q[:, :, None] @ k_new.transpose(-1, -2)).float() * self.scale  # [S, H, 1, t+1]
            s_new = s_new.view(n_ctx, g, heads, t + 1).transpose(1, 2)
            p = torch.softmax(torch.cat([s_ctx, s_new], dim=-1), dim=-1).to(q.dtype)
            width = kc.shape[2]
            a = (p[..., :width] @ vc).transpose(1, 2).reshape(S, heads, -1)  # [S, H, head_dim]
            p_new = p[..., width:].transpose(1, 2).reshape(S, heads, 1, t + 1)
            a = a + (p_new @ v_new).squeeze(2)
            x = x + torch.addmm(attn.c_proj.bias, a.reshape(S, d), attn.c_proj.weight)
            h = torch.nn.functional.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, eps)
            h = torch.nn.functional.gelu(torch.addmm(mlp.c_fc.bias, h, mlp.c_fc.weight), approximate=approximate)
            x = x + torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight)
        self.t += 1
        self.positions_run += len(run)
        x = torch.nn.functional.layer_norm(x[real_slots], (d,), tr.ln_f.weight, tr.ln_f.bias, eps)
        logits = self.model.get_output_embeddings()(x).float()  # [computed rows, vocab]
        computed_at = {slot_row[s]: i for i, s in enumerate(computed)}
        return logits[to_device([computed_at.get(self.follows[r], 0) for r in range(len(ids))], self.device)]
