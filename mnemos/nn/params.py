"""All parameters in one flat buffer, all gradients in another.

Every named parameter is a reshaped view into ``ParamStore.data`` (and its gradient a
view into ``ParamStore.grad``), so the optimiser, gradient clipping and checkpointing
are one vectorised operation over one array each, and a worker process can share the
weights by sharing a single buffer.
"""

from __future__ import annotations

import numpy as np

_ALIGN = 16  # each view starts on a 64-byte boundary (float32) for SIMD-friendly BLAS


class ParamStore:
    """Flat ``data`` / ``grad`` buffers with named views.

    ``specs`` is a list of ``(name, shape, decay)``; ``decay`` says whether weight decay
    applies to that parameter. ``names`` keep the order of ``specs``; in the buffers the
    decaying parameters come first, so weight decay is one slice ``[0, decay_end)`` (the
    alignment padding between parameters is never read by the model). ``data`` and ``grad`` may be given (e.g. shared memory);
    otherwise they are allocated (zeros).

    ``accumulate`` tells the layers' backward how to deliver parameter gradients: add
    them into ``grad`` (True, the default, for gradient accumulation), or write them
    over it (False: ``GPT.backward(accumulate=False)``, which saves zeroing the buffer
    and a read-modify-write pass over every gradient).
    """

    def __init__(self, specs, dtype=np.float32, xp=np, data=None, grad=None):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.accumulate = True
        self.names: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.offsets: dict[str, int] = {}
        for name, shape, _ in specs:
            if name in self.shapes:
                raise ValueError(f"duplicate parameter name {name!r}")
            self.names.append(name)
            self.shapes[name] = tuple(shape)
        # Layout: the decaying parameters first, so weight decay is one slice [0, decay_end).
        offset = 0
        for want in (True, False):
            for name, shape, decay in specs:
                if bool(decay) == want:
                    offset = -(-offset // _ALIGN) * _ALIGN
                    self.offsets[name] = offset
                    offset += int(np.prod(shape))
            if want:
                self.decay_end = offset
        self.size = offset
        self.count = sum(int(np.prod(s)) for s in self.shapes.values())
        self.data = xp.zeros(self.size, dtype=self.dtype) if data is None else data
        self.grad = xp.zeros(self.size, dtype=self.dtype) if grad is None else grad
        if self.data.shape != (self.size,) or self.grad.shape != (self.size,):
            raise ValueError(f"data and grad must be flat buffers of {self.size} elements")
        self.decay_mask = xp.zeros(self.size, dtype=self.dtype)
        for name, _, decay in specs:
            if decay:
                self._slice(self.decay_mask, name)[...] = 1
        self._make_views()

    def _make_views(self) -> None:
        self._views = {n: self._slice(self.data, n) for n in self.names}
        self._grad_views = {n: self._slice(self.grad, n) for n in self.names}

    def rebind(self, data, grad) -> None:
        """Move the weights and gradients into the flat buffers ``data`` and ``grad``
        (e.g. shared memory): their current values are copied over and the named views
        rebuilt. Views taken earlier still point at the old buffers, so whoever cached
        them (the model's layers) must take them again (``GPT.rebind_params``)."""
        if data.shape != (self.size,) or grad.shape != (self.size,):
            raise ValueError(f"data and grad must be flat buffers of {self.size} elements")
        data[...] = self.data
        grad[...] = self.grad
        self.data, self.grad = data, grad
        self._make_views()

    def _slice(self, flat, name):
        start = self.offsets[name]
        shape = self.shapes[name]
        return flat[start:start + int(np.prod(shape))].reshape(shape)

    def view(self, name: str):
        """The parameter ``name`` as a view into ``data`` (writes go to the model)."""
        return self._views[name]

    def grad_view(self, name: str):
        """The gradient of ``name`` as a view into ``grad``."""
        return self._grad_views[name]

    def __contains__(self, name: str) -> bool:
        return name in self._views

    def __len__(self) -> int:
        return len(self.names)
