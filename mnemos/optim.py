"""AdamW, nanoGPT's learning-rate schedule, and global gradient-norm clipping.

All three work on the model's flat buffers (``ParamStore.data`` / ``.grad``), so each is
a handful of vectorised passes over one array, with preallocated scratch space.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mnemos.backend import fused_kernels, to_numpy
from mnemos.errors import CheckpointError


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to ``lr`` over ``warmup_steps``,
    then cosine decay to ``min_lr`` at ``max_steps``, ``min_lr`` after (nanoGPT)."""
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def clip_grad_norm(grad, max_norm: float) -> float:
    """Scale ``grad`` in place so its global L2 norm is at most ``max_norm``; return the
    norm before clipping. ``max_norm <= 0`` disables clipping (the norm is still returned)."""
    norm = math.sqrt(float(grad @ grad)) if grad.ndim == 1 else float(np.sqrt((grad * grad).sum()))
    if max_norm > 0 and norm > max_norm:
        grad *= max_norm / (norm + 1e-6)
    return norm


_MIN_CHUNK = 1 << 17  # elements: below this, handing a chunk to a thread costs more than it saves
_pool: ThreadPoolExecutor | None = None


def run_chunked(fn, size: int) -> None:
    """Call ``fn(lo, hi)`` over ``[0, size)`` split into contiguous chunks, one per core
    (at most 4, each at least ``_MIN_CHUNK`` elements), the first ones on helper threads.

    For elementwise passes over the flat buffers: NumPy releases the GIL inside its
    loops, so the chunks run on all cores, while NumPy alone would run them on one (the
    update of the baby GPT's 0.83M parameters: 1.2 ms -> 0.6 ms on 2 cores). Each element
    sees the same operations either way, so the result is bit-identical to one pass.
    """
    global _pool
    n = max(1, min(os.cpu_count() or 1, 4, size // _MIN_CHUNK))
    if n == 1:
        fn(0, size)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mnemos-optim")
    bounds = [size * i // n // 16 * 16 for i in range(n)] + [size]  # chunks start on 64 bytes
    futures = [_pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(n - 1)]
    fn(bounds[-2], bounds[-1])
    for f in futures:
        f.result()


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), over one flat buffer:

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr * wd * mask * p``

    where ``mask`` is 1 for the parameters that decay (``ParamStore.decay_mask``). This is
    ``torch.optim.AdamW`` with two parameter groups (decay / no decay), as in nanoGPT.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.1):
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        xp = params.xp
        self.m = xp.zeros_like(params.data)
        self.v = xp.zeros_like(params.data)
        self.t = 0
        self._tmp = xp.empty_like(params.data)
        self._decay = params.decay_mask
        self._fused = fused_kernels(xp)  # None on NumPy; one kernel for the whole update on CuPy

    def step(self, lr: float | None = None) -> None:
        """One update of ``params.data`` from ``params.grad`` with learning rate ``lr``."""
        lr = self.lr if lr is None else lr
        xp = self.params.xp
        b1, b2 = self.betas
        p, g, m, v, tmp = self.params.data, self.params.grad, self.m, self.v, self._tmp
        self.t += 1
        if self._fused is not None:
            self._fused.adamw(p, g, m, v, self._decay, lr, self.weight_decay, b1, b2, self.eps, self.t)
            return
        # lr/bc1 * m / (sqrt(v/bc2) + eps) = (lr sqrt(bc2)/bc1) * m / (sqrt(v) + eps sqrt(bc2))
        bc1 = 1.0 - b1 ** self.t
        sqrt_bc2 = math.sqrt(1.0 - b2 ** self.t)
        decay, decay_end = 1.0 - lr * self.weight_decay, self.params.decay_end

        def update(lo, hi):  # the whole update on elements [lo, hi)
            if self.weight_decay and lo < decay_end:  # decoupled decay first, as torch does
                p[lo:min(hi, decay_end)] *= decay     # (decaying params lead the buffer)
            pc, gc, mc, vc, t = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], tmp[lo:hi]
            mc *= b1
            xp.multiply(gc, 1.0 - b1, out=t)
            mc += t
            vc *= b2
            xp.multiply(gc, gc, out=t)
            t *= 1.0 - b2
            vc += t
            xp.sqrt(vc, out=t)
            t += self.eps * sqrt_bc2
            xp.divide(mc, t, out=t)
            t *= lr * sqrt_bc2 / bc1
            pc -= t

        run_chunked(update, p.size)

    def state_dict(self) -> dict:
        """Host (NumPy) copies of the moments and the step count."""
        return {"m": np.array(to_numpy(self.m)), "v": np.array(to_numpy(self.v)), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for key in ("m", "v"):
            if key not in state or tuple(np.shape(state[key])) != self.m.shape:
                raise CheckpointError(f"optimizer state {key!r} is missing or has the wrong size; "
                                      "resume from a checkpoint of the same model config")
        self.m[...] = self.params.xp.asarray(state["m"])
        self.v[...] = self.params.xp.asarray(state["v"])
        self.t = int(state["t"])
