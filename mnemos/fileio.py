"""File helpers shared by the engine's modules: atomic writes, JSON-lines reads.

``write_atomic`` creates a file through a temporary sibling (filled, flushed, fsynced,
then renamed over the target), so a reader never sees a half-written file and a crash
leaves the previous version whole. The file gets the usual permissions (umask), unlike
``tempfile.mkstemp``'s owner-only ones.
"""

from __future__ import annotations

import json
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


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file, oldest first; a missing file gives ``[]``
    and an unreadable line (e.g. one cut by a crash) is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
