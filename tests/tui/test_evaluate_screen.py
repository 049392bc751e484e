"""Evaluate screen: the report of a checkpoint on a test file, saving it into the
history, and a bad file explained without leaving the screen."""

from __future__ import annotations

import pytest

from mnemos.evaluate import evaluate_checkpoint
from mnemos_tui.app import MnemosApp
from tui_helpers import SIZE, notices, wait_until

pytestmark = pytest.mark.anyio


def table_rows(table) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_evaluating_shows_the_engine_report_and_saving_adds_it_to_the_history(workspace, checkpoint):
    app = MnemosApp(root=workspace, start="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#eval-data").value == "data/testing/test.txt"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.screen.report_obj is not None, "the report")
        expected = evaluate_checkpoint(checkpoint, data=workspace / "data/testing/test.txt")
        rows = dict(row[:2] for row in table_rows(app.screen.query_one("#eval-report")))
        assert rows["loss (nats/token)"] == f"{expected.loss:.4f}"
        assert rows["perplexity"] == f"{expected.perplexity:,.2f}"
        assert rows["bits per byte"] == f"{expected.bits_per_byte:.4f}"
        assert rows["tokens"] == f"{expected.tokens:,}"
        assert app.screen.query_one("#eval-history").row_count == 0
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert (checkpoint / "eval-report.md").is_file()
        history = table_rows(app.screen.query_one("#eval-history"))
        assert len(history) == 1 and history[0][1] == "test.txt" and history[0][2] == f"{expected.loss:.4f}"


async def test_a_missing_test_file_is_explained_and_the_screen_stays_usable(workspace, checkpoint):
    app = MnemosApp(root=workspace, start="evaluate")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#eval-data").value = "data/testing/nope.txt"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not app.screen.running, "the evaluation to fail")
        await wait_until(pilot, lambda: "no such file" in notices(app), "the notification")
        assert app.screen.report_obj is None
        app.screen.query_one("#eval-data").value = "data/testing/test.txt"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.screen.report_obj is not None, "the report")
