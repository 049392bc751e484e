"""Reading safetensors files without trusting them: the header first, then one tensor at a time.

A safetensors file is an 8-byte little-endian header size N, N bytes of JSON naming each
tensor's dtype, shape and ``[begin, end)`` byte range in the data that follows, then the
raw little-endian data. Nothing in it is executable (unlike ``pytorch_model.bin``, a
pickle), but a hostile or truncated file can still claim a 186 GB tensor or ranges past
its end. So :func:`read_header` checks every entry against the file's real size before
anything is allocated, and :func:`read_tensor` reads one tensor through ``np.memmap``,
converting it to float32 (bf16 and f16 included, the common Hugging Face dtypes).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnemos.errors import CheckpointError
from mnemos.fileio import open_regular, parse_json

MAX_HEADER = 100 << 20  # bytes; the safetensors library's own limit
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")  # the ones converted to float32 weights


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in its file (``offset`` counts from the file's start)."""

    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def read_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """The tensors a safetensors file holds, checked against its size; no data is read.

    Raises :class:`CheckpointError` (one line) for a file that is truncated, has a header
    that is not JSON, an unknown dtype, a shape whose byte count disagrees with its range,
    or a range outside the file.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO is refused, not waited on
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header size")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise ValueError(f"header of {n:,} bytes in a file of {size:,}")
            header = parse_json(f.read(n))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); download or convert it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors file (its header is not a JSON object)")
    start, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            out[name] = _entry(path, info, start, size)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid header entry ({exc}); the file is "
                                  f"corrupt, download or convert it again") from None
    return out


def _entry(path: Path, info: dict, start: int, size: int) -> TensorInfo:
    dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _ITEMSIZE:
        raise ValueError(f"unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"shape {shape!r}")
    if not (type(begin) is int and type(end) is int and 0 <= begin <= end):
        raise ValueError(f"data offsets {begin!r}, {end!r}")
    count = 1
    for d in shape:
        count *= d
    if count * _ITEMSIZE[dtype] != end - begin:
        raise ValueError(f"shape {shape} of {dtype} is {count * _ITEMSIZE[dtype]:,} bytes, its range {end - begin:,}")
    if start + end > size:
        raise ValueError(f"its data ends at byte {start + end:,}, past the end of the file ({size:,} bytes): "
                         f"the file is truncated")
    return TensorInfo(path, dtype, tuple(shape), start + begin, end - begin)


def read_tensor(info: TensorInfo) -> np.ndarray:
    """One tensor as a new float32 array (bf16 is widened exactly: its bits are float32's top half)."""
    if info.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{info.path}: a weight of dtype {info.dtype} cannot be read as float32; "
                              f"convert the model to float32 or bfloat16 first")
    count = info.nbytes // _ITEMSIZE[info.dtype]
    if count == 0:
        return np.zeros(info.shape, dtype=np.float32)
    raw = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}[info.dtype]
    data = np.memmap(info.path, dtype=raw, mode="r", offset=info.offset, shape=(count,))
    try:
        if info.dtype == "BF16":
            out = (data.astype(np.uint32) << 16).view(np.float32)
        else:
            out = data.astype(np.float32)
    finally:
        del data
    return out.reshape(info.shape)
