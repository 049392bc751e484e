"""Train, Datasets and Generate at the standard terminal (80x24) and a large one (120x40):
every part readable (the loss plot has rows, the preset's name is not cut). Snapshots as
in test_snapshots.py; update with ``--snapshot-update`` after a deliberate change."""

from __future__ import annotations

import pytest

from test_snapshots import settle, two_cores  # noqa: F401  (two_cores: an autouse fixture)
from tui.app import MnemosApp
from tui_helpers import make_checkpoint

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
