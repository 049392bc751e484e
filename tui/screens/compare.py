"""Compare: the runs marked on Checkpoints, their train and validation loss overlaid on
one plot (x by step, tokens seen or wall time; log y; TensorBoard's smoothing with the
raw curve drawn dim behind it) beside each run's best validation bits per byte and the
hyperparameters that differ (``mnemos.compare``). Saved as a Markdown report with the
plot as text (``reports/``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable

from mnemos_tui.screens.base import MnemosScreen
from mnemos_tui.widgets.compare_plot import ComparePlot, run_color

AXIS_ORDER = ("step", "tokens", "time")
SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)


class CompareScreen(MnemosScreen):
    SUB_TITLE = "Compare runs"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to Checkpoints"),
        Binding("a", "next_axis", "X axis", tooltip="X axis: step, tokens seen or time"),
        Binding("w", "next_smoothing", "Smoothing", tooltip="Smoothing weight (moving average)"),
        Binding("ctrl+l", "log_scale", "Log scale", tooltip="Log scale on / off"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the comparison as Markdown and a text plot"),
    ]

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths
        self.comparison = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="compare-main"):
            plot = ComparePlot(id="compare-plot", classes="pane")
            plot.border_title = "Loss"
            yield plot
            table = DataTable(id="compare-table", classes="pane", cursor_type="row", zebra_stripes=True)
            table.border_title = "Best validation and what differs"
            yield table

    def on_mount(self) -> None:
        super().on_mount()
        self.load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self) -> None:
        from mnemos.compare import compare_runs

        try:
            comparison = compare_runs(self.paths)
        except Exception as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._loaded, comparison)

    def _failed(self, exc: Exception) -> None:
        self.report(exc, "Cannot compare these runs")
        self.app.pop_screen()

    def _loaded(self, comparison) -> None:
        self.comparison = comparison
        self.query_one(ComparePlot).show(comparison)
        table = self.query_one(DataTable)
        rows = comparison.table()
        table.add_column("")
        for i, name in enumerate(rows[0][1:]):
            table.add_column(Text(name, style=f"bold rgb{run_color(i)}"))
        for row in rows[1:]:
            table.add_row(row[0], *(Text(c, justify="right") for c in row[1:]))
        if not comparison.differing:
            table.border_subtitle = "every hyperparameter the same"
        for note in comparison.notes():
            self.notify(note, severity="warning", timeout=8)
        self.refresh_bindings()

    # -- view options -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_axis", "next_smoothing", "log_scale", "save"):
            return self.comparison is not None or None
        return True

    def _replot(self, **changes) -> None:
        plot = self.query_one(ComparePlot)
        for name, value in changes.items():
            setattr(plot, name, value)
        plot.replot()

    def action_next_axis(self) -> None:
        plot = self.query_one(ComparePlot)
        self._replot(axis=AXIS_ORDER[(AXIS_ORDER.index(plot.axis) + 1) % len(AXIS_ORDER)])

    def action_next_smoothing(self) -> None:
        plot = self.query_one(ComparePlot)
        later = [s for s in SMOOTHING_STEPS if s > plot.smoothing]
        self._replot(smoothing=later[0] if later else SMOOTHING_STEPS[0])

    def action_log_scale(self) -> None:
        self._replot(log_y=not self.query_one(ComparePlot).log_y)

    def action_save(self) -> None:
        """Write the Markdown report (plot included) and the plot alone as text, in reports/."""
        from mnemos.compare import plot_text
        from mnemos.fileio import write_atomic

        plot = self.query_one(ComparePlot)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = self.workspace.root / "reports"
        try:
            text = plot_text(self.comparison, plot.axis, plot.smoothing, plot.log_y)
            report = self.comparison.to_markdown(plot.axis, plot.smoothing, text)
            for suffix, content in ((".md", report), (".txt", text)):
                write_atomic(folder / f"compare-{stamp}{suffix}", lambda f, c=content: f.write(c.encode("utf-8")))
        except Exception as exc:
            self.report(exc, "Cannot save the comparison")
            return
        self.notify(f"Saved {self.workspace.show(folder / f'compare-{stamp}.md')} and the plot as .txt")
