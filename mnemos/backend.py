"""Where the arrays live: the one place that chooses the array module.

Layer code never imports NumPy for array work directly; it uses the ``xp`` module its
model was built with (``model.xp``): NumPy for ``device="cpu"``, CuPy for
``device="cuda"`` (an optional extra: ``pip install 'mnemos[gpu]'``). The same layer
code runs on both because CuPy mirrors NumPy's API; the few calls that differ sit
behind the small helpers below:

- :func:`scatter_add` (``np.add.at`` / ``cupyx.scatter_add``),
- :func:`dropout_mask` (NumPy's generator fills a host buffer; on the GPU a counter-based
  hash seeded from that same generator fills the device buffer in one kernel),
- :func:`to_numpy` (checkpoints stay NumPy on disk),
- :func:`fused_kernels`: on CuPy, single-launch kernels for the elementwise chains
  (GELU, LayerNorm, softmax, cross-entropy, AdamW; :mod:`mnemos.cuda_kernels`), which
  the layers use when present; on NumPy ``None``, and the NumPy code path is unchanged.
"""

from __future__ import annotations

import numpy as np

from mnemos.errors import DeviceError

def get_array_module(device: str = "cpu"):
    """The array module for ``device``: numpy for "cpu", cupy for "cuda".

    Raises :class:`DeviceError` (one line, with the fix) for an unknown device, for
    "cuda" without CuPy, and for "cuda" where CuPy finds no usable GPU."""
    if device == "cpu":
        return np
    if device == "cuda":
        return _cupy()
    raise DeviceError(f"unknown device {device!r}; use --device cpu or --device cuda")


def _cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy build that cannot load its CUDA libraries
        why = "is not installed" if isinstance(exc, ImportError) else f"failed to load ({exc})"
        raise DeviceError(f"--device cuda needs CuPy, which {why}: pip install 'mnemos[gpu]' (CUDA 12), "
                          f"or use --device cpu") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, no device, driver too old
        raise DeviceError(f"--device cuda: CuPy finds no usable NVIDIA GPU ({exc}); use --device cpu") from None
    if count < 1:
        raise DeviceError("--device cuda: CuPy finds no NVIDIA GPU; use --device cpu")
    return cupy


def to_numpy(a) -> np.ndarray:
    """A host NumPy array for ``a`` (no copy when it already is one)."""
    return a if isinstance(a, np.ndarray) else a.get()


def scatter_add(xp, target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices summed (unbuffered)."""
    if xp is np or hasattr(xp.add, "at"):  # CuPy 14 deprecates cupyx.scatter_add for cupy.add.at
        xp.add.at(target, indices, values)
    else:
        import cupyx

        cupyx.scatter_add(target, indices, values)


def dropout_mask(xp, rng: np.random.Generator, out, p: float) -> None:
    """Fill ``out`` (an array of module ``xp``) with inverted-dropout multipliers
    ``[u >= p] / (1 - p)``, ``u ~ U(0, 1)``.

    On NumPy ``u`` comes from ``rng`` directly. On CuPy, ``rng`` draws one 64-bit seed
    and a hash of (seed, element index) gives ``u`` on the device, so the model's one
    host generator still decides every mask (a run is reproducible by its seed and
    resumable from the generator's saved state) without copying masks to the GPU."""
    if xp is np:
        rng.random(out=out, dtype=out.dtype)
        np.greater_equal(out, p, out=out)
        out *= 1.0 / (1.0 - p)
    else:
        fused_kernels(xp).dropout_mask(int(rng.integers(0, 2**63)), p, out)


_KERNELS: dict = {}


def fused_kernels(xp):
    """The fused GPU kernels for ``xp`` (:class:`mnemos.cuda_kernels.CudaKernels`), or
    ``None`` for NumPy, whose layers keep their plain NumPy code."""
    if xp is np:
        return None
    if xp not in _KERNELS:
        from mnemos.cuda_kernels import CudaKernels

        _KERNELS[xp] = CudaKernels(xp)
    return _KERNELS[xp]
