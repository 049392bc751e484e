"""``ReportTable``: an evaluation report (``mnemos.evaluate.EvalReport.rows()``) as a table."""

from __future__ import annotations

from textual.widgets import DataTable


class ReportTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.show_header = False  # the measures name themselves; the rows fit at 80x24
        self.add_columns("measure", "value")

    def show(self, report) -> None:
        self.clear()
        for row in report.rows():
            self.add_row(*row)
