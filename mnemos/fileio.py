"""File helpers shared by the engine's modules: atomic writes, JSON reads that never trust the file.

``write_atomic`` creates a file through a temporary sibling (filled, flushed, fsynced,
then renamed over the target), so a reader never sees a half-written file and a crash
leaves the previous version whole. The file gets the usual permissions (umask), unlike
``tempfile.mkstemp``'s owner-only ones.

``parse_json`` is the one JSON parser for files a user or another program wrote: any way
the text can fail (bad syntax or UTF-8, nesting deep enough to exhaust the recursion limit,
an integer of thousands of digits) is one ``ValueError``. ``read_jsonl`` reads a JSON-lines
log (``metrics.jsonl``) line by line with a bounded line length, after checking that the
rows it could hold fit in memory (:func:`mnemos.memory.check_file_read`).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable

from mnemos.errors import CheckpointError


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


class NotRegularFile(OSError):
    """A path that is a FIFO, a device or a socket, not a regular file: reading it could
    block forever or never end."""


def open_regular(path: str | os.PathLike, dir_fd: int | None = None) -> BinaryIO:
    """``open(path, "rb")`` that never blocks on a FIFO: the file is opened non-blocking
    and anything but a regular file raises :class:`NotRegularFile` (``strerror`` says so)
    or ``IsADirectoryError``, before a byte is read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file (a pipe, a device or a socket)", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


MAX_JSONL_LINE = 1 << 20  # bytes: a longer line of a JSON-lines log is skipped (Mnemos writes < 1 KB)


def link_loop(path: str | os.PathLike) -> bool:
    """``path`` is a symbolic link that leads back to itself (through others or not)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def why_missing(path: str | os.PathLike) -> str:
    """What to tell a user about a ``path`` that does not exist: a loop of symbolic links,
    a link to nothing, or nothing there."""
    if link_loop(path):
        return "is a loop of symbolic links (one points back to another)"
    if os.path.islink(path):
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    return "does not exist"


def parse_json(data: bytes | str) -> object:
    """``json.loads`` for untrusted text: every failure is a ``ValueError`` whose message
    names the kind of damage (RecursionError and undecodable bytes included)."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (ValueError, RecursionError) as exc:  # ValueError: syntax, UTF-8, or an over-long integer
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:60]}") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file, oldest first; a missing file gives ``[]``
    and an unreadable line (e.g. one cut by a crash, or over :data:`MAX_JSONL_LINE`) is
    skipped. A file whose rows could not fit in memory is refused (one-line ConfigError)
    before it is read."""
    from mnemos.memory import check_file_read

    try:
        f = open_regular(path)  # a FIFO in its place is refused, not waited on
    except FileNotFoundError:
        return []
    except OSError as exc:  # a folder or a FIFO in its place, no permission
        raise CheckpointError(f"cannot read {path} ({exc.strerror or type(exc).__name__}); move it aside and try "
                              f"again") from None
    rows = []
    with f:
        check_file_read(Path(path), os.fstat(f.fileno()).st_size)
        while line := f.readline(MAX_JSONL_LINE + 1):
            if len(line) > MAX_JSONL_LINE:  # skip the rest of an over-long line, never holding it whole
                while line and not line.endswith(b"\n"):
                    line = f.readline(MAX_JSONL_LINE)
                continue
            try:
                row = parse_json(line.decode("utf-8", errors="replace"))
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
