"""One forward pass that keeps what the interpretability views read: the residual stream.

A pre-norm transformer (GPT-2 and Llama alike) is a residual stream that each block adds
to twice: ``x += attn(norm_1(x))``, then ``x += mlp(norm_2(x))``; after the last block
the final norm and the output head turn it into logits. ``run_with_cache`` runs the
model's own layers in that order and keeps, per block, what the attention and the MLP
added, the attention probabilities, and the stream itself after the embeddings and
after every block. Its logits equal ``model.forward``'s exactly (the same layer calls
on the same buffers), which a test checks, so the views built on it (logit lens,
head scores, direct logit attribution) describe the model that actually runs.

``unembed(model, x)`` applies the final norm and the head to any residual vectors (the
logit lens), and ``final_norm_linear`` gives the final norm as the linear map it is once
its per-position scale is frozen (direct logit attribution).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnemos.backend import to_numpy
from mnemos.nn.layers import LayerNorm


@dataclass
class ActivationCache:
    """What one inference forward of ``idx`` (B, T) wrote into the residual stream.
    All arrays are host NumPy in the model's dtype; ``L`` = n_layer, ``C`` = n_embd."""

    idx: np.ndarray  # (B, T) the token ids
    embed: np.ndarray  # (B, T, C) the stream before the first block (token (+ position) embeddings)
    attn_out: np.ndarray  # (L, B, T, C) what each block's attention added
    mlp_out: np.ndarray  # (L, B, T, C) what each block's MLP added
    resid: np.ndarray  # (L + 1, B, T, C) the stream after the embeddings and after each block
    patterns: np.ndarray  # (L, B, H, T, T) attention probabilities (rows sum to 1)
    logits: np.ndarray  # (B, T, V) the model's output

    @property
    def n_layer(self) -> int:
        return self.attn_out.shape[0]


def run_with_cache(model, idx) -> ActivationCache:
    """Run ``model`` (inference: no dropout) on ``idx`` (B, T) and keep its activations.

    Walks ``model.emb``, each block's ``ln_1 -> attn`` and ``ln_2 -> mlp`` (the two
    residual updates of ``Block.forward``) and ``model.ln_f`` + the head, copying each
    sublayer's output before the next layer reuses its buffer."""
    xp = model.xp
    idx = model._tokens(idx)
    B, T = idx.shape
    L, C = len(model.blocks), model.config.n_embd
    model._ready = False  # the model's buffers are about to be reused: no backward after this
    model.ws.use((B, T))
    attn_out = xp.empty((L, B * T, C), dtype=model.dtype)
    mlp_out = xp.empty_like(attn_out)
    resid = xp.empty((L + 1, B * T, C), dtype=model.dtype)
    maps: list = []
    x = model.emb.forward(idx, False, out=model.ws.get("residual", (B * T, C)))
    resid[0] = x
    for i, block in enumerate(model.blocks):
        attn_out[i] = block.attn.forward(block.ln_1.forward(x), B, T, False, maps)
        x += attn_out[i]
        mlp_out[i] = block.mlp.forward(block.ln_2.forward(x), False)
        x += mlp_out[i]
        resid[i + 1] = x
    logits = unembed(model, x)

    def host(a, shape):
        return to_numpy(a).reshape(shape)

    return ActivationCache(
        idx=to_numpy(idx), embed=host(resid[0], (B, T, C)), attn_out=host(attn_out, (L, B, T, C)),
        mlp_out=host(mlp_out, (L, B, T, C)), resid=host(resid, (L + 1, B, T, C)),
        patterns=np.stack([to_numpy(m) for m in maps]), logits=host(logits, (B, T, -1)))


def head_weight(model):
    """The output head as an ``(C, V)`` matrix of the model's array module: logits =
    ``final_norm(x) @ head_weight``; the token embedding when the head is tied."""
    return model.params.view(model.head_param).T


def unembed(model, x):
    """Logits ``(N, V)`` for residual vectors ``x`` ``(N, C)``: the model's final norm
    and head, applied as the last block's output is (a fresh array)."""
    return model.ln_f.forward(model.xp.asarray(x, dtype=model.dtype)) @ head_weight(model)


@dataclass
class NormLinear:
    """The final norm at each position as the affine map it is once its scale is frozen:
    ``norm(x) = centre(x) * scale * weight + bias``. LayerNorm (GPT-2) centres (subtracts
    the mean over features) with ``scale = 1/sqrt(var + eps)``; RMSNorm (Llama) does not
    centre, ``scale = 1/sqrt(mean(x^2) + eps)`` and its bias is zero. A sum of residual
    components then maps to the sum of their images plus ``bias``."""

    scale: np.ndarray  # (..., 1) float64
    weight: np.ndarray  # (C,) float64
    bias: np.ndarray  # (C,) float64
    centre: bool

    def apply(self, component: np.ndarray) -> np.ndarray:
        """``centre(component) * scale * weight`` (float64), bias not added."""
        c = np.asarray(component, dtype=np.float64)
        if self.centre:
            c = c - c.mean(-1, keepdims=True)
        return c * self.scale * self.weight


def final_norm_linear(model, x: np.ndarray) -> NormLinear:
    """The final norm (LayerNorm or RMSNorm) frozen at the residual ``x`` (..., C)."""
    norm = model.ln_f
    x = np.asarray(x, dtype=np.float64)
    centre = isinstance(norm, LayerNorm)
    square = x.var(-1, keepdims=True) if centre else (x * x).mean(-1, keepdims=True)
    weight = to_numpy(norm.w).astype(np.float64)
    bias = to_numpy(norm.b).astype(np.float64) if centre else np.zeros_like(weight)
    return NormLinear(1.0 / np.sqrt(square + norm.eps), weight, bias, centre)
