"""Snapshots of every screen at a fixed size, with deterministic content: a workspace
of our own text, a checkpoint saved with fixed seeds and a fixed time, greedy sampling.
Paths are shown relative to the app's root folder, so the temporary folder never shows.
Update with ``pytest tests/tui/test_snapshots.py --snapshot-update`` after a deliberate change."""

from __future__ import annotations

import pytest

from mnemos_tui.app import MnemosApp
from tui_helpers import SIZE, greedy_reply, make_checkpoint, wait_until


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """The Train form's default workers is the machine's core count: fixed at 2 here, so
    the snapshots are the same on every machine."""
    monkeypatch.setattr("mnemos.config.default_workers", lambda: 2)


async def settle(pilot) -> None:
    """Let the short workers (file inspection, checkpoint loading, auto's plan) finish and the screen
    repaint. (Not ``workers.wait_for_complete()``: the directory tree's loader never ends.)"""
    short = lambda: [w for w in pilot.app.workers if w.group in ("inspect", "load", "auto-plan") and not w.is_finished]
    await pilot.pause()
    await wait_until(pilot, lambda: not short(), "file inspection and checkpoint loading")
    for widget in pilot.app.screen.query("*"):  # a cursor stays shown: a busy machine's snapshot could catch it off
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False
    await pilot.pause(0.2)


def test_datasets_screen(snap_compare, workspace):
    assert snap_compare(MnemosApp(root=workspace), terminal_size=SIZE, run_before=settle)


def test_datasets_screen_first_run_80x24(snap_compare, tmp_path):
    assert snap_compare(MnemosApp(root=tmp_path), terminal_size=(80, 24), run_before=settle)


def test_train_screen(snap_compare, workspace):
    assert snap_compare(MnemosApp(root=workspace, start="train"), terminal_size=SIZE, run_before=settle)


def test_train_screen_with_a_bad_hyperparameter(snap_compare, workspace):
    async def bad_field(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#f-n_head").value = "5"
        await pilot.pause()

    assert snap_compare(MnemosApp(root=workspace, start="train"), terminal_size=SIZE, run_before=bad_field)


def test_evaluate_screen(snap_compare, workspace):
    make_checkpoint(workspace)
    assert snap_compare(MnemosApp(root=workspace, start="evaluate"), terminal_size=SIZE, run_before=settle)


def test_generate_screen_with_a_reply_and_token_boundaries(snap_compare, workspace):
    make_checkpoint(workspace)

    async def chat(pilot):
        app = pilot.app
        await wait_until(pilot, lambda: app.screen.loaded is not None, "the checkpoint to load")
        await greedy_reply(pilot, max_new_tokens=40)
        await pilot.press("ctrl+t")
        await pilot.pause()

    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    assert snap_compare(app, terminal_size=SIZE, run_before=chat)


def test_checkpoints_screen(snap_compare, workspace):
    make_checkpoint(workspace)
    assert snap_compare(MnemosApp(root=workspace, start="checkpoints"), terminal_size=SIZE, run_before=settle)


def test_delete_confirmation(snap_compare, workspace):
    make_checkpoint(workspace)
    assert snap_compare(MnemosApp(root=workspace, start="checkpoints"), terminal_size=SIZE,
                        press=["d"], run_before=settle)


def test_help_screen(snap_compare, workspace):
    assert snap_compare(MnemosApp(root=workspace), terminal_size=SIZE, press=["f1"], run_before=settle)
