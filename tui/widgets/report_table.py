"""``ReportTable``: an evaluation report (``mnemos.evaluate.EvalReport``) as a table."""

from __future__ import annotations

from textual.widgets import DataTable


def report_rows(report) -> list[tuple[str, str]]:
    """(measure, value) rows; the unigram baseline is what a model that ignores context scores.
    The method, a sentence, is shown under the table (``#eval-method``), where it wraps."""
    return [
        ("loss (nats/token)", f"{report.loss:.4f}"),
        ("perplexity", f"{report.perplexity:,.2f}"),
        ("bits per byte", f"{report.bits_per_byte:.4f}"),
        ("unigram baseline loss", f"{report.unigram_loss:.4f}"),
        ("unigram bits per byte", f"{report.unigram_bits_per_byte:.4f}"),
        ("tokens", f"{report.tokens:,}"),
        ("bytes", f"{report.bytes:,}"),
        ("time", f"{report.seconds:.1f} s"),
    ]


class ReportTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.show_header = False  # the measures name themselves; the rows fit at 80x24
        self.add_columns("measure", "value")

    def show(self, report) -> None:
        self.clear()
        for row in report_rows(report):
            self.add_row(*row)
