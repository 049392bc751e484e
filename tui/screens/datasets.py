"""Datasets: browse folders, inspect a text file, choose the training and testing files,
and fetch the sample corpus (``mnemos.sample.sample_corpus``) in a worker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DirectoryTree, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker

from mnemos_tui.screens.base import MnemosScreen
from mnemos_tui.session import app_words
from mnemos_tui.widgets.file_info import FileInfoPanel


class DataTree(DirectoryTree):
    """The folder tree without hidden entries (``.cache`` holds Mnemos' own token caches)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if not path.name.startswith(".")]


class DatasetsScreen(MnemosScreen):
    SUB_TITLE = "Datasets"
    AUTO_FOCUS = "#tree"  # focused as the screen is composed: no key typed after F2 is lost
    BINDINGS = [
        Binding("t", "use_training", "Training", tooltip="Use the selected file for training"),
        Binding("e", "use_testing", "Testing", tooltip="Use the selected file for testing"),
        Binding("f", "sample", "Fetch sample", tooltip="Fetch the sample corpus (Shakespeare)"),
        Binding("ctrl+x", "stop", "Stop", priority=True, tooltip="Stop the sample's download"),
        Binding("escape", "stop", "Stop", show=False, tooltip="Stop the sample's download"),
        Binding("g", "go_folder", "Folder", tooltip="Go to a folder: type its path"),
        Binding("r", "refresh", "Refresh", show=False, tooltip="Read the folder again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: Path | None = None  # the file highlighted in the tree
        self.fetching = False  # the sample corpus is being fetched

    def compose_body(self) -> ComposeResult:
        yield Static(id="datasets-status")
        with Horizontal(id="datasets-main", classes="panes"):
            with Vertical(id="datasets-browser", classes="pane"):
                yield Input(placeholder="folder to browse (Enter)", id="folder")
                yield DataTree(self.workspace.data_dir, id="tree")
            yield FileInfoPanel(id="file-info", classes="pane")
        with Horizontal(id="sample-progress", classes="hidden"):
            yield Label("", id="sample-message")
            yield ProgressBar(total=None, show_eta=False, id="sample-bar")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#folder", Input).value = self.workspace.show(self.workspace.data_dir)
        self.update_status()
        if self.workspace.train_file is not None:
            self.inspect(self.workspace.train_file)

    def on_screen_resume(self) -> None:
        self.update_status()

    # -- status line ----------------------------------------------------------------

    def update_status(self) -> None:
        ws = self.workspace
        text = Text()
        text.append("Training: ", style="bold")
        text.append(ws.show(ws.train_file))
        text.append("   Testing: ", style="bold")
        text.append(ws.show(ws.test_file))
        if ws.train_file is None:
            text.append("\nNo training file yet. Press ", style="italic")
            text.append("f", style="bold")
            text.append(" to fetch the sample corpus (Shakespeare), or select a file and press ", style="italic")
            text.append("t", style="bold")
            text.append(".", style="italic")
        status = self.query_one("#datasets-status", Static)
        status.update(text)
        status.set_class(ws.train_file is None, "-missing")

    # -- browsing -------------------------------------------------------------------

    @on(DirectoryTree.FileSelected)
    @on(DirectoryTree.NodeHighlighted)
    def _file_picked(self, event) -> None:
        node = event.node
        path = getattr(event, "path", None) or (node.data.path if node.data is not None else None)
        if path is not None and Path(path).is_file():
            self.inspect(Path(path))

    def inspect(self, path: Path) -> None:
        """Remember ``path`` as the selection and show its numbers (read in a worker)."""
        self.selected = path
        self._inspect(path)

    @work(thread=True, exclusive=True, group="inspect")
    def _inspect(self, path: Path) -> None:
        from mnemos.config import configs_from
        from mnemos.data import inspect_text_file

        model, train = configs_from()  # the default preset's, until the Train form has settings
        vocab, block = self.workspace.settings or (train.tokenizer_vocab, model.block_size)
        try:
            info = inspect_text_file(path, vocab_size=vocab, block_size=block)
        except OSError as exc:
            self.app.call_from_thread(self.report, exc)
            return
        if info.problem:  # the message names the file as the user sees it, and the form's fields
            info = replace(info, problem=app_words(info.problem.replace(str(path), self.workspace.show(path))))
        self.app.call_from_thread(self._show_info, path, info)

    def _show_info(self, path: Path, info) -> None:
        """Show ``info`` unless another file was selected meanwhile: a superseded worker
        (cancelled, but a thread runs to its end) may finish after the newer one."""
        if path == self.selected:
            self.query_one(FileInfoPanel).show(info, self.workspace.show(path))

    @on(Input.Submitted, "#folder")
    def _folder_entered(self, event: Input.Submitted) -> None:
        folder = self.workspace.resolve(event.value.strip() or ".")
        if not folder.is_dir():
            self.notify(f"{event.value}: not a folder; type a folder path", severity="error")
            return
        tree = self.query_one("#tree", DirectoryTree)
        tree.path = folder
        tree.focus()

    def action_go_folder(self) -> None:
        self.set_focus(self.query_one("#folder", Input))  # at once: the next keys typed go there

    def action_refresh(self) -> None:
        self.query_one("#tree", DirectoryTree).reload()

    # -- choosing -------------------------------------------------------------------

    def _choose(self, role: str) -> None:
        path = self.selected
        if path is None:
            self.notify("Select a file in the tree first", severity="warning")
            return
        from mnemos.data import inspect_text_file

        problem = inspect_text_file(path).problem
        if problem:
            self.notify(problem.replace(str(path), self.workspace.show(path)),
                        title=f"Cannot use it for {role}", severity="error", timeout=8)
            return
        setattr(self.workspace, f"{role}_file", path)
        self.update_status()
        self.notify(f"{self.workspace.show(path)} is the {role} file")

    def action_use_training(self) -> None:
        self._choose("train")

    def action_use_testing(self) -> None:
        self._choose("test")

    # -- sample corpus --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.fetching  # shown only while fetching
        if action == "sample":
            return not self.fetching or None
        return True

    def action_stop(self) -> None:
        self.workers.cancel_group(self, "sample")

    def action_sample(self) -> None:
        ws = self.workspace
        from mnemos.paths import TEST_DATA, TRAIN_DATA

        existing = [p for p in (ws.root / TRAIN_DATA, ws.root / TEST_DATA) if p.exists()]
        if not existing:
            self.fetch_sample(force=False)
            return
        from mnemos_tui.screens.dialogs import ConfirmDialog

        names = " and ".join(ws.show(p) for p in existing)
        self.app.push_screen(ConfirmDialog(f"Replace {names} with the sample corpus?", yes="Replace"),
                             lambda yes: self.fetch_sample(force=True) if yes else None)

    @work(thread=True, exclusive=True, group="sample")
    def fetch_sample(self, force: bool) -> None:
        from mnemos.errors import SampleCancelled
        from mnemos.sample import sample_corpus

        worker = get_current_worker()
        self.app.call_from_thread(self._sample_running, True, "fetching the sample corpus ... (ctrl+x or Esc stops it)")
        try:
            result = sample_corpus(self.workspace.root, force=force, cancel=lambda: worker.is_cancelled,
                                   progress=lambda msg: self.app.call_from_thread(self._sample_running, True, msg))
        except SampleCancelled as exc:
            self.app.call_from_thread(self._sample_running, False, "")
            self.app.call_from_thread(self.notify, str(exc).capitalize())
            return
        except Exception as exc:  # shown, never fatal
            self.app.call_from_thread(self._sample_running, False, "")
            self.app.call_from_thread(self.report, exc, "Sample corpus")
            return
        self.app.call_from_thread(self._sample_done, result)

    def _sample_running(self, running: bool, message: str) -> None:
        self.fetching = running
        self.refresh_bindings()
        self.query_one("#sample-progress").set_class(not running, "hidden")
        self.query_one("#sample-message", Label).update(message)

    def _sample_done(self, result) -> None:
        self._sample_running(False, "")
        ws = self.workspace
        ws.train_file, ws.test_file = Path(result.train_path).resolve(), Path(result.test_path).resolve()
        self.update_status()
        self.action_refresh()
        self.inspect(ws.train_file)
        self.notify(f"Sample corpus ready: {len(result.train_plays)} plays to train on, "
                    f"{len(result.test_plays)} to test on")
