"""Checkpoints screen: the list, details, delete only after a confirmation, open in Generate."""

from __future__ import annotations

import pytest

from tui.app import MnemosApp
from tui_helpers import SIZE, make_checkpoint, text_of, wait_until

pytestmark = pytest.mark.anyio


async def test_list_details_and_delete_with_confirmation(workspace):
    make_checkpoint(workspace, "alpha", step=7)
    make_checkpoint(workspace, "beta", step=9)
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#checkpoint-table")
        assert sorted(str(table.get_row_at(i)[0]) for i in range(table.row_count)) == ["alpha", "beta"]
        name = str(table.get_row_at(table.cursor_row)[0])
        details = text_of(app.screen.query_one("#details-text"))
        assert f"checkpoints/{name}" in details and "n_embd" in details
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
