"""Checkpoints (with the comparison of two marked runs), Evaluate (with a report) and
Inspect at the standard terminal, 80x24, and at 120x40: every pane readable, nothing
clipped that matters. Deterministic content as in test_snapshots.py (runs saved with
fixed seeds, times and loss histories). Update with ``--snapshot-update`` after a
deliberate change, and look at the result."""

from __future__ import annotations

import pytest

from test_checkpoints import with_metrics
from mnemos_tui.app import MnemosApp
from tui_helpers import make_checkpoint, wait_until


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def idle(pilot) -> None:
    """Let every worker but the directory tree's loaders finish, and the screen repaint."""
    busy = lambda: [w for w in pilot.app.workers if not w.is_finished and w.group != "default"]
    await pilot.pause()
    await wait_until(pilot, lambda: not busy(), "the screen's workers")
    await pilot.pause(0.2)


@pytest.fixture
def two_runs(workspace):
    with_metrics(make_checkpoint(workspace, "lr-3e-3"), 2.0)
    with_metrics(make_checkpoint(workspace, "lr-1e-3"), 1.0)
    return workspace


@pytest.mark.parametrize("size", SIZES)
def test_checkpoints_with_a_marked_run(snap_compare, two_runs, size):
    async def mark(pilot):
        await idle(pilot)
        await pilot.press("space")
        await pilot.pause()

    assert snap_compare(MnemosApp(root=two_runs, start="checkpoints"), terminal_size=size, run_before=mark)


@pytest.mark.parametrize("size", SIZES)
def test_comparison_of_two_runs(snap_compare, two_runs, size):
    async def compare(pilot):
        await idle(pilot)
        await pilot.press("space", "space", "x")
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "comparison", None) is not None, "the comparison")
        await idle(pilot)

    assert snap_compare(MnemosApp(root=two_runs, start="checkpoints"), terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", SIZES)
def test_evaluate_with_a_report(snap_compare, workspace, size):
    make_checkpoint(workspace)

    async def evaluate(pilot):
        await idle(pilot)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pilot.app.screen.report_obj is not None, "the report")
        pilot.app.screen.report_obj.seconds = 1.0  # the time taken varies from run to run: fixed here
        pilot.app.screen.query_one("#eval-report").show(pilot.app.screen.report_obj)
        await idle(pilot)

    assert snap_compare(MnemosApp(root=workspace, start="evaluate"), terminal_size=size, run_before=evaluate)


@pytest.mark.parametrize("size", SIZES)
def test_inspect(snap_compare, workspace, size):
    make_checkpoint(workspace)

    async def ready(pilot):
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "ckpt", None) is not None, "the checkpoint")
        await idle(pilot)

    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo", start="inspect")
    assert snap_compare(app, terminal_size=size, run_before=ready)
