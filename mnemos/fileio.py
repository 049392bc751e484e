"""Atomic file writing shared by the engine's modules.

``write_atomic`` creates a file through a temporary sibling (filled, flushed, fsynced,
then renamed over the target), so a reader never sees a half-written file and a crash
leaves the previous version whole. The file gets the usual permissions (umask), unlike
``tempfile.mkstemp``'s owner-only ones.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(f)`` writes into a binary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
