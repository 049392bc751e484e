"""``SystemRow``: what a run costs the machine, under the Train screen's live numbers.

CPU use and memory (resident set) of the app's process and of its children (the
data-parallel workers), and the size of the run's folder, read from ``/proc`` and the
folder itself every couple of seconds while a run is alive (no psutil). Where ``/proc`` is
missing (not Linux) the row says so instead of guessing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from textual.widgets import Static

from mnemos.memory import format_bytes

INTERVAL = 2.0  # seconds between samples
PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    """One sample of a process tree: CPU seconds so far and resident bytes now."""

    processes: int
    cpu_s: float
    rss: int


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (read from ``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in (PROC / str(current) / "task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                continue  # the task ended while we looked
    return found


def usage(pid: int) -> Usage:
    """CPU seconds (user + system) and resident bytes of ``pid`` and its descendants."""
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    cpu, rss, count = 0.0, 0, 0
    for member in process_tree(pid):
        try:
            fields = (PROC / str(member) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        cpu += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
        rss += int(fields[21]) * page  # rss in pages (field 24)
        count += 1
    return Usage(count, cpu, rss)


def folder_size(path: Path | None) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist yet)."""
    if path is None:
        return 0
    total = 0
    for file in Path(path).rglob("*"):
        try:
            total += file.stat().st_size if file.is_file() else 0
        except OSError:
            continue
    return total


class SystemRow(Static):
    """``CPU 183% (3 processes) · memory 412 MB · run folder 8.1 MB`` (``CPU 183% (3p) · RSS 412 MB ·
    run 8.1 MB`` in a narrow pane), sampled while a run is alive."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._last: tuple[float, Usage] | None = None
        self.run_dir: Path | None = None

    def on_mount(self) -> None:
        self.set_interval(INTERVAL, self.sample)

    def sample(self) -> None:
        if not self.display:
            self._last = None
            return
        if not PROC.is_dir():
            self.update("CPU and memory: not available here (no /proc)")
            return
        now, current = time.monotonic(), usage(os.getpid())
        cpu = "-"
        if self._last is not None and now > self._last[0]:
            cpu = f"{100 * (current.cpu_s - self._last[1].cpu_s) / (now - self._last[0]):.0f}%"
        self._last = (now, current)
        rss, folder = format_bytes(current.rss), format_bytes(folder_size(self.run_dir))
        if self.size.width < 56:  # a narrow pane (80 columns): the same numbers, shorter words
            self.update(f"CPU {cpu} ({current.processes}p) · RSS {rss} · run {folder}")
            return
        self.update(f"CPU {cpu} ({current.processes} process{'es' if current.processes != 1 else ''}) · "
                    f"memory {rss} · run folder {folder}")
