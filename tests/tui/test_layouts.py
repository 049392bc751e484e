"""Train, Datasets and Generate at the standard terminal (80x24) and a large one (120x40):
every part readable (the loss plot has rows, the preset's name is not cut). Snapshots as
in test_snapshots.py; update with ``--snapshot-update`` after a deliberate change."""

from __future__ import annotations

import pytest

from test_snapshots import settle, two_cores  # noqa: F401  (two_cores: an autouse fixture)
from mnemos_tui.app import MnemosApp
from tui_helpers import greedy_reply, make_checkpoint

SIZES = [(80, 24), (120, 40)]


async def small_preset(pilot) -> None:
    """A fixed preset (auto's reasons quote this machine's measured speed)."""
    await settle(pilot)
    pilot.app.screen.query_one("#preset").value = "small"
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_layout(snap_compare, workspace, size):
    assert snap_compare(MnemosApp(root=workspace, start="train"), terminal_size=size, run_before=small_preset)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_datasets_layout(snap_compare, workspace, size):
    assert snap_compare(MnemosApp(root=workspace), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_generate_layout(snap_compare, workspace, size):
    checkpoint = make_checkpoint(workspace)
    assert snap_compare(MnemosApp(root=workspace, checkpoint=checkpoint), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_generate_odds_pane_layout(snap_compare, workspace, size):
    """The odds pane open beside a greedy reply (issue 14.11): the header stays, the
    table's columns are readable (in a narrow pane: token, p and the bar)."""
    make_checkpoint(workspace)

    async def reply_and_odds(pilot):
        await settle(pilot)
        await greedy_reply(pilot, max_new_tokens=12)
        await pilot.press("ctrl+o")
        await settle(pilot)

    assert snap_compare(MnemosApp(root=workspace, checkpoint="checkpoints/demo"), terminal_size=size,
                        run_before=reply_and_odds)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_open_drop_down_layout(snap_compare, workspace, size):
    """The preset drop-down open (issue 14.12): framed, drawn over the form, one line an
    option, not wrapped into the text under it."""
    async def open_presets(pilot):
        await small_preset(pilot)
        pilot.app.screen.set_focus(pilot.app.screen.query_one("#preset"))
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(MnemosApp(root=workspace, start="train"), terminal_size=size, run_before=open_presets)
