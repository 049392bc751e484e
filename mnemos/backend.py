"""Where the arrays live: the one place that chooses the array module.

Layer code never imports NumPy for array work directly; it uses the ``xp`` module its
model was built with (``model.xp``), so the same code can later run on CuPy. The few
calls that differ between array libraries (scatter-add, moving arrays to the host) sit
behind the small helpers below. Only NumPy is implemented today.
"""

from __future__ import annotations

import numpy as np

from mnemos.errors import DeviceError


def get_array_module(device: str = "cpu"):
    """The array module for ``device`` ("cpu" -> numpy)."""
    if device == "cpu":
        return np
    raise DeviceError(f"device {device!r} is not supported by this build; use --device cpu")


def scatter_add(xp, target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices summed (unbuffered)."""
    xp.add.at(target, indices, values)


def to_numpy(a) -> np.ndarray:
    """A host NumPy array for ``a`` (no copy when it already is one)."""
    return a if isinstance(a, np.ndarray) else a.get()
