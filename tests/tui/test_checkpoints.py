"""Checkpoints screen: the list, details, delete only after a confirmation, open in Generate."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from mnemos_tui.app import MnemosApp
from tui_helpers import FIXED_TIME, SIZE, make_checkpoint, notices, text_of, wait_until

pytestmark = pytest.mark.anyio


async def test_list_details_and_delete_with_confirmation(workspace):
    make_checkpoint(workspace, "alpha", step=7)
    make_checkpoint(workspace, "beta", step=9)
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#checkpoint-table")
        assert sorted(str(table.get_row_at(i)[1]) for i in range(table.row_count)) == ["alpha", "beta"]
        name = str(table.get_row_at(table.cursor_row)[1])
        details = text_of(app.screen.query_one("#details-text"))
        assert f"checkpoints/{name}" in details and "n_embd" in details
        assert re.search(r'sample_prompt +"\\n" *\n', details)  # the newline written as \n, not a line break
        await pilot.press("d")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause()
        assert (workspace / "checkpoints" / name).is_dir()
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not (workspace / "checkpoints" / name).exists()
        assert table.row_count == 1


async def test_c_opens_the_highlighted_checkpoint_in_generate(workspace, checkpoint):
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await wait_until(pilot, lambda: app.current_mode == "generate" and app.screen.loaded is not None,
                         "Generate with the checkpoint")
        assert app.screen.loaded[0] == checkpoint.resolve()


def with_metrics(path, lr_scale: float):
    """Give a saved checkpoint a loss history of our own (a curve that falls at lr_scale)."""
    rows = [{"event": "eval", "step": 0, "train_loss": 5.6, "val_loss": 5.6, "elapsed_s": 0.0}]
    rows += [{"event": "step", "step": s, "loss": 5.5 * math.exp(-lr_scale * s / 40), "tokens_seen": 128 * s,
              "elapsed_s": 0.1 * s} for s in range(1, 41)]
    rows += [{"event": "eval", "step": s, "train_loss": 5.0 * math.exp(-lr_scale * s / 40),
              "val_loss": 5.2 * math.exp(-lr_scale * s / 40), "elapsed_s": 0.1 * s} for s in (20, 40)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "step": 40, "tokens_seen": 5120, "elapsed_s": 4.0}))
    for file in [path, *path.rglob("*")]:
        os.utime(file, (FIXED_TIME, FIXED_TIME))
    return path


def row_keys(table) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


async def test_the_highlighted_run_is_kept_when_you_come_back(workspace):
    for name in ("alpha", "beta", "gamma"):
        make_checkpoint(workspace, name)
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#checkpoint-table")
        await pilot.press("down", "down")
        chosen = row_keys(table)[2]
        await pilot.press("f4")
        await wait_until(pilot, lambda: app.current_mode == "evaluate", "Evaluate")
        await pilot.press("f6")
        await wait_until(pilot, lambda: app.current_mode == "checkpoints", "Checkpoints again")
        await pilot.pause()
        assert table.cursor_row == 2 and row_keys(table)[2] == chosen
        assert f"checkpoints/{Path(chosen).name}" in text_of(app.screen.query_one("#details-text"))


async def test_v_opens_evaluate_and_evaluates_the_highlighted_run(workspace):
    make_checkpoint(workspace, "alpha")
    beta = make_checkpoint(workspace, "beta")
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#checkpoint-table")
        await pilot.press(*["down"] * row_keys(table).index(str(beta.resolve())))
        await pilot.press("v")
        await wait_until(pilot, lambda: app.current_mode == "evaluate" and app.screen.report_obj is not None,
                         "the evaluation started by v")
        assert Path(app.screen.report_obj.checkpoint).resolve() == beta.resolve()
        assert app.screen.query_one("#eval-checkpoint").value == str(beta.resolve())


async def test_the_training_run_is_marked_and_deleting_it_is_refused_before_asking(workspace):
    busy = make_checkpoint(workspace, "busy")
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await pilot.pause()
        app.session.state, app.session.run_dir = "running", busy  # what the session knows of a run in progress
        await pilot.press("r")
        table = app.screen.query_one("#checkpoint-table")
        assert str(table.get_row_at(0)[1]) == "busy ● training"
        await pilot.press("d")
        await pilot.pause()
        assert type(app.screen).__name__ == "CheckpointsScreen"  # no question asked
        await wait_until(pilot, lambda: "training right now" in notices(app), "the notification")
        assert busy.is_dir()
        app.session.state = "stopped"
        await pilot.press("r", "d")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"


async def test_a_run_training_in_another_process_shows_who_and_is_not_deleted(workspace):
    import socket

    from mnemos.runlock import RunLock

    busy = make_checkpoint(workspace, "busy")
    app = MnemosApp(root=workspace, start="checkpoints")
    with RunLock(busy):  # as `mnemos train --out checkpoints/busy` holds it (another open file: another holder)
        async with app.run_test(notifications=True, size=SIZE) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#checkpoint-table")
            assert str(table.get_row_at(0)[1]) == "busy ● training elsewhere"
            details = text_of(app.screen.query_one("#details-text"))
            assert f"in another process: pid {os.getpid()} on {socket.gethostname()}" in details
            await pilot.press("d")
            await pilot.pause()
            assert type(app.screen).__name__ == "CheckpointsScreen"  # refused before asking
            await wait_until(pilot, lambda: "training in another process" in notices(app), "the notification")
            assert busy.is_dir()
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:  # the lock released: an ordinary run again
        await pilot.pause()
        assert str(app.screen.query_one("#checkpoint-table").get_row_at(0)[1]) == "busy"


async def test_an_imported_model_says_where_it_came_from_not_step_0_of_a_plan(workspace):
    run = make_checkpoint(workspace, "gpt2-small")
    state = json.loads((run / "state.json").read_text())  # the two keys `mnemos import` writes
    state.update(imported_from="/models/gpt2", imported_model_type="gpt2")
    (run / "state.json").write_text(json.dumps(state))
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#checkpoint-table")
        assert str(table.get_row_at(0)[2]) == "imported"
        details = text_of(app.screen.query_one("#details-text"))
        assert re.search(r"imported from +/models/gpt2 \(gpt2\)", details)
        assert " of 50" not in details and "max_steps" not in details and "n_embd" in details


async def test_marked_runs_open_a_comparison_with_its_options_and_report(workspace):
    from mnemos.compare import compare_runs

    alpha = with_metrics(make_checkpoint(workspace, "alpha"), 1.0)
    beta = with_metrics(make_checkpoint(workspace, "beta"), 2.0)
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("x")  # nothing marked yet
        await pilot.pause()
        assert type(app.screen).__name__ == "CheckpointsScreen"
        await wait_until(pilot, lambda: "Mark two or more" in notices(app), "the notification")
        table = app.screen.query_one("#checkpoint-table")
        await pilot.press("space", "space")
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["✓", "✓"]
        await pilot.press("x")
        await wait_until(pilot, lambda: getattr(app.screen, "comparison", None) is not None, "the comparison")
        screen = app.screen
        order = [Path(k) for k in row_keys(table)]
        want = compare_runs(order).table()
        shown = screen.query_one("#compare-table")
        assert [str(c.label) for c in shown.columns.values()][1:] == want[0][1:]
        rows = {str(shown.get_row_at(i)[0]): [str(c) for c in shown.get_row_at(i)[1:]] for i in range(shown.row_count)}
        assert rows["best val bpb"] == want[1][1:] and rows["best val bpb"][0] != "-"
        plot = screen.query_one("#compare-plot")
        assert (plot.axis, plot.smoothing, plot.log_y) == ("step", 0.6, True)
        await pilot.press("a", "w", "ctrl+l")
        assert (plot.axis, plot.smoothing, plot.log_y) == ("tokens", 0.9, False)
        await pilot.press("l")
        assert str(plot.render()) == str(plot.render())  # a repaint of a log plot draws the same
        await pilot.press("ctrl+s")
        await pilot.pause()
        reports = sorted((workspace / "reports").glob("compare-*"))
        assert [p.suffix for p in reports] == [".md", ".txt"]
        assert "| best val bpb |" in reports[0].read_text() and "tokens seen" in reports[1].read_text()
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "CheckpointsScreen"
        assert alpha.is_dir() and beta.is_dir()


async def test_a_run_without_metrics_is_a_notification_not_a_comparison(workspace):
    with_metrics(make_checkpoint(workspace, "alpha"), 1.0)
    make_checkpoint(workspace, "empty")  # saved, never trained: no metrics.jsonl
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("space", "space", "x")
        await wait_until(pilot, lambda: "no logged steps" in notices(app),
                         "the error")
        await pilot.pause()
        assert type(app.screen).__name__ == "CheckpointsScreen"
