"""One live run per run folder: an advisory lock held by the run that owns it.

A training run (new or resumed) holds an exclusive ``fcntl.flock`` on the file
``.<run>.lock`` next to the run folder (not inside it: every save replaces the folder by
a rename, see :mod:`mnemos.checkpoint`). The file records who holds it (pid, host,
command line, start time). The kernel drops the lock when the process exits, however it exits
(Ctrl+C, kill -9, a crash), so a lock file left by a dead process is stale and simply
taken over; :meth:`RunLock.release` removes the file again.

A second run into the same ``--out``, a resume, or a delete of a locked folder is refused
with :func:`lock_holder`'s answer. The app shows it on its Checkpoints screen. A symlinked
run folder is locked through its target, so a link and its target share one lock.
Without ``fcntl`` (Windows) nothing is locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from mnemos.errors import CheckpointError
from mnemos.fileio import parse_json

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


def _lock_path(run: str | os.PathLike) -> Path:
    run = Path(os.path.realpath(run))
    return run.parent / f".{run.name}.lock"


def _command() -> str:
    """This process's command line as typed (``python -m mnemos`` shows as ``mnemos``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join(["mnemos" if name == "__main__.py" else name, *sys.argv[1:]])


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')}, `{holder.get('command', '?')}`, started {started}"


def lock_holder(run_dir: str | os.PathLike) -> dict | None:
    """Who holds ``run_dir``'s lock: ``{"pid", "host", "command", "started"}`` (``started`` in
    seconds since the epoch), or None when no live process does (a lock file of a dead
    process is stale and gives None)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(_lock_path(run_dir), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held
            try:
                holder = parse_json(os.read(fd, 1 << 16).decode("utf-8", "replace"))
            except ValueError:
                holder = None  # being written this instant
            return holder if isinstance(holder, dict) else {"pid": None, "command": "?", "started": 0}
        return None
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock of a run folder, taken on construction (``CheckpointError``,
    one line, naming the holder, if another live process has it)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = _lock_path(run_dir)
        self.fd = None
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = lock_holder(run_dir)
                if holder is None:
                    continue  # released meanwhile: try again
                raise CheckpointError(f"{run_dir} is in use by another run ({_describe(holder)}); wait for it to "
                                      f"finish or stop it, or choose another folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command()[:500],
                "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        """Give the lock up and remove its file. Safe to call more than once."""
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)  # closing drops the lock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
