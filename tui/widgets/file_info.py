"""``FileInfoPanel``: the numbers of a text file, why it cannot be used, and its first lines."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

PREVIEW_BYTES = 4096
PREVIEW_LINES = 40


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"


def preview_text(path: Path) -> str:
    """The first lines of a file, read without loading it all (bad bytes replaced)."""
    with open(path, "rb") as f:
        head = f.read(PREVIEW_BYTES)
    return "\n".join(head.decode("utf-8", errors="replace").splitlines()[:PREVIEW_LINES])


class FileInfoPanel(VerticalScroll):
    """Shows a ``mnemos.data.FileInfo``; the problem, if any, in the error colour."""

    def compose(self) -> ComposeResult:
        yield Static("Select a file in the tree to see its numbers and first lines.", id="file-stats")
        yield Static("", id="file-problem")
        yield Static("", id="file-preview")

    def show(self, info, shown_path: str) -> None:
        """``info`` is a ``FileInfo``; ``shown_path`` the path as the user should read it."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("file", shown_path)
        table.add_row("size", human_bytes(info.size))
        if info.problem is None or info.chars:
            table.add_row("characters", f"{info.chars:,}")
            table.add_row("lines", f"{info.lines:,}")
            table.add_row("distinct characters", f"{info.distinct_chars:,}")
            table.add_row("estimated tokens", f"{info.est_tokens:,}")
        self.query_one("#file-stats", Static).update(table)
        problem = self.query_one("#file-problem", Static)
        problem.update(Text(f"✗ {info.problem}") if info.problem else Text("✓ usable for training or testing"))
        problem.set_class(info.problem is not None, "-bad")
        preview = ""
        if info.chars:
            try:
                preview = preview_text(Path(info.path))
            except OSError as exc:
                preview = f"(cannot read: {exc.strerror})"
        self.query_one("#file-preview", Static).update(Text(preview))
        self.scroll_home(animate=False)
