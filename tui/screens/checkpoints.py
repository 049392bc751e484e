"""Checkpoints: the saved runs (the one training now marked, here or in another process,
with who holds it), the details of the highlighted one (an imported model: where it came
from), delete (with a confirmation; never a run that is training), shortcuts to chat with
or evaluate it, and marks (space) to compare several runs (``x``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from mnemos.budget import format_duration
from mnemos_tui.screens.base import MnemosScreen
from mnemos_tui.screens.compare import CompareScreen
from mnemos_tui.screens.import_dialog import ImportDialog
from mnemos_tui.widgets.file_info import human_bytes


class CheckpointsScreen(MnemosScreen):
    SUB_TITLE = "Checkpoints"
    AUTO_FOCUS = "#checkpoint-table"  # focused as the screen is composed: no key typed after F6 is lost
    BINDINGS = [
        Binding("c", "chat", "Chat", tooltip="Chat with the run (Generate)"),
        Binding("enter", "chat", "Chat", show=False, tooltip="Chat with the run (Generate)"),
        Binding("v", "evaluate", "Evaluate", tooltip="Evaluate the run now"),
        Binding("space", "mark", "Mark", tooltip="Mark the run to compare it"),
        Binding("x", "compare", "Compare", tooltip="Compare the marked runs"),
        Binding("d,delete", "delete", "Delete", tooltip="Delete the run (asks first)"),
        Binding("i", "import_model", "Import", tooltip="Import a Hugging Face model folder"),
        Binding("r", "refresh", "Refresh", show=False, tooltip="Read the runs again"),
    ]

    HELP_PANES = (("Compare", CompareScreen),)  # F1 lists its keys too

    def __init__(self) -> None:
        super().__init__()
        self.infos: dict[str, object] = {}  # resolved path -> CheckpointInfo
        self.marked: set[str] = set()  # resolved paths marked for comparison
        self.current: str | None = None  # resolved path of the highlighted run, kept across refreshes
        self.holders: dict[str, dict] = {}  # resolved path -> who trains it in another process (lock_holder)

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="checkpoints-main"):
            yield DataTable(id="checkpoint-table", cursor_type="row", classes="pane")
            with VerticalScroll(id="checkpoint-details", classes="pane") as details:
                details.border_title = "Details"
                yield Static("No checkpoints yet: train one on the Train screen (F3).", id="details-text")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        table.border_title = "Saved runs · space marks, x compares"
        table.add_column("", key="mark", width=1)
        table.add_columns("run", "step", "best val", "params", "size")
        self.action_refresh()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def _training_path(self) -> str | None:
        """The resolved folder of the run training now, if any."""
        session = self.mnemos.session
        if not session.alive or session.run_dir is None:
            return None
        return str(session.run_dir.resolve())

    def action_refresh(self) -> None:
        from mnemos.checkpoint import list_checkpoints
        from mnemos.runlock import lock_holder

        table = self.query_one(DataTable)
        try:
            infos = list_checkpoints(self.workspace.checkpoints_dir)
        except OSError as exc:
            self.report(exc)
            return
        keep = self.current
        table.clear()
        self.infos = {str(Path(i.path).resolve()): i for i in infos}
        self.marked &= self.infos.keys()
        training = self._training_path()
        self.holders = {key: holder for key in self.infos if key != training
                        and (holder := lock_holder(key)) is not None}
        for key, info in self.infos.items():
            best = f"{info.best_val_loss:.4f}" if info.best_val_loss is not None else "-"
            params = f"{info.num_params / 1e6:.2f} M" if info.num_params else "?"
            name = Text(info.name)
            if key == training:
                name.append(" ● training", style="bold yellow")
            elif key in self.holders:
                name.append(" ● training elsewhere", style="bold yellow")
            step = "imported" if _imported(info) else str(info.step)
            table.add_row(self._mark(key), name, step, best if not info.problem else "broken", params,
                          human_bytes(info.size_bytes), key=key)
        if keep in self.infos:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        if not infos:
            self.query_one("#details-text", Static).update(
                "No checkpoints yet: train one on the Train screen (F3).")

    def _mark(self, key: str) -> Text:
        return Text("✓", style="bold green") if key in self.marked else Text(" ")

    def _selected(self):
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.infos.get(key)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        info = self.infos.get(event.row_key.value)
        if info is not None:
            self.current = event.row_key.value
            self.query_one("#details-text", Static).update(self._details(info))

    def _details(self, info) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        table.add_row("folder", self.workspace.show(Path(info.path)))
        if info.problem:
            table.add_row("problem", f"[red]{info.problem}[/]")
        holder = self.holders.get(str(Path(info.path).resolve()))
        if holder is not None:
            table.add_row("training", Text(f"in another process: {_holder_words(holder)}", style="yellow"))
        budget = info.train_config.get("time_budget")
        if _imported(info):  # its training settings are defaults nobody chose: only where it came from
            table.add_row("imported from", Text(f"{info.imported_from} ({info.imported_model_type or '?'})"))
        else:
            table.add_row("step", f"{info.step:,}" + (f" of {info.max_steps:,}" if info.max_steps is not None else "")
                          + (f" (time budget {format_duration(budget)})" if budget else ""))
        if info.init_from:
            table.add_row("started from", Text(self.workspace.show(Path(info.init_from))))
        table.add_row("best val loss", "-" if info.best_val_loss is None else f"{info.best_val_loss:.4f}")
        table.add_row("parameters", f"{info.num_params:,}")
        table.add_row("data", self.workspace.show(Path(info.data)) if info.data else "-")
        table.add_row("saved", datetime.fromtimestamp(info.modified).strftime("%Y-%m-%d %H:%M") if info.modified else "-")
        table.add_row("size", human_bytes(info.size_bytes))
        table.add_row("best/ kept", "yes" if info.has_best else "no")
        settings = info.model_config if _imported(info) else {**info.model_config, **info.train_config}
        for name, value in settings.items():
            table.add_row(name, json.dumps(value) if isinstance(value, str) else str(value))  # "\n", not a line break
        return table

    def action_delete(self) -> None:
        info = self._selected()
        if info is None:
            return
        if str(Path(info.path).resolve()) == self._training_path():
            self.notify(f"{info.name} is training right now: stop it on Train (F3) before deleting it",
                        severity="error")
            return
        holder = self.holders.get(str(Path(info.path).resolve()))
        if holder is not None:
            self.notify(f"{info.name} is training in another process ({_holder_words(holder)}): stop it there "
                        f"before deleting it", severity="error")
            return
        from mnemos_tui.screens.dialogs import ConfirmDialog

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            from mnemos.checkpoint import delete_checkpoint

            try:
                delete_checkpoint(info.path)
            except Exception as exc:
                self.report(exc, "Cannot delete")
                return
            if self.workspace.checkpoint is not None and \
                    Path(self.workspace.checkpoint).resolve() == Path(info.path).resolve():
                self.workspace.checkpoint = None
            self.notify(f"Deleted {info.name}")
            self.action_refresh()

        self.app.push_screen(ConfirmDialog(f"Delete checkpoint {info.name} (step {info.step}) for good?",
                                           yes="Delete"), confirmed)

    def action_mark(self) -> None:
        """Mark or unmark the highlighted run for comparison, and move to the next one."""
        table = self.query_one(DataTable)
        info = self._selected()
        if info is None:
            return
        key = str(Path(info.path).resolve())
        self.marked ^= {key}
        table.update_cell(key, "mark", self._mark(key))
        table.action_cursor_down()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("Mark two or more runs with space, then press x to compare them", severity="warning")
            return
        keys = [key for key in self.infos if key in self.marked]  # in the list's order
        self.app.push_screen(CompareScreen([Path(k) for k in keys]))

    def _open(self, mode: str) -> Path | None:
        info = self._selected()
        if info is None:
            self.notify("No checkpoint selected", severity="warning")
            return None
        self.workspace.checkpoint = path = Path(info.path).resolve()
        self.app.switch_mode(mode)
        return path

    def action_chat(self) -> None:
        self._open("generate")

    def action_evaluate(self) -> None:
        """Open Evaluate on the highlighted run and start evaluating it."""
        path = self._open("evaluate")
        if path is not None:
            screen = self.app.screen  # Evaluate, mounted or not: the call waits in its queue
            screen.call_later(screen.evaluate_now, path)

    def action_import_model(self) -> None:
        """Import a Hugging Face GPT-2 folder as a new run (in a worker: 124M parameters take seconds)."""
        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                self.notify(f"Importing {choice[0]} ...", title="Import")
                self._import(*choice)

        self.app.push_screen(ImportDialog(Path.cwd(), self.workspace.checkpoints_dir), chosen)

    @work(thread=True, exclusive=True, group="import")
    def _import(self, src: str, out: str) -> None:
        from mnemos.errors import MnemosError
        from mnemos.hf_import import import_hf

        try:
            report = import_hf(src, out, say=lambda line: self.app.call_from_thread(self.notify, line, title="Import"))
        except MnemosError as exc:
            self.app.call_from_thread(self.report, exc, "Import failed")
            return
        message = (f"{report.model_type}, {report.n_params:,} parameters, vocabulary {report.vocab_size:,}: "
                   f"saved as {report.out}" + "".join(f"; {note}" for note in report.notes))
        self.app.call_from_thread(self.notify, message, title="Imported")
        self.app.call_from_thread(self.action_refresh)


def _imported(info) -> bool:
    """An imported model not trained since (``mnemos import``: step 0, no optimizer)."""
    return bool(info.imported_from) and info.step == 0


def _holder_words(holder: dict) -> str:
    """Who holds a run's lock, in words: pid 4242 on host, `mnemos train ...`, since 12:34."""
    started = holder.get("started")
    since = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M") if isinstance(started, (int, float)) else "?"
    host = f" on {holder['host']}" if holder.get("host") else ""
    return f"pid {holder.get('pid', '?')}{host}, `{holder.get('command', '?')}`, since {since}"
