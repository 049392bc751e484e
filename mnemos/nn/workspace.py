"""Preallocated scratch arrays, reused by every forward/backward of one (B, T) shape.

Fresh NumPy temporaries cost page faults on every step (measured: docs/measurements.md).
Layers therefore write into buffers
taken from a ``Workspace``: the first step of a shape allocates them, later steps of
that shape reuse them. A few recent shapes are kept (training and evaluation batches
may differ); older ones are dropped so memory stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class Workspace:
    def __init__(self, xp=np, dtype=np.float32, max_shapes: int = 3):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.max_shapes = max_shapes
        self._sets: OrderedDict = OrderedDict()
        self._current: dict = {}
        self._ones: dict = {}
        self.use(None)

    def use(self, key) -> None:
        """Switch to the buffer set for ``key`` (usually ``(B, T)``)."""
        if key in self._sets:
            self._sets.move_to_end(key)
        else:
            self._sets[key] = {}
            while len(self._sets) > self.max_shapes:
                self._sets.popitem(last=False)
        self._current = self._sets[key]

    def get(self, name: str, shape: tuple, dtype=None):
        """The buffer ``name`` of ``shape`` in the current set (contents undefined)."""
        key = (name, shape, dtype)
        buf = self._current.get(key)
        if buf is None:
            buf = self.xp.empty(shape, dtype=self.dtype if dtype is None else dtype)
            self._current[key] = buf
        return buf

    def ones(self, n: int):
        """A constant vector of ``n`` ones: ``ones @ A`` sums rows faster than ``A.sum(0)``."""
        v = self._ones.get(n)
        if v is None:
            v = self._ones[n] = self.xp.ones(n, dtype=self.dtype)
        return v
