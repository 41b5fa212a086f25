"""A row-sparse functional view of a compatibility-mode bridge, for the fast engine.

The fast engine recomputes only the residual rows that a patch can change. It
cannot do that through the bridge's own forward (which always runs every
position of every layer), so this module re-expresses one transformer block as
three pure pieces that work on any set of rows:

- ``norm1`` / ``norm2`` / ``final_norm``: the bridge's own norm components;
- ``mlp``: the bridge's own MLP component (position-wise, so any rows);
- attention, recomputed here from the bridge's processed ``W_Q``..``b_O`` with
  rotary position embeddings from the model's own rotary module, so queries at
  a few rows can read the clean keys and values of every earlier row.

Everything stays in the bridge's (folded, centred) residual basis, so values
from ``run_with_cache`` and values computed here can be mixed freely. Only
architectures whose block is "norm -> attention -> add; norm -> MLP -> add"
(GPT-2, Llama/Mistral/Qwen2) or its parallel form (GPT-NeoX/Pythia) qualify,
plus Gemma 3's variant of the sequential block:

- *sandwich norms*: the attention output and the MLP output are each normed
  again before they are added (``ln1_post``, ``ln2_post``). The bridge's
  ``hook_attn_out`` / ``hook_mlp_out`` sit after these norms, so they are the
  residual writes; ``attn.hook_out`` is the pre-norm head sum;
- *q/k norms*: an RMS norm over each head's query and key, after the
  projection and before the rotation;
- *local layers*: a sliding window over the keys and a rotary base of their
  own (``config.layer_types`` names each layer's kind);
- a query scale of ``query_pre_attn_scalar ** -0.5`` (the HF module's ``scaling``).

``unsupported_reason`` says why not otherwise, and the engine then falls back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

SUPPORTED = {
    "GPT2LMHeadModel": "standard",
    "GPTNeoXForCausalLM": "rotary",
    "LlamaForCausalLM": "rotary",
    "MistralForCausalLM": "rotary",
    "Qwen2ForCausalLM": "rotary",
    "Gemma3ForCausalLM": "rotary",
}


# On the CPU the MLP runs on at most this many rows at a time: its hidden activations then stay
# in the cache (SmolLM2 on the 2-core machine, one layer's MLP, us per row: 13.7 at
# 1,024-2,048 rows, 18.3 at 8,192 through the bridge's module; bench/README.md).
MLP_ROWS = 2048


def _mlp_rows(mlp: Any, x: Tensor) -> Tensor:
    """The bridge's MLP on rows ``x``: its own module, or, for a gated MLP that runs on its
    processed weights, the same three projections and activation without the hook calls,
    the activation and the gate product written in place (the same values: no hook is
    ever attached to these passes)."""
    from transformer_lens.model_bridge.generalized_components.gated_mlp import (
        GatedMLPBridge,
        resolve_activation_fn,
    )

    if type(mlp) is not GatedMLPBridge or not getattr(mlp, "_use_processed_weights", False):
        return mlp(x)  # subclasses change the forward; unprocessed weights run the HF module

    F = torch.nn.functional
    gate = F.linear(x, *mlp._processed_projection("gate"))
    up = F.linear(x, *mlp._processed_projection("in"))
    act = resolve_activation_fn(mlp.config)
    gate = F.silu(gate, inplace=True) if act is F.silu else act(gate)
    return F.linear(gate.mul_(up), *mlp._processed_projection("out"))


def unsupported_reason(bridge: Any) -> str | None:
    """None if the block structure is one this module reproduces exactly, else why not."""
    arch = type(bridge.original_model).__name__
    if arch not in SUPPORTED:
        return f"{arch} is not one of {', '.join(sorted(SUPPORTED))}"
    cfg = bridge.cfg
    if getattr(cfg, "use_qk_norm", False):
        return "q/k norms are not reproduced"
    if getattr(cfg, "positional_embedding_type", None) != SUPPORTED[arch]:
        return f"unexpected positional embedding {cfg.positional_embedding_type!r}"
    if getattr(cfg, "rotary_adjacent_pairs", False) or getattr(cfg, "rotary_interleaved_cos_sin", False):
        return "interleaved rotary layouts are not reproduced"
    hf = bridge.original_model.config
    for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(hf, cap, None) is not None:
            return f"{cap} is not reproduced"
    if getattr(hf, "use_bidirectional_attention", False):
        return "bidirectional attention is not reproduced"
    devices = {p.device for p in bridge.parameters()}
    if len(devices) > 1:  # rows are computed on one device, beside the unembedding
        return f"the model is spread over {len(devices)} devices"
    return None


@dataclass
class LayerWeights:
    W_Q: Tensor  # [d_model, n_heads * d_head]
    b_Q: Tensor  # [n_heads * d_head]
    W_K: Tensor  # [d_model, n_kv * d_head]
    b_K: Tensor
    W_V: Tensor
    b_V: Tensor
    W_O: Tensor  # [n_heads, d_head, d_model]
    b_O: Tensor  # [d_model]
    W_QKV: Tensor  # [d_model, (n_heads + 2 n_kv) * d_head]: one weight read for all three
    b_QKV: Tensor


class RowModel:
    """The bridge's blocks as functions of arbitrary residual rows."""

    def __init__(self, bridge: Any, n_heads: int, n_kv: int):
        self.bridge = bridge
        self.n_layers = len(bridge.blocks)
        self.n_heads, self.n_kv = n_heads, n_kv
        self.group = n_heads // n_kv
        self.parallel = bool(getattr(bridge.cfg, "parallel_attn_mlp", False))
        self.rotary = bridge.cfg.positional_embedding_type == "rotary"
        self.layers = [self._weights(block.attn) for block in bridge.blocks]
        self.d_head = self.layers[0].W_O.shape[1]
        scaling = getattr(bridge.blocks[0].attn.original_component, "scaling", None)
        self.scale = float(scaling) if isinstance(scaling, float) else 1.0 / math.sqrt(self.d_head)
        block0 = bridge.blocks[0]
        self.sandwich = hasattr(block0, "ln1_post") and hasattr(block0, "ln2_post")
        self.qk_norm = hasattr(block0.attn, "q_norm") and hasattr(block0.attn, "k_norm")
        self.rope_kind, self.window = _local_layers(bridge)
        self.W_U = bridge.W_U.detach()
        self.device = self.W_U.device  # where rows are computed: positions and masks are made here
        b_U = getattr(bridge, "b_U", None)
        self.b_U = _zeros_like_row(self.W_U, self.W_U.shape[1]) if b_U is None else b_U.detach()
        self._rope: dict[tuple[int, str | None], tuple[Tensor, Tensor]] = {}

    @staticmethod
    def _weights(attn: Any) -> LayerWeights:
        def flat_w(w: Tensor) -> Tensor:  # [heads, d, dh] -> [d, heads * dh]
            return w.detach().permute(1, 0, 2).reshape(w.shape[1], -1).contiguous()

        def flat_b(b: Tensor | None, like: Tensor) -> Tensor:
            return _zeros_like_row(like, like.shape[1]) if b is None else b.detach().reshape(-1)

        W_Q, W_K, W_V = flat_w(attn.W_Q), flat_w(attn.W_K), flat_w(attn.W_V)
        b_O = attn.b_O
        b_Q, b_K, b_V = flat_b(attn.b_Q, W_Q), flat_b(attn.b_K, W_K), flat_b(attn.b_V, W_V)
        return LayerWeights(
            W_Q, b_Q, W_K, b_K, W_V, b_V,
            attn.W_O.detach().contiguous(),
            _zeros_like_row(attn.W_O, attn.W_O.shape[-1]) if b_O is None else b_O.detach(),
            torch.cat([W_Q, W_K, W_V], dim=1).contiguous(),
            torch.cat([b_Q, b_K, b_V]),
        )

    # -- position-wise pieces (the bridge's own modules) -------------------------
    def norm1(self, layer: int, x: Tensor) -> Tensor:
        return self.bridge.blocks[layer].ln1(x)

    def mlp(self, layer: int, resid_in: Tensor) -> Tensor:
        """The MLP's residual write (``hook_mlp_out``) from the residual it reads.

        That is resid_mid, or resid_pre with a parallel residual; the write is
        normed once more where the block has sandwich norms.
        """
        block = self.bridge.blocks[layer]
        x = block.ln2(resid_in)
        flat = x.reshape(-1, x.shape[-1])
        if x.device.type != "cpu" or flat.shape[0] <= MLP_ROWS:  # a GPU wants the batch whole
            out = _mlp_rows(block.mlp, flat)
        else:
            out = torch.empty(flat.shape, dtype=x.dtype, device=x.device)
            for i in range(0, flat.shape[0], MLP_ROWS):
                out[i : i + MLP_ROWS] = _mlp_rows(block.mlp, flat[i : i + MLP_ROWS])
        out = out.reshape(x.shape)
        return block.ln2_post(out) if self.sandwich else out

    def attn_write(self, layer: int, head_sum: Tensor) -> Tensor:
        """The attention's residual write (``hook_attn_out``) from sum_h z_h W_O + b_O."""
        return self.bridge.blocks[layer].ln1_post(head_sum) if self.sandwich else head_sum

    def answer_diff(self, resid_end: Tensor, correct: Tensor, incorrect: Tensor) -> Tensor:
        """logit(correct) - logit(incorrect) from final residual rows [..., d_model]."""
        x = self.bridge.ln_final(resid_end)
        w = (self.W_U[:, correct] - self.W_U[:, incorrect]).T  # [batch, d]
        return (x * w).sum(-1) + (self.b_U[correct] - self.b_U[incorrect])

    # -- projections ---------------------------------------------------------------
    def rope(self, n_pos: int, kind: str | None = None) -> tuple[Tensor, Tensor]:
        """cos, sin [n_pos, rotary_dim] from the model's own rotary module.

        ``kind`` is the layer type for models whose rotary module serves several
        (Gemma 3: local and global layers have their own base).
        """
        if (n_pos, kind) not in self._rope:
            model = self.bridge.original_model
            inner = getattr(model, "model", None) or model.gpt_neox
            # The probe only tells the rotary module the device and dtype to answer in.
            at = next(iter(inner.rotary_emb.buffers()), self.W_U).device
            pos = torch.arange(n_pos, device=at)[None]
            probe = torch.zeros(1, n_pos, self.d_head, device=at)
            args = (probe, pos) if kind is None else (probe, pos, kind)
            cos, sin = inner.rotary_emb(*args)
            self._rope[n_pos, kind] = (cos[0].float().to(self.device), sin[0].float().to(self.device))
        return self._rope[n_pos, kind]

    def rotate(self, layer: int, x: Tensor, positions: Tensor, n_pos: int) -> Tensor:
        """Apply layer's rotary embedding to x [..., rows, heads, d_head]; positions broadcast to [..., rows]."""
        if not self.rotary:
            return x
        cos_t, sin_t = self.rope(n_pos, self.rope_kind[layer])
        cos, sin = cos_t[positions][..., None, :], sin_t[positions][..., None, :]
        rot = cos.shape[-1]
        xr, xp = x[..., :rot], x[..., rot:]
        half = rot // 2
        rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
        out = (xr.float() * cos + rotated.float() * sin).to(x.dtype)
        return torch.cat([out, xp], dim=-1) if xp.shape[-1] else out

    def q(self, layer: int, xn: Tensor, heads: list[int] | None = None) -> Tensor:
        """Unrotated queries [..., heads, d_head] from normed rows (q-normed where the model does)."""
        w = self.layers[layer]
        return self._norm_head(layer, "q_norm", self._project(xn, w.W_Q, w.b_Q, heads))

    def qkv(self, layer: int, xn: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Unrotated queries [..., n_heads, d_head] and key and value groups [..., n_kv, d_head]."""
        w = self.layers[layer]
        out = self._project(xn, w.W_QKV, w.b_QKV, None)
        q, k, v = out.split([self.n_heads, self.n_kv, self.n_kv], dim=-2)
        return self._norm_head(layer, "q_norm", q), self._norm_head(layer, "k_norm", k), v

    def k(self, layer: int, xn: Tensor, groups: list[int] | None = None) -> Tensor:
        w = self.layers[layer]
        return self._norm_head(layer, "k_norm", self._project(xn, w.W_K, w.b_K, groups))

    def v(self, layer: int, xn: Tensor, groups: list[int] | None = None) -> Tensor:
        w = self.layers[layer]
        return self._project(xn, w.W_V, w.b_V, groups)

    def _norm_head(self, layer: int, name: str, x: Tensor) -> Tensor:
        """The per-head q or k norm (before rotary), on models that have one; one per key group."""
        return getattr(self.bridge.blocks[layer].attn, name)(x) if self.qk_norm else x

    def _project(self, xn: Tensor, W: Tensor, b: Tensor, heads: list[int] | None) -> Tensor:
        dh = self.d_head
        if heads is None:
            out = xn @ W + b
            return out.reshape(*xn.shape[:-1], -1, dh)
        W3 = W.reshape(W.shape[0], -1, dh)[:, heads]
        b2 = b.reshape(-1, dh)[heads]
        return torch.einsum("...d,dhe->...he", xn, W3) + b2

    def head_out(self, layer: int, z: Tensor, heads: list[int] | None = None) -> Tensor:
        """sum over heads of z @ W_O (no bias): z [..., heads, d_head] -> [..., d_model]."""
        W_O = self.layers[layer].W_O
        if heads is not None:
            W_O = W_O[heads]
        return z.flatten(-2) @ W_O.reshape(-1, W_O.shape[-1])

    # -- clean keys and values ---------------------------------------------------------
    def clean_kv(self, layer: int, resid_pre: Tensor) -> tuple[Tensor, Tensor]:
        """Rotated keys and values [batch, pos, n_kv, d_head] of a clean residual."""
        n_pos = resid_pre.shape[1]
        xn = self.norm1(layer, resid_pre)
        k = self.rotate(layer, self.k(layer, xn), torch.arange(n_pos, device=resid_pre.device), n_pos)
        return k, self.v(layer, xn)

    def attend(
        self,
        q: Tensor,
        q_pos: Tensor,
        k_pre: Tensor,
        v_pre: Tensor,
        k_new: Tensor,
        v_new: Tensor,
        window: int | None = None,
    ) -> Tensor:
        """Causal attention of query rows over a shared clean prefix plus per-item new rows.

        q [S, B, R, H, dh] (rotated), q_pos [B, R] absolute positions; k_pre/v_pre
        [B, P, n_kv, dh] for positions 0..P-1 (key/value groups, not expanded: the
        prefix is read once per group), shared by every item S; k_new/v_new
        [S, B, R, H, dh] for positions P..P+R-1 (the query rows themselves, one slot
        per query head, since a k/v receiver changes only its own head's slot).
        ``window``: a local layer's sliding window (a query sees the keys less
        than ``window`` positions back). Returns z [S, B, R, H, dh].
        """
        n_s, batch, n_r, n_h, dh = q.shape
        n_pre, n_kv = k_pre.shape[1], k_pre.shape[2]
        qg = q.reshape(n_s, batch, n_r, n_kv, n_h // n_kv, dh)
        s_pre = torch.einsum("sbrkgd,bpkd->sbkgrp", qg, k_pre).reshape(n_s, batch, n_h, n_r, n_pre)
        s_new = torch.einsum("sbrhd,sbthd->sbhrt", q, k_new)
        key_pos = torch.arange(n_pre, n_pre + k_new.shape[2], device=q_pos.device)
        hidden = key_pos[None, None, :] > q_pos[:, :, None]  # [B, R, T_new]: the future
        if window is not None:
            hidden |= q_pos[:, :, None] - key_pos[None, None, :] >= window
            too_far = q_pos[:, :, None] - torch.arange(n_pre, device=q_pos.device)[None, None, :] >= window  # [B, R, P]
            s_pre = s_pre.masked_fill(too_far[None, :, None], float("-inf"))
        s_new = s_new.masked_fill(hidden[None, :, None], float("-inf"))
        scores = torch.cat([s_pre, s_new], dim=-1) * self.scale
        pattern = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        p_pre = pattern[..., :n_pre].reshape(n_s, batch, n_kv, n_h // n_kv, n_r, n_pre)
        z = torch.einsum("sbkgrp,bpkd->sbrkgd", p_pre, v_pre).reshape(n_s, batch, n_r, n_h, dh)
        return z + torch.einsum("sbhrt,sbthd->sbrhd", pattern[..., n_pre:], v_new)

    def self_attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Causal (and, on a local layer, windowed) attention of every row over the rows before
        it: unrotated q [b, pos, heads, dh], key/value groups k, v [b, pos, groups, dh] (as
        :meth:`qkv` gives them) -> z [b, pos, heads, dh]."""
        n_pos = q.shape[1]
        pos = torch.arange(n_pos, device=q.device)
        q, k = self.rotate(layer, q, pos, n_pos), self.rotate(layer, k, pos, n_pos)
        if k.shape[-2] != q.shape[-2]:  # grouped keys and values: one slot per query head
            k, v = self.expand_kv(k), self.expand_kv(v)
        hidden = pos[None, :] > pos[:, None]  # [query, key]: the future
        window = self.window[layer]
        if window is not None:
            hidden = hidden | (pos[:, None] - pos[None, :] >= window)
        scores = torch.einsum("brhd,bthd->bhrt", q, k) * self.scale
        pattern = torch.softmax(scores.masked_fill(hidden, float("-inf")).float(), dim=-1).to(q.dtype)
        return torch.einsum("bhrt,bthd->brhd", pattern, v)

    def expand_kv(self, x: Tensor) -> Tensor:
        """Key/value groups -> one slot per query head (dim -2)."""
        if self.group == 1:
            return x
        return x.repeat_interleave(self.group, dim=-2)


def _zeros_like_row(like: Tensor, n: int) -> Tensor:
    """A missing bias: zeros [n] on ``like``'s device (float32, as before, whatever its dtype)."""
    return torch.zeros(n, device=like.device)


def _local_layers(bridge: Any) -> tuple[list[str | None], list[int | None]]:
    """Per layer: the rotary kind to ask the rotary module for, and the sliding window.

    Models with one rotary module for several layer types (Gemma 3) take the
    layer's type as an argument; the window is the HF attention module's own.
    """
    hf = bridge.original_model.config
    n = len(bridge.blocks)
    types = getattr(hf, "layer_types", None)
    params = getattr(hf, "rope_parameters", None)
    if types and isinstance(params, dict) and all(t in params for t in types):
        kinds: list[str | None] = [types[i] for i in range(n)]
    else:
        kinds = [None] * n
    windows = []
    for block in bridge.blocks:
        window = getattr(block.attn.original_component, "sliding_window", None)
        windows.append(window if isinstance(window, int) else None)
    return kinds, windows
