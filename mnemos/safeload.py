"""Reading checkpoint files that may be damaged, edited or hostile, without trusting them.

A checkpoint folder is user data: a truncated copy, a hand-edited ``config.json``, an npz
from somewhere else. Every reader here checks before it allocates and fails with one line
(:class:`~mnemos.errors.CheckpointError`):

- :func:`read_npz`: the members of an ``.npz`` (a zip of ``.npy`` files) are checked
  against the names, shapes and dtypes expected, from the zip directory and each ``.npy``
  header, before any array is read; an array is then read for exactly its declared size
  (a member that claims 186 GB, or a 3 MB zip that would inflate to 3 GB, is refused
  without allocating it). Another dtype is refused, not converted; NaN and infinities are
  refused where ``finite`` is asked.
- :func:`parse_json`: a JSON object, with very deep nesting and oversized numbers refused.
- :func:`check_state`: the types and ranges of the fields of ``state.json`` that loading
  and resuming use.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from mnemos.errors import CheckpointError
from mnemos import fileio

_NPY_HEADER_MAX = 1 << 16  # bytes of an .npy header (format 1.0 caps it at 65535)
# what a member may be: (shape, dtype) wanted, or None to refuse it
Expect = Callable[[str], "tuple[tuple[int, ...], np.dtype] | None"]


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} {why}; use the run's best/ folder or another checkpoint")


def _header(f, path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if fortran:
        raise _damaged(path, f"stores {key!r} in Fortran order, which Mnemos never writes")
    return tuple(shape), np.dtype(dtype)


def read_npz(data: bytes, path: Path, expect: Expect, finite: bool = True) -> dict[str, np.ndarray]:
    """The arrays of the npz bytes ``data`` (the file ``path``), each checked against
    ``expect(key)`` first; every expected key must be present (``expect.required``, if set)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {}
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                want = expect(key)
                if want is None or key in members:
                    raise _damaged(path, f"holds an unexpected member {info.filename!r}")
                with zf.open(info) as f:
                    got = _header(f, path, key)
                if got[0] != tuple(want[0]) or got[1] != np.dtype(want[1]):
                    raise _damaged(path, f"does not fit its config.json: {key!r} has dtype {got[1]} and shape "
                                         f"{got[0]}, expected {np.dtype(want[1])} and {tuple(want[0])}")
                if info.file_size > got[1].itemsize * math.prod(got[0]) + _NPY_HEADER_MAX:
                    raise _damaged(path, f"member {info.filename!r} is larger than the array it declares")
                members[key] = info
            missing = sorted(set(getattr(expect, "required", ())) - set(members))
            if missing:
                raise _damaged(path, f"lacks {', '.join(missing)}")
            arrays = {}
            for key, info in members.items():
                with zf.open(info) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)  # reads exactly the declared size
                if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise _damaged(path, f"holds NaN or infinite values in {key!r} (the run diverged before "
                                         f"this save, or the file was damaged)")
                arrays[key] = arr
            return arrays
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError, TypeError,
            SyntaxError, NotImplementedError, RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise _damaged(path, f"is truncated or corrupt ({type(exc).__name__}: {str(exc)[:80]})") from None


def expect_exactly(shapes: dict[str, tuple[tuple[int, ...], object]]) -> Expect:
    """An ``expect`` for :func:`read_npz` that wants exactly these members."""
    def expect(key: str):
        return shapes.get(key)
    expect.required = tuple(shapes)
    return expect


def parse_json(data: bytes, path: Path) -> dict:
    """A JSON object from ``data``; corrupt, deeply nested or non-object JSON is refused."""
    try:
        obj = fileio.parse_json(data)
    except ValueError as exc:
        raise CheckpointError(f"{path} is corrupt ({str(exc).split(':')[0]}); use the run's best/ folder or start "
                              f"a new run") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is corrupt (not a JSON object); use the run's best/ folder or start a new run")
    return obj


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# state.json: field -> (what it must be, the test)
_STATE_FIELDS = {
    "step": ("an integer >= 0", lambda v: _is_int(v) and 0 <= v <= 10 ** 12),
    "tokens_seen": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "elapsed_s": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
    "best_val_loss": ("a number or null", lambda v: v is None or _is_number(v)),
    "batch_rng": ("an object", lambda v: isinstance(v, dict)),
    "dropout_rng": ("an object", lambda v: isinstance(v, dict)),
    "windows_drawn": ("an integer >= 0 or null", lambda v: v is None or (_is_int(v) and 0 <= v <= 10 ** 15)),
    "data": ("a path or null", lambda v: v is None or isinstance(v, str)),
    "val_data": ("a path or null", lambda v: v is None or isinstance(v, str)),
    "tokenizer": ("a fingerprint or null", lambda v: v is None or isinstance(v, str)),
    "model_shape": ("an object", lambda v: isinstance(v, dict)),
    "budget_used_s": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
    "step_time_s": ("a number of seconds > 0 or null", lambda v: v is None or (_is_number(v) and v > 0)),
    "eval_time_s": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
    "save_time_s": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
}


def check_state(state: dict, path: Path) -> None:
    """Refuse a ``state.json`` whose known fields have the wrong type or range."""
    for name, (what, ok) in _STATE_FIELDS.items():
        if name in state and not ok(state[name]):
            raise CheckpointError(f"{path}: {name} must be {what}, got {str(state[name])[:40]!r}; the file was "
                                  f"edited or damaged, use the run's best/ folder or another checkpoint")
