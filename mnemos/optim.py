"""The optimizers (AdamW, SGD; Muon in :mod:`mnemos.muon`), nanoGPT's learning-rate
schedule, and global gradient-norm clipping.

They work on the model's flat buffers (``ParamStore.data`` / ``.grad``), so each is a
handful of vectorised passes over one array, with preallocated scratch space. Every
optimizer has ``step(lr)``, ``t``, ``state_shapes()``, ``state_dict()`` and
``load_state_dict()``; :func:`make_optimizer` builds the one a ``TrainConfig`` names.
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


def run_chunked(fn, size: int, min_chunk: int = _MIN_CHUNK, align: int = 16) -> None:
    """Call ``fn(lo, hi)`` over ``[0, size)`` split into contiguous chunks, one per core
    (at most 4, each at least ``min_chunk`` items, starting on multiples of ``align``),
    the first ones on helper threads.

    For elementwise passes over the flat buffers: NumPy releases the GIL inside its
    loops, so the chunks run on all cores, while NumPy alone would run them on one
    (measured: docs/measurements.md). Each element
    sees the same operations either way, so the result is bit-identical to one pass.
    Muon runs its per-matrix work this way too, a chunk of matrices per core.
    """
    global _pool
    n = max(1, min(os.cpu_count() or 1, 4, size // min_chunk))
    if n == 1:
        fn(0, size)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mnemos-optim")
    bounds = [size * i // n // align * align for i in range(n)] + [size]  # float32: 16 = 64 bytes
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
    ``spans`` (default: the whole buffer) are the ``[lo, hi)`` element ranges of the flat
    buffer it updates, its moments packed one span after another (Muon hands it the
    parameters that are not hidden matrices).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.1, spans=None):
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        xp = params.xp
        self._segments, n = [], 0  # (lo, hi, offset of the span in m / v)
        for lo, hi in ([(0, params.size)] if spans is None else spans):
            self._segments.append((lo, hi, n))
            n += hi - lo
        self.spans = [(lo, hi) for lo, hi, _ in self._segments]
        self.m = xp.zeros(n, dtype=params.dtype)
        self.v = xp.zeros(n, dtype=params.dtype)
        self.t = 0
        self._tmp = xp.empty(n, dtype=params.dtype)
        self._decay = params.decay_mask
        self._fused = fused_kernels(xp)  # None on NumPy; one kernel per span for the whole update on CuPy

    def step(self, lr: float | None = None) -> None:
        """One update of ``params.data`` from ``params.grad`` with learning rate ``lr``."""
        lr = self.lr if lr is None else lr
        xp = self.params.xp
        b1, b2 = self.betas
        self.t += 1
        # lr/bc1 * m / (sqrt(v/bc2) + eps) = (lr sqrt(bc2)/bc1) * m / (sqrt(v) + eps sqrt(bc2))
        bc1 = 1.0 - b1 ** self.t
        sqrt_bc2 = math.sqrt(1.0 - b2 ** self.t)
        decay = 1.0 - lr * self.weight_decay
        for lo, hi, o in self._segments:
            p, g = self.params.data[lo:hi], self.params.grad[lo:hi]
            m, v, tmp = self.m[o:o + hi - lo], self.v[o:o + hi - lo], self._tmp[o:o + hi - lo]
            if self._fused is not None:
                self._fused.adamw(p, g, m, v, self._decay[lo:hi], lr, self.weight_decay, b1, b2, self.eps, self.t)
                continue
            decay_end = min(hi, self.params.decay_end) - lo  # decaying params lead the buffer

            def update(a, b, p=p, g=g, m=m, v=v, tmp=tmp, decay_end=decay_end):  # elements [a, b) of the span
                if self.weight_decay and a < decay_end:  # decoupled decay first, as torch does
                    p[a:min(b, decay_end)] *= decay
                pc, gc, mc, vc, t = p[a:b], g[a:b], m[a:b], v[a:b], tmp[a:b]
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

            run_chunked(update, hi - lo)

    @staticmethod
    def shapes_for(params, spans=None) -> dict:
        """What :meth:`state_dict` holds for ``params``: key -> (shape, dtype)."""
        n = params.size if spans is None else sum(hi - lo for lo, hi in spans)
        return {"m": ((n,), np.float32), "v": ((n,), np.float32), "t": ((), np.int64)}

    def state_shapes(self) -> dict:
        return self.shapes_for(self.params, self.spans)

    def state_dict(self) -> dict:
        """Host (NumPy) copies of the moments and the step count."""
        return {"m": np.array(to_numpy(self.m)), "v": np.array(to_numpy(self.v)), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        check_state(self, state)
        self.m[...] = self.params.xp.asarray(state["m"])
        self.v[...] = self.params.xp.asarray(state["v"])
        self.t = int(state["t"])


def check_state(optimizer, state: dict) -> None:
    """Raise ``CheckpointError`` unless ``state`` has every array ``optimizer`` keeps, in its shape."""
    for key, (shape, _) in optimizer.state_shapes().items():
        if key not in state or tuple(np.shape(state[key])) != tuple(shape):
            raise CheckpointError(f"optimizer state {key!r} is missing or has the wrong size; resume from a "
                                  f"checkpoint of the same model config and optimizer")


class SGD:
    """Gradient descent with momentum (the heavy ball of ``torch.optim.SGD``, no dampening,
    not Nesterov), the plain method the original project trained with, kept so a learner
    can compare its curve with AdamW's and Muon's:

    ``b = mu b + g``, ``p -= lr * b + lr * wd * mask * p``

    with the weight decay decoupled as in :class:`AdamW` (same parameters). It needs a far
    larger learning rate than AdamW (its step is the gradient itself, not a normalised one).
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0):
        self.params, self.lr, self.mu, self.weight_decay = params, lr, momentum, weight_decay
        self.buf = params.xp.zeros_like(params.data)
        self.t = 0

    def step(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        p, g, b = self.params.data, self.params.grad, self.buf
        decay, decay_end = 1.0 - lr * self.weight_decay, self.params.decay_end
        self.t += 1

        def update(lo, hi):
            if self.weight_decay and lo < decay_end:
                p[lo:min(hi, decay_end)] *= decay
            bc = b[lo:hi]
            bc *= self.mu
            bc += g[lo:hi]
            p[lo:hi] -= lr * bc  # (a temporary: SGD is here to be compared, not raced)

        run_chunked(update, p.size)

    @staticmethod
    def shapes_for(params) -> dict:
        return {"momentum": ((params.size,), np.float32), "t": ((), np.int64)}

    def state_shapes(self) -> dict:
        return self.shapes_for(self.params)

    def state_dict(self) -> dict:
        return {"momentum": np.array(to_numpy(self.buf)), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        check_state(self, state)
        self.buf[...] = self.params.xp.asarray(state["momentum"])
        self.t = int(state["t"])


SGD_MOMENTUM = 0.9
# Floats an optimizer allocates per parameter, at most, its scratch space included
# (mnemos.memory counts them): AdamW m, v and one scratch; Muon, per hidden-matrix element,
# a momentum and four scratch floats (the NS5 stacks), and AdamW's three elsewhere; SGD its
# momentum.
STATE_FLOATS = {"adamw": 3, "muon": 5, "sgd": 1}


def make_optimizer(train_cfg, params):
    """The optimizer ``train_cfg.optimizer`` names, over ``params`` (a ``ParamStore``),
    with the run's betas, eps and weight decay (SGD: momentum :data:`SGD_MOMENTUM`)."""
    cfg = train_cfg
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=SGD_MOMENTUM, weight_decay=cfg.weight_decay)
    return _kind(cfg.optimizer)(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                weight_decay=cfg.weight_decay)


def _kind(name: str):
    from mnemos.muon import Muon

    return {"adamw": AdamW, "muon": Muon, "sgd": SGD}[name]


def state_shapes(name: str, params) -> dict:
    """The arrays optimizer ``name`` saves for ``params`` (a ``ParamStore``): key ->
    (shape, dtype), what a checkpoint's optimizer.npz is checked against before it is read."""
    return _kind(name).shapes_for(params)
