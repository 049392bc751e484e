"""The app shell: first run, screen switching by keys and palette, help, CLI options."""

from __future__ import annotations

import pytest

from mnemos_tui.app import SCREENS, MnemosApp, build_parser

from tui_helpers import SIZE, text_of, wait_until

pytestmark = pytest.mark.anyio


async def test_first_run_in_an_empty_folder_creates_folders_and_says_there_is_no_training_file(tmp_path):
    app = MnemosApp(root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert type(app.screen).__name__ == "DatasetsScreen"
        status = text_of(app.screen.query_one("#datasets-status"))
        assert "No training file yet" in status and "sample corpus" in status
    for folder in ("data/training", "data/testing", "checkpoints"):
        assert (tmp_path / folder).is_dir()


async def test_function_keys_switch_screens_and_each_screen_keeps_its_state(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        for entry in SCREENS:
            await pilot.press(entry.key)
            await pilot.pause()
            assert app.current_mode == entry.mode
        await pilot.press("f3")
        field = app.screen.query_one("#f-max_steps")
        field.value = "1234"
        await pilot.press("f2", "f3")
        assert app.screen.query_one("#f-max_steps").value == "1234"


async def test_command_palette_offers_every_screen(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for entry in SCREENS:
            assert any(entry.title in title for title in titles)
        switch = next(c for c in app.get_system_commands(app.screen) if "Checkpoints" in c.title)
        switch.callback()
        await pilot.pause()
        assert app.current_mode == "checkpoints"


async def test_command_palette_offers_every_action_of_every_screen_and_runs_it_there(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        commands = {command.title: command for command in app.get_system_commands(app.screen)}
        for wanted in ("Train: Start training", "Train: Stop training (asks first; the run is saved)",
                       "Train: Pause or resume training", "Evaluate: Start the evaluation",
                       "Datasets: Fetch the sample corpus (Shakespeare)", "Generate: Save the chat as Markdown",
                       "Checkpoints: Delete the run (asks first)"):
            assert wanted in commands, wanted
        await commands["Train: Loss plot: log scale on / off"].callback()  # from Datasets: Train comes up and does it
        await pilot.pause()
        assert app.current_mode == "train" and app.screen.query_one("#loss-plot").log_scale


async def test_help_lists_the_keys_of_every_screen_and_closes_with_escape(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        shown = "\n".join(text_of(static) for static in app.screen.query("Static"))
        for entry in SCREENS:
            assert entry.title in shown
            for binding in entry.load().BINDINGS:
                if binding.description:  # in the longer words of its tooltip where it has one
                    assert (binding.tooltip or binding.description) in shown
        rows = [line.split() for line in shown.splitlines() if line.strip()]
        assert "Pause or resume training" in shown and sum(row[:1] == ["^b"] for row in rows) == 1  # one row a key
        assert "d / del" in shown  # one row an action
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "DatasetsScreen"


async def test_data_option_opens_train_and_checkpoint_option_opens_generate(workspace, checkpoint):
    app = MnemosApp(root=workspace, data="data/training/train.txt")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.current_mode == "train"
        assert app.workspace.train_file == workspace / "data/training/train.txt"
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.loaded is not None, "the checkpoint to load")
        assert app.current_mode == "generate"
        assert "demo" in text_of(app.screen.query_one("#model-info"))


def test_help_option_describes_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--data FILE" in out and "--checkpoint DIR" in out


async def test_app_quits_at_once_when_nothing_is_training(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


async def test_resize_to_80_columns_marks_the_app_narrow(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert app.has_class("-narrow")
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert not app.has_class("-narrow")
