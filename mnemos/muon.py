"""Muon: MomentUm Orthogonalized by Newton-Schulz, for the hidden matrices; AdamW for the rest.

Keller Jordan's optimizer (github.com/KellerJordan/Muon, modded-nanogpt). For every 2-D
weight inside a block (``h.<i>.…``, :func:`hidden_matrices`), with gradient ``G``:

    M = M + (1 - mu) (G - M)                 momentum (mu = 0.95)
    U = G + mu (M - G)                       Nesterov: the step looks ahead along M
    O = NS5(U / (||U||_F + 1e-7))            ~ the orthogonal factor of U (its singular values ~ 1)
    W = W (1 - lr wd) - lr * 0.2 sqrt(max(rows, cols)) * O

NS5 is five quintic Newton-Schulz iterations ``X <- a X + (b A + c A^2) X``, ``A = X X^T``,
``(a, b, c) = (3.4445, -4.7750, 2.0315)``, run on the wide orientation (a tall matrix is
transposed, so ``A`` is the smaller Gram matrix). Being a matrix polynomial it maps each
singular value ``s`` of the normalised ``U`` through the scalar map ``f(s) = a s + b s^3 +
c s^5`` five times: every ``s`` from 0.0015 to 1 lands between 0.68 and 1.20 (Jordan: "not
UV^T but something like US'V^T", which trains as well); only directions with almost no
gradient stay small.

The scale ``0.2 sqrt(max(rows, cols))`` is Moonlight's (Liu et al. 2025, "Muon is Scalable
for LLM Training"): it gives the update the RMS of a typical AdamW update, so the run's one
``--lr``, its schedule and its weight decay serve both halves. (Jordan's scale,
``sqrt(max(1, rows / cols))``, wants a Muon learning rate tens of times AdamW's.) The
embeddings (``wte``, ``wpe``), an untied head, the gains and the biases go to
:class:`~mnemos.optim.AdamW`, which updates only those spans of the flat buffer.

Matrices of one shape are orthogonalised together, as one ``(k, m, n)`` stack through
batched matmuls (on CuPy too: the code is array-module generic). On the CPU each stack is
split into one chunk of matrices per core, on threads (NumPy's matmul releases the GIL):
at 4 x 128 on 2 cores the step went from 22 to 13 ms, bit for bit the same. Float32 throughout
(Jordan runs NS5 in bfloat16 on GPUs; here there is no bfloat16).
"""

from __future__ import annotations

import math

import numpy as np

from mnemos.backend import to_numpy
from mnemos.optim import AdamW, check_state, run_chunked

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
MOMENTUM = 0.95
RMS_MATCH = 0.2  # the update's RMS, as AdamW's typically is (Moonlight)


def hidden_matrices(params) -> list[str]:
    """The parameters Muon updates: the 2-D weights inside the blocks."""
    return [n for n in params.names if n.startswith("h.") and len(params.shapes[n]) == 2]


def _spans_without(params, names) -> list[tuple[int, int]]:
    """``[0, params.size)`` less the ranges of ``names``, as sorted, merged spans."""
    taken = sorted((params.offsets[n], params.offsets[n] + math.prod(params.shapes[n])) for n in names)
    spans, at = [], 0
    for lo, hi in taken:
        if lo > at:
            spans.append((at, lo))
        at = max(at, hi)
    if at < params.size:
        spans.append((at, params.size))
    return spans


def newton_schulz5(X, A, B, Y, xp, steps: int = NS_STEPS) -> None:
    """NS5 in place on the stack ``X`` ``(k, m, n)``, ``m <= n``, each matrix already scaled
    to Frobenius norm <= 1; ``A``, ``B`` ``(k, m, m)`` and ``Y`` ``(k, m, n)`` are scratch."""
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        xp.matmul(X, X.transpose(0, 2, 1), out=A)  # A = X X^T           (k, m, m)
        xp.matmul(A, A, out=B)                      # B = b A + c A^2
        B *= c
        A *= b
        B += A
        xp.matmul(B, X, out=Y)                      # X = a X + B X       (k, m, n)
        X *= a
        X += Y


