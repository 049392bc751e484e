"""The "How it works" guide (``docs/how-it-works.md``) inside the app: from text to bytes
to tokens to attention to the AdamW update, each step naming the code that does it."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import MarkdownViewer

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "how-it-works.md"


def guide_text() -> str:
    """The guide's Markdown, or a pointer to it when the app runs without the repository
    (installed from a wheel, the docs folder is not there)."""
    try:
        return GUIDE.read_text(encoding="utf-8")
    except OSError:
        return ("# How it works\n\nThe guide is `docs/how-it-works.md` in the Mnemos repository; "
                "this installation does not include the docs folder.")


class GuideScreen(ModalScreen[None]):
    """The guide, scrollable, with its table of contents (Esc closes)."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close guide")]

    def compose(self) -> ComposeResult:
        viewer = MarkdownViewer(guide_text(), show_table_of_contents=True, id="guide")
        viewer.border_title = "How it works (Esc closes)"
        yield viewer

    def on_mount(self) -> None:
        self.query_one(MarkdownViewer).focus()
