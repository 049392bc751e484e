"""The layers Llama adds to GPT-2's, each with its forward and hand-written backward.

A Llama block (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language
Models") is GPT-2's pre-norm block with three parts swapped, each for a reason:

- :class:`RMSNorm` for LayerNorm (Zhang & Sennrich 2019, "Root Mean Square Layer
  Normalization"): scale by the root mean square only, no centring and no bias; as good,
  one pass fewer.
- :class:`Rotary` position embeddings for the learned ``wpe`` (Su et al. 2021, "RoFormer:
  Enhanced Transformer with Rotary Position Embedding"): queries and keys are rotated by
  an angle proportional to their position, so a score ``q·k`` depends on how far apart
  two tokens are, not where they are; there is no position table to learn.
- :class:`SwiGLU` for GELU (Shazeer 2020, "GLU Variants Improve Transformer"): a gate
  ``silu(x W_gate)`` multiplies ``x W_up`` elementwise; at 2/3 of GPT-2's width the
  three matrices cost what GPT-2's two do.

The linear layers have no biases. The conventions are :mod:`mnemos.nn.layers`': 2-D
``(N, C)`` activations, buffers from the shared workspace, backward adds the parameter
gradients and returns the input gradient.
"""

from __future__ import annotations

import numpy as np

from mnemos.backend import fused_kernels
from mnemos.nn.layers import grad_product, norm_input_grad


class RMSNorm:
    """``y = x * rstd * w`` with ``rstd = 1/sqrt(mean(x^2) + eps)`` over the last axis.

    Backward: with ``xhat = x * rstd``, ``dw = 1^T @ (dy * xhat)``. With ``g = dy * w``,
    since ``d rstd / d x_i = -rstd^3 x_i / C``:
    ``dx = rstd * (g - xhat * mean(g * xhat))`` (LayerNorm's, without the mean terms).
    """

    def __init__(self, params, name, ws, eps=1e-5):
        self.params, self.name, self.ws, self.xp, self.eps = params, name, ws, ws.xp, eps
        self.w, self.dw = params.view(name + ".weight"), params.grad_view(name + ".weight")
        self.xhat = self.rstd = None
        self.keys = (name + ".xhat", name + ".y", name + ".rstd")
        C = self.w.shape[0]
        self.inv_c = self.xp.full(C, 1.0 / C, dtype=ws.dtype)  # x @ inv_c = row means
        self.fused = fused_kernels(self.xp)  # one GPU kernel each way on CuPy; None on NumPy

    def forward(self, x):  # (N, C) -> (N, C)
        xp, ws = self.xp, self.ws
        N, C = x.shape
        xhat = ws.get(self.keys[0], (N, C))
        y = ws.get(self.keys[1], (N, C))
        rstd = ws.get(self.keys[2], (N,))
        self.xhat, self.rstd = xhat, rstd
        if self.fused is not None:
            self.fused.rmsnorm_forward(x, self.w, self.eps, xhat, y, rstd)
            return y
        xp.multiply(x, x, out=y)  # y as scratch for the squares
        xp.matmul(y, self.inv_c, out=rstd)  # mean squares
        rstd += self.eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)
        xp.multiply(x, rstd[:, None], out=xhat)
        xp.multiply(xhat, self.w, out=y)
        return y

    def backward(self, dy):  # (N, C) -> (N, C)
        xp, ws = self.xp, self.ws
        xhat, rstd = self.xhat, self.rstd
        N, C = xhat.shape
        g = ws.get("rms.g", (N, C))
        dx = ws.get("rms.dx", (N, C))
        if self.fused is not None:  # dx, and dy * xhat into g
            self.fused.rmsnorm_backward(dy, xhat, self.w, rstd, dx, g)
            grad_product(ws.ones(N), g, self.dw, self.params, ws, "rms.dw")
            return dx
        xp.multiply(dy, xhat, out=g)
        grad_product(ws.ones(N), g, self.dw, self.params, ws, "rms.dw")
        xp.multiply(dy, self.w, out=g)
        norm_input_grad(xp, g, xhat, rstd, ws.ones(C), dx, centred=False)
        return dx


