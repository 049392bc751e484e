"""The Import dialog: pick a Hugging Face model folder and name the run it becomes."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label


class FolderTree(DirectoryTree):
    """A DirectoryTree of folders only (hidden ones left out)."""

    def filter_paths(self, paths):
        return [p for p in paths if p.is_dir() and not p.name.startswith(".")]


class ImportDialog(ModalScreen[tuple[str, str] | None]):
    """Dismisses with ``(hf_folder, run_folder)``, or ``None`` when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, start: str | Path, runs_dir: str | Path) -> None:
        super().__init__(classes="dialog")
        self.start = Path(start)
        self.runs_dir = Path(runs_dir)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box", id="import-box"):
            yield Label("Import a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer): pick it "
                        "below or type its path.", classes="dialog-question")
            yield FolderTree(self.start, id="import-tree")
            yield Input(placeholder="Hugging Face model folder", id="import-from")
            yield Input(placeholder="new run folder", id="import-out")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Import", variant="success", id="import")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#import-from", Input).focus()

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self.query_one("#import-from", Input).value = str(event.path)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "import-from" and event.value.strip():
            self.query_one("#import-out", Input).placeholder = str(self._default_out(event.value))

    def _default_out(self, src: str) -> Path:
        return self.runs_dir / (Path(src.strip()).name or "imported")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._finish()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "import":
            self._finish()
        else:
            self.dismiss(None)

    def _finish(self) -> None:
        src = self.query_one("#import-from", Input).value.strip()
        if not src:
            self.notify("Type or pick the Hugging Face model folder first", severity="warning")
            return
        out = self.query_one("#import-out", Input).value.strip() or str(self._default_out(src))
        self.dismiss((src, out))
