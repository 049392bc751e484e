"""Central finite differences, shared by the layer and whole-model gradient checks."""

import numpy as np


def numeric_grad(f, arr, eps=1e-6):
    """Central differences of the scalar ``f()`` w.r.t. every entry of ``arr`` (in place)."""
    flat = arr.reshape(-1)
    assert np.shares_memory(flat, arr)
    g = np.zeros(arr.size)
    for i in range(arr.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g.reshape(arr.shape)