class Rotary:
    """Rotary position embedding, in place on the queries and keys.

    Each head vector of size ``hd`` is split into halves ``(x1, x2)`` (Hugging Face
    Llama's ``rotate_half`` layout, so exported weights need no permutation); pair ``i``
    at position ``p`` is turned by the angle ``p * theta^(-2i/hd)``:
    ``x1' = x1 cos - x2 sin``, ``x2' = x2 cos + x1 sin``.

    Backward: a rotation's transpose is the rotation by minus the angle,
    ``dx1 = dy1 cos + dy2 sin``, ``dx2 = dy2 cos - dy1 sin``.

    The input is the ``(B, T, 2C)`` q | k part of attention's fused projection (rows of
    ``C = n_head * hd`` queries, then keys). The tables are laid out the same way,
    ``(block_size, 2C)`` (computed in float64): ``cos``, and ``sin`` signed ``(-sin, +sin)``
    per head, so a rotation is ``x * cos + swap(x) * sin`` with ``swap`` exchanging each
    head's halves (a strided view, read once); the backward subtracts the second term.
    """

    def __init__(self, ws, n_head, head_dim, block_size, theta=10000.0):
        self.ws, self.xp, self.half = ws, ws.xp, head_dim // 2
        inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (hd/2,)
        angles = np.arange(block_size, dtype=np.float64)[:, None] * inv_freq  # (block_size, hd/2)
        cos = np.tile(np.cos(angles), 2 * 2 * n_head)  # both halves of every q and k head: (block_size, 2C)
        sin = np.tile(np.concatenate([-np.sin(angles), np.sin(angles)], axis=1), 2 * n_head)
        self.cos = self.xp.asarray(cos, dtype=ws.dtype)
        self.sin = self.xp.asarray(sin, dtype=ws.dtype)

    def _turn(self, x, start, sign):  # (B, T, 2C) view, in place
        xp, h = self.xp, self.half
        B, T, W = x.shape
        swapped = x.reshape(B, T, W // (2 * h), 2, h)[..., ::-1, :]  # (x2, x1) of each head: a view
        a = self.ws.get("rope.a", swapped.shape)
        xp.multiply(swapped, self.sin[start:start + T].reshape(T, W // (2 * h), 2, h), out=a)  # (-x2 sin, x1 sin)
        x *= self.cos[start:start + T]
        if sign > 0:
            x += a.reshape(B, T, W)
        else:
            x -= a.reshape(B, T, W)

    def forward(self, qk, start=0):  # (B, T, 2C) q | k of positions start.., in place
        self._turn(qk, start, +1)

    def backward(self, dqk, start=0):  # (B, T, 2C) their gradients, in place
        self._turn(dqk, start, -1)


class SwiGLU:
    """``h = silu(g) * u`` for ``a = [g | u]`` (the gate and up projections side by
    side, ``(N, 2F)``), ``silu(g) = g * s``, ``s = sigmoid(g)``.

    Backward: ``du = dh * silu(g)``, ``dg = dh * u * silu'(g)`` with
    ``silu'(g) = s (1 + g (1 - s)) = s + silu(g) (1 - s)``. In training the forward keeps
    ``silu(g)`` and ``u * silu'(g)``, so the backward is two products.
    """

    def __init__(self, name, ws):
        self.name, self.ws, self.xp = name, ws, ws.xp
        self.silu = self.u_dsilu = None
        self.fused = fused_kernels(self.xp)  # one GPU kernel each way on CuPy; None on NumPy

    def forward(self, a, train=True):  # (N, 2F) -> (N, F)
        xp, ws = self.xp, self.ws
        N, F = a.shape[0], a.shape[1] // 2
        g, u = a[:, :F], a[:, F:]
        silu = ws.get(self.name + ".silu", (N, F))
        h = ws.get(self.name + ".h", (N, F))
        if self.fused is not None:
            self.silu, self.u_dsilu = (silu, ws.get(self.name + ".u_dsilu", (N, F))) if train else (None, None)
            self.fused.swiglu(a, h, self.silu, self.u_dsilu)
            return h
        s = ws.get("swiglu.s", (N, F))
        xp.negative(g, out=s)
        xp.exp(s, out=s)
        s += 1.0
        xp.reciprocal(s, out=s)  # sigmoid(g)
        xp.multiply(g, s, out=silu)
        xp.multiply(silu, u, out=h)
        if not train:
            self.silu = self.u_dsilu = None
            return h
        d = self.u_dsilu = ws.get(self.name + ".u_dsilu", (N, F))
        xp.subtract(1.0, s, out=d)
        d *= silu
        d += s  # silu'(g)
        d *= u
        self.silu = silu
        return h

    def backward(self, dh):  # (N, F) -> (N, 2F)
        xp = self.xp
        N, F = dh.shape
        da = self.ws.get("swiglu.da", (N, 2 * F))
        if self.fused is not None:
            self.fused.swiglu_backward(dh, self.silu, self.u_dsilu, da)
            return da
        xp.multiply(dh, self.u_dsilu, out=da[:, :F])
        xp.multiply(dh, self.silu, out=da[:, F:])
        return da
