"""Modal dialogs: a yes/no confirmation, and the question asked when quitting mid-run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True only for an explicit yes."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"),
                Binding("y", "dismiss(True)", "Yes"), Binding("n", "dismiss(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self.question, classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")  # the keys on the buttons
                yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class QuitDialog(ModalScreen[str]):
    """Quitting while training: "save" and quit, quit without saving ("discard"), or "cancel"."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel"),
                Binding("s", "dismiss('save')", "Save and quit"),
                Binding("q", "dismiss('discard')", "Quit without saving")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Training is running. Save a checkpoint before quitting?",
                        classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save and quit", variant="success", id="save")
                yield Button("Quit without saving", variant="error", id="discard")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
