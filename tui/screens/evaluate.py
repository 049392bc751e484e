"""Evaluate: a checkpoint and a test file in, ``mnemos.evaluate.evaluate_checkpoint`` in a
worker with progress and cancel, the report as a table, this checkpoint's earlier
evaluations, and the report saved (``mnemos.evaluate.save_report``: the history line
and ``eval-report.md`` in the checkpoint folder)."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, Static
from textual.worker import get_current_worker

from mnemos_tui.screens.base import CHECKPOINT_KEY, MnemosScreen
from mnemos_tui.widgets.checkpoint_select import CheckpointSelect
from mnemos_tui.widgets.report_table import ReportTable


class EvaluateScreen(MnemosScreen):
    SUB_TITLE = "Evaluate"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", tooltip="Start the evaluation"),
        Binding("ctrl+x", "stop", "Stop", priority=True, tooltip="Stop the evaluation"),
        Binding("escape", "stop", "Stop", show=False, tooltip="Stop the evaluation"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the report"),
        Binding("ctrl+t", "tokens", "Tokens", tooltip="Text by loss: each token coloured by its loss"),
        CHECKPOINT_KEY,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report_obj = None  # the last EvalReport
        self.running = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="evaluate-setup"):
            with Horizontal(classes="form-row"):
                yield Label("checkpoint", classes="form-label")
                yield CheckpointSelect(id="eval-checkpoint")
            with Horizontal(classes="form-row"):
                yield Label("test file", classes="form-label")
                yield Input(placeholder="data/testing/test.txt", id="eval-data", compact=True)
            with Horizontal(id="eval-progress", classes="form-row"):
                yield ProgressBar(total=1, show_eta=False, id="eval-bar")
                yield Label("press ctrl+r to evaluate", id="eval-phase")
        with Horizontal(id="evaluate-main"):
            with VerticalScroll(classes="pane", id="eval-report-pane") as pane:
                pane.border_title = "Report"
                yield ReportTable(id="eval-report")
                yield Static("", id="eval-method")
            with Vertical(classes="pane", id="eval-history-pane") as pane:
                pane.border_title = "Earlier evaluations"
                yield DataTable(id="eval-history", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#eval-history", DataTable).add_columns("step", "file", "loss", "ppl", "bpb")
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        ws = self.workspace
        field = self.query_one("#eval-data", Input)
        if not field.value and ws.test_file is not None:
            field.value = ws.show(ws.test_file)
        try:
            self.query_one(CheckpointSelect).reload(ws.checkpoints_dir, keep=ws.checkpoint)
        except OSError as exc:
            self.report(exc)
        self.load_history()

    @on(Select.Changed, "#eval-checkpoint")
    def _checkpoint_chosen(self, event: Select.Changed) -> None:
        if event.value != Select.NULL:
            self.workspace.checkpoint = Path(str(event.value))
            self.load_history()

    def _checkpoint(self) -> Path | None:
        value = self.query_one(CheckpointSelect).value
        return None if value == Select.NULL else Path(str(value))

    def load_history(self) -> None:
        table = self.query_one("#eval-history", DataTable)
        table.clear()
        path = self._checkpoint()
        if path is None:
            return
        from mnemos.evaluate import eval_history

        try:
            rows = eval_history(path)
        except Exception as exc:
            self.report(exc)
            return
        for row in rows:
            data = Path(str(row.get("data") or "")).name or "-"
            table.add_row(str(row.get("step", "-")), data, _num(row.get("loss"), ".4f"),
                          _num(row.get("perplexity"), ",.2f"), _num(row.get("bits_per_byte"), ".4f"))

    # -- running ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action == "start":
            return None if self.running else True
        if action == "save":
            return self.report_obj is not None or None
        return True

    def evaluate_now(self, path: Path) -> None:
        """Choose ``path`` and evaluate it at once (``v`` on Checkpoints)."""
        self.workspace.checkpoint = path
        try:
            self.query_one(CheckpointSelect).reload(self.workspace.checkpoints_dir, keep=path)
        except OSError as exc:
            self.report(exc)
            return
        self.load_history()
        self.action_start()

    def action_start(self) -> None:
        path = self._checkpoint()
        if path is None:
            self.notify("Choose a checkpoint first (train one on F3 if the list is empty)", severity="error")
            return
        text = self.query_one("#eval-data", Input).value.strip()
        if not text:
            self.notify("Type a test file, or choose one on Datasets (F2)", severity="error")
            return
        data = self.workspace.resolve(text)
        self.running = True
        self.refresh_bindings()
        self.query_one("#eval-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-phase", Label).update("evaluating …")
        self.evaluate(path, data)

    def action_stop(self) -> None:
        self.workers.cancel_group(self, "evaluate")

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def evaluate(self, path: Path, data: Path) -> None:
        from mnemos.evaluate import EvalCancelled, evaluate_checkpoint

        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self._progress, done, total)

        try:
            report = evaluate_checkpoint(path, data=data, progress=progress,
                                         cancel=lambda: worker.is_cancelled)
        except EvalCancelled:
            self.app.call_from_thread(self._finished, None, "cancelled")
            return
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "Evaluation failed")
            self.app.call_from_thread(self._finished, None, "failed")
            return
        self.app.call_from_thread(self._finished, report, "done")

    def _progress(self, done: int, total: int) -> None:
        self.query_one("#eval-bar", ProgressBar).update(total=total or None, progress=done)
        self.query_one("#eval-phase", Label).update(f"{done:,} / {total:,}")

    def _finished(self, report, outcome: str) -> None:
        self.running = False
        bar = self.query_one("#eval-bar", ProgressBar)
        if report is not None:
            self.report_obj = report
            self.query_one(ReportTable).show(report)
            self.query_one("#eval-method", Static).update(f"[b]method[/b] {escape(report.method)}")
            bar.update(total=1, progress=1)
            self.query_one("#eval-phase", Label).update(f"{report.bits_per_byte:.3f} bits/byte · ctrl+s saves")
        else:
            bar.update(total=1, progress=0)
            self.query_one("#eval-phase", Label).update(f"evaluation {outcome}")
        self.refresh_bindings()

    def action_tokens(self) -> None:
        """The test file coloured by how well the model predicted each token."""
        path = self._checkpoint()
        text = self.query_one("#eval-data", Input).value.strip()
        if path is None or not text:
            self.notify("Choose a checkpoint and a test file first", severity="error")
            return
        self.open_loss_text(path, self.workspace.resolve(text))

    @work(thread=True, exclusive=True, group="loss-text-load", exit_on_error=False)
    def open_loss_text(self, path: Path, data: Path) -> None:
        from mnemos.checkpoint import load_checkpoint
        from mnemos.data import read_text
        from mnemos_tui.widgets.loss_text import LossTextDialog

        try:
            ckpt, text = load_checkpoint(path), read_text(data)
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "Cannot score the text")
            return
        self.app.call_from_thread(self.app.push_screen,
                                  LossTextDialog(ckpt.model, ckpt.tokenizer, self.workspace.show(data), text))

    def action_save(self) -> None:
        """Append the report to the checkpoint's history and write it as Markdown."""
        if self.report_obj is None or self.report_obj.checkpoint is None:
            return
        from mnemos.evaluate import save_report

        try:
            target = save_report(self.report_obj.checkpoint, self.report_obj)
        except Exception as exc:
            self.report(exc, "Cannot save the report")
            return
        self.notify(f"Report saved: {self.workspace.show(Path(target))}")
        self.load_history()


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
