"""Checkpoints → i: import a Hugging Face GPT-2 folder as a run, or get one clear line."""

from __future__ import annotations

import pytest

from mnemos_tui.app import MnemosApp
from tui_helpers import SIZE, notices, wait_until

pytestmark = pytest.mark.anyio


async def _import(pilot, app, src: str, out: str = "") -> None:
    await pilot.press("i")
    await wait_until(pilot, lambda: type(app.screen).__name__ == "ImportDialog", "the import dialog")
    app.screen.query_one("#import-from").value = src
    app.screen.query_one("#import-out").value = out
    await pilot.click("#import")


async def test_import_a_hugging_face_folder_from_checkpoints(workspace, hf_gpt2_dir):
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        await _import(pilot, app, str(hf_gpt2_dir))
        table = app.screen.query_one("#checkpoint-table")
        await wait_until(pilot, lambda: table.row_count == 1, "the imported run in the list")
        assert str(table.get_row_at(0)[1]) == "gpt2"  # column 0 holds the compare mark
        assert (workspace / "checkpoints" / "gpt2" / "model.npz").is_file()
        await wait_until(pilot, lambda: "saved as" in notices(app), "the notification")


async def test_a_bad_folder_is_one_notification_and_the_app_stays(workspace, tmp_path):
    app = MnemosApp(root=workspace, start="checkpoints")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        await _import(pilot, app, str(tmp_path / "nothing-here"))
        await wait_until(pilot, lambda: "is not a folder" in notices(app), "the error")
        assert type(app.screen).__name__ == "CheckpointsScreen"
        assert not (workspace / "checkpoints" / "nothing-here").exists()