class _Stack:
    """The hidden matrices of one shape ``(rows, cols)``: their momentum and NS5 scratch."""

    def __init__(self, names, shape, momentum, xp, dtype):
        self.names, self.shape, self.m = names, shape, momentum  # m: (k, rows, cols) view of Muon.momentum
        k, (rows, cols) = len(names), shape
        self.tall = rows > cols
        small, big = min(rows, cols), max(rows, cols)
        self.u = xp.empty((k, rows, cols), dtype=dtype)  # G, then the Nesterov update U
        self.d = xp.empty_like(self.u)  # differences G - M, M - G
        self.x = xp.empty((k, small, big), dtype=dtype)  # U (wide), then O
        self.y = xp.empty_like(self.x)
        self.a = xp.empty((k, small, small), dtype=dtype)
        self.b = xp.empty_like(self.a)
        self.scale = RMS_MATCH * math.sqrt(big)


class Muon:
    """Muon for :func:`hidden_matrices`, AdamW (``lr``, ``betas``, ``eps``,
    ``weight_decay``) for every other parameter; see the module docstring. ``step(lr)``
    updates both with the same learning rate; the hidden matrices all decay (they are
    the linear weights)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.1, momentum: float = MOMENTUM):
        self.params, self.lr, self.weight_decay, self.mu = params, lr, weight_decay, momentum
        xp = params.xp
        names = hidden_matrices(params)
        self.adamw = AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                           spans=_spans_without(params, names))
        by_shape: dict[tuple, list[str]] = {}
        for name in names:
            by_shape.setdefault(params.shapes[name], []).append(name)
        self.momentum = xp.zeros(sum(math.prod(params.shapes[n]) for n in names), dtype=params.dtype)
        self._stacks, at = [], 0
        for shape, group in by_shape.items():
            size = len(group) * math.prod(shape)
            view = self.momentum[at:at + size].reshape(len(group), *shape)
            self._stacks.append(_Stack(group, shape, view, xp, params.dtype))
            at += size

    @property
    def t(self) -> int:
        return self.adamw.t

    def step(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        self.adamw.step(lr)
        for s in self._stacks:
            if self.params.xp is np:  # a chunk of the stack per core: each matrix's work is its own
                run_chunked(lambda lo, hi, s=s: self._update(s, lo, hi, lr), len(s.names), min_chunk=1, align=1)
            else:
                self._update(s, 0, len(s.names), lr)

    def _update(self, s: _Stack, lo: int, hi: int, lr: float) -> None:
        """Muon's update of the stack's matrices ``lo`` to ``hi``."""
        xp, params, mu = self.params.xp, self.params, self.mu
        u, m, d, x = s.u[lo:hi], s.m[lo:hi], s.d[lo:hi], s.x[lo:hi]
        for i, name in enumerate(s.names[lo:hi]):
            u[i] = params.grad_view(name)
        xp.subtract(u, m, out=d)
        d *= 1.0 - mu
        m += d                                  # M = M + (1 - mu)(G - M)
        xp.subtract(m, u, out=d)
        d *= mu
        u += d                                  # U = G + mu (M - G)
        x[...] = u.transpose(0, 2, 1) if s.tall else u
        norms = xp.sqrt((x * x).sum(axis=(1, 2), keepdims=True))
        norms += 1e-7
        x /= norms
        newton_schulz5(x, s.a[lo:hi], s.b[lo:hi], s.y[lo:hi], xp)
        x *= lr * s.scale
        for i, name in enumerate(s.names[lo:hi]):
            w = params.view(name)
            if self.weight_decay:
                w *= 1.0 - lr * self.weight_decay
            w -= x[i].T if s.tall else x[i]

    @staticmethod
    def shapes_for(params) -> dict:
        names = hidden_matrices(params)
        return {**AdamW.shapes_for(params, _spans_without(params, names)),
                "momentum": ((sum(math.prod(params.shapes[n]) for n in names),), np.float32)}

    def state_shapes(self) -> dict:
        return self.shapes_for(self.params)

    def state_dict(self) -> dict:
        """AdamW's ``m``, ``v``, ``t`` (its spans only) and the hidden matrices' ``momentum``."""
        return {**self.adamw.state_dict(), "momentum": np.array(to_numpy(self.momentum))}

    def load_state_dict(self, state: dict) -> None:
        check_state(self, state)
        self.adamw.load_state_dict(state)
        self.momentum[...] = self.params.xp.asarray(state["momentum"])
