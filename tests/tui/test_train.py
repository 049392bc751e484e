"""Train screen: validation as you type, and a real (tiny) run driven by keys: start,
pause, resume, save now, stop; quitting mid-run asks first; resuming a checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mnemos.checkpoint import checkpoint_info, list_checkpoints
from mnemos.config import ModelConfig
from mnemos_tui.app import MnemosApp
from mnemos_tui.widgets.hparam_form import HyperparamForm
from tui_helpers import SIZE, notices, text_of, wait_until

pytestmark = pytest.mark.anyio

TINY = {"n_layer": "1", "n_head": "2", "n_embd": "32", "block_size": "16", "batch_size": "4",
        "tokenizer_vocab": "256", "eval_interval": "25", "eval_steps": "2", "warmup_steps": "5", "workers": "1",
        "time_budget": ""}  # no budget: max-steps decides (with one, max-steps is an estimate, shown "~")


async def fixed_preset(pilot, app) -> None:
    """A preset that is not auto (whose choice arrives later and brings a time budget)."""
    app.screen.query_one("#preset").value = "small"
    await pilot.pause()


async def open_train(pilot, app, **fields) -> None:
    await pilot.press("f3")
    await pilot.pause()
    await fixed_preset(pilot, app)
    for name, value in {**TINY, **fields}.items():
        app.screen.query_one(f"#f-{name}").value = value
    await pilot.pause()


def state(app) -> str:
    return app.session.state


def steps_on_plot(app) -> list[int]:
    return [step for step, _ in app.screen.query_one("#loss-plot").train_points]


async def test_a_bad_hyperparameter_is_explained_next_to_its_field_and_blocks_start(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_train(pilot, app, n_embd="30", n_head="4")
        form = app.screen.query_one("#hparams")
        error = app.screen.query_one("#e-n_embd")
        assert not error.has_class("hidden")
        assert "divisible by n_head" in text_of(error)
        assert app.screen.query_one("#f-n_embd").has_class("-invalid")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.session.state == "idle"
        await wait_until(pilot, lambda: "divisible" in notices(app), "the notification")
        # A word where a number belongs, then fixed: the reason goes away.
        app.screen.query_one("#f-n_embd").value = "32"
        app.screen.query_one("#f-lr").value = "fast"
        await pilot.pause()
        assert "a number" in text_of(app.screen.query_one("#e-lr"))
        assert app.screen.query_one("#e-n_embd").has_class("hidden")
        app.screen.query_one("#f-lr").value = "3e-3"
        await pilot.pause()
        assert form.errors == {}


async def test_parameter_count_follows_the_fields(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app)
        expected = ModelConfig(vocab_size=257, n_layer=1, n_head=2, n_embd=32, block_size=16).num_params()
        assert f"{expected / 1e6:.2f} M" in text_of(app.screen.query_one("#form-summary"))
        app.screen.query_one("#f-n_layer").value = "3"
        await pilot.pause()
        bigger = ModelConfig(vocab_size=257, n_layer=3, n_head=2, n_embd=32, block_size=16).num_params()
        assert f"{bigger / 1e6:.2f} M" in text_of(app.screen.query_one("#form-summary"))


async def test_the_form_shows_the_engines_memory_estimate_and_what_cannot_fit(workspace, monkeypatch):
    from mnemos import memory

    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app)
        form = app.screen.query_one(HyperparamForm)
        model, train = form.configs()
        summary = text_of(app.screen.query_one("#form-summary"))
        assert f"≈ {memory.format_bytes(memory.training_estimate(model, train).total)} memory" in summary
        assert "more than is free" not in summary
        monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)
        app.screen.query_one("#f-block_size").value = "1024"
        await pilot.pause()
        assert "more than is free" in text_of(app.screen.query_one("#form-summary"))


async def test_the_form_defaults_to_the_clis_worker_count(workspace):
    from mnemos.config import default_workers

    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.query_one("#f-workers").value == str(default_workers())


async def test_the_sample_prompt_is_typed_with_escapes_and_reaches_the_run(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app)
        form = app.screen.query_one("#hparams")
        field = app.screen.query_one("#f-sample_prompt")
        assert field.value == "\\n"  # the default prompt, a newline, shown escaped
        field.value = ""
        await pilot.pause()
        assert "required" in text_of(app.screen.query_one("#e-sample_prompt"))
        field.value = "ROMEO:\\n  "
        await pilot.pause()
        assert form.errors == {}
        assert form.configs()[1].sample_prompt == "ROMEO:\n  "


async def test_start_pause_resume_save_stop_by_keys(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: steps_on_plot(app), "the first steps")
        assert state(app) == "running"
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: state(app) == "paused", "the pause")
        step = app.session.trainer.step
        system = app.screen.query_one("#system-row")
        await wait_until(pilot, lambda: "%" in text_of(system), "two samples of the run's CPU use")
        # the pane is narrow at this size: the short words (CPU 12% (1p) · RSS 98 MB · run 0 B)
        assert re.fullmatch(r"CPU \d+% \(1p\) · RSS [\d,.]+ [KMGT]?B · run [\d,.]+ [KMGT]?B\n", text_of(system))
        await pilot.pause(0.3)
        assert app.session.trainer.step == step
        assert app.screen.query_one("#train-stats").values["state"] == "paused"
        await pilot.press("ctrl+s")  # save now, while paused
        out_dir = Path(app.session.trainer.out_dir)
        await wait_until(pilot, lambda: (out_dir / "state.json").is_file(), "the manual checkpoint")
        assert checkpoint_info(out_dir).step == step
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: app.session.trainer.step > step, "training to go on")
        await pilot.press("ctrl+x")  # stopping asks first: no, then yes
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", "the question")
        await pilot.press("escape")
        await pilot.pause()
        assert state(app) == "running"
        await pilot.press("ctrl+x")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", "the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: state(app) == "stopped" and not app.screen.query_one("#hparams").disabled,
                         "the run to stop")
        final = app.session.trainer.step
        assert 0 < final < 100000
        assert checkpoint_info(out_dir).step == final  # stopping saved the last step
        assert app.workspace.checkpoint == out_dir
        plot = app.screen.query_one("#loss-plot")
        assert steps_on_plot(app) == list(range(1, final + 1))  # every step reached the plot
        assert plot.val_points[0][0] == 0  # the untrained baseline evaluation
        stats = app.screen.query_one("#train-stats").values
        assert stats["state"] == "stopped" and stats["eta"] == "-"
        assert not system.display  # the system row is for a live run
        assert app.screen.query_one("#loss-spark").data


async def test_a_run_to_the_end_shows_a_sample_and_the_validation_curve(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="50")
        app.screen.query_one("#run-name").value = "mine"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "finished", "the run to finish")
        assert app.workspace.checkpoint == workspace / "checkpoints" / "mine"
        assert checkpoint_info(workspace / "checkpoints" / "mine").step == 50
        await pilot.pause()
        plot = app.screen.query_one("#loss-plot")
        assert [step for step, _ in plot.val_points] == [0, 25, 50]
        assert "Sample at step 50" in str(app.screen.query_one("#train-sample").border_title)
        assert app.screen.query_one("#train-stats").values["step"] == "50/50"
        await pilot.press("ctrl+l")
        assert plot.log_scale
        # The same name again: the engine refuses to overwrite the run, the app says why.
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "already holds a run" in notices(app),
                         "the refusal")
        assert checkpoint_info(workspace / "checkpoints" / "mine").step == 50


async def test_quit_while_training_asks_and_cancel_keeps_training(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "running", "the run to start")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert type(app.screen).__name__ == "QuitDialog"
        await pilot.press("escape")
        await pilot.pause()
        assert state(app) == "running"
        await pilot.press("ctrl+q")
        await pilot.pause()
        out_dir = Path(app.session.trainer.out_dir)
        await pilot.press("s")  # save and quit
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
    assert app.session.state == "stopped" and app.session.trainer.state == "done"
    assert checkpoint_info(out_dir).step == app.session.trainer.step


async def test_quit_without_saving_leaves_no_checkpoint(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "running", "the run to start")
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("q")  # quit without saving
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
    assert list_checkpoints(workspace / "checkpoints") == []


@pytest.fixture
def trained(workspace) -> Path:
    """A run of 10 steps made by the engine itself (a checkpoint that can be resumed)."""
    from mnemos.config import TrainConfig
    from mnemos.trainer import Trainer

    out = workspace / "checkpoints" / "ten"
    Trainer.new(ModelConfig(vocab_size=257, n_layer=1, n_head=2, n_embd=32, block_size=16),
                TrainConfig(tokenizer_vocab=256, batch_size=4, max_steps=10, eval_interval=5, eval_steps=2,
                            warmup_steps=2),
                "data/training/train.txt", out_dir=out).run()
    return out


async def choose_run(pilot, app, run: Path) -> None:
    """Train screen, "start from" set to ``run`` (the form then shows its settings)."""
    await pilot.press("f3")
    await pilot.pause()
    await fixed_preset(pilot, app)
    app.screen.query_one("#start-from").value = str(run.resolve())
    await pilot.pause()


async def test_resume_from_a_checkpoint_continues_its_steps_and_shows_its_history(workspace, trained):
    checkpoint = trained
    app = MnemosApp(root=workspace)
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await choose_run(pilot, app, checkpoint)
        assert app.screen.query_one("#f-n_embd").disabled  # the shape comes from the checkpoint
        assert app.screen.query_one("#f-n_embd").value == "32"
        # The run is finished (10 of 10): the app says what to do, in its own words.
        await pilot.press("ctrl+r")
        await pilot.pause()
        await wait_until(pilot, lambda: "already at step 10" in notices(app), "the notification")
        said = notices(app).replace("\n", " ")
        assert "already at step 10" in said and "raise max-steps above 10" in said and "--" not in said
        assert state(app) == "idle" and app.focused is app.screen.query_one("#f-max_steps")
        app.screen.query_one("#f-max_steps").value = "20"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "finished", "the resumed run to finish")
        assert steps_on_plot(app) == list(range(1, 21))  # the saved history, then the new steps
        val_steps = [step for step, _ in app.screen.query_one("#loss-plot").val_points]
        assert val_steps == [0, 5, 10, 15, 20]
        stats = app.screen.query_one("#train-stats").values
        assert stats["step"] == "20/20" and stats["best_val_loss"] != "-"
        assert float(stats["best_val_loss"]) <= float(stats["val_loss"])
        assert checkpoint_info(checkpoint).step == 20
        assert checkpoint_info(checkpoint).max_steps == 20


async def test_a_resumed_run_shows_its_history_and_progress_before_the_first_new_step(workspace, trained):
    from mnemos.checkpoint import read_metrics

    rows = read_metrics(trained)  # what the run logged before it is resumed
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await choose_run(pilot, app, trained)
        app.screen.query_one("#f-max_steps").value = "100000"
        await pilot.pause()
        await pilot.press("ctrl+b")  # nothing to pause yet: nothing happens
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: steps_on_plot(app), "the history")
        app.session.pause()
        await wait_until(pilot, lambda: state(app) == "paused", "the pause")
        assert steps_on_plot(app)[:10] == [r["step"] for r in rows if r["event"] == "step"]
        best = min(r["val_loss"] for r in rows if r["event"] == "eval")
        stats = app.screen.query_one("#train-stats").values
        assert float(stats["best_val_loss"]) <= round(best, 4)
        bar = app.screen.query_one("#train-bar")
        assert bar.total == 100000 and bar.progress >= 10
        app.session.stop()
        await wait_until(pilot, lambda: state(app) == "stopped", "the stop")


def test_engine_messages_name_the_forms_fields_not_flags():
    from mnemos_tui.session import app_words

    assert app_words("shorter than one context window; use a smaller --block-size") == \
        "shorter than one context window; use a smaller block-size"
    assert app_words("choose another --out, or pass a larger --max-steps") == \
        "choose another run name, or pass a larger max-steps"


async def test_device_cuda_without_cupy_is_a_notification_and_no_run(workspace, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    app = MnemosApp(root=workspace)
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_train(pilot, app, device="cuda")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "needs CuPy" in notices(app),
                         "the device error")
        await wait_until(pilot, lambda: not app.screen.running, "the form to come back")
        assert not app.screen.query_one("#hparams").disabled
        assert not (workspace / "checkpoints").exists() or not list_checkpoints(workspace / "checkpoints")


async def test_a_run_on_the_device_in_the_app(workspace, simulated_gpu):
    """The app's GPU path end to end, with tests/cuda_sim.py standing in for CuPy and a GPU."""
    from mnemos.checkpoint import load_checkpoint

    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, device="cuda", max_steps="4", eval_interval="2")
        app.screen.query_one("#run-name").value = "on-gpu"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "finished", "the run to finish")
        assert app.session.trainer.model.xp is simulated_gpu
    ckpt = load_checkpoint(workspace / "checkpoints" / "on-gpu")
    assert ckpt.state["step"] == 4 and ckpt.train_config.device == "cuda"


def plot_text(plot) -> str:
    """What the loss plot shows, as plain text (a fresh draw, as a repaint makes)."""
    return plot.render().plain


async def test_log_scale_survives_any_number_of_redraws_and_screen_switches(workspace):
    """Issue 14, finding 1: log scale on, then redraws with no new points (help open and
    closed, another screen and back, a resize) took the log of the log inside plotext and
    killed the app. Losses below 1 make the second log negative, the third impossible."""
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        plot = app.screen.query_one("#loss-plot")
        plot.add_train(list(range(1, 41)), [5.0 * 0.9 ** i for i in range(40)])  # 5.0 down to 0.07
        plot.add_val(0, 5.5)
        plot.add_val(40, 0.09)
        await pilot.press("ctrl+l")
        await pilot.pause()
        for keys in (["f1", "escape"], ["f2", "f3"], ["f1", "g", "escape", "escape"]):
            for _ in range(3):
                assert "loss (log scale)" in plot_text(plot)
            await pilot.press(*keys)
            await pilot.pause()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        text = plot_text(plot)
        assert "loss (log scale)" in text and "cannot be drawn" not in text
        assert app.is_running and app.return_code is None
        assert plot.train_points[-1] == (40, 5.0 * 0.9 ** 39)  # the stored points are untouched


async def test_a_widget_that_fails_to_draw_is_hidden_and_the_run_goes_on(workspace, monkeypatch):
    from mnemos_tui.widgets.train_stats import TrainStats

    def broken(self):
        raise RuntimeError("cannot draw")

    app = MnemosApp(root=workspace)
    app.strict_errors = False  # as in a terminal: errors are shown, not raised
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "running", "the run to start")
        monkeypatch.setattr(TrainStats, "render", broken)
        app.screen.query_one(TrainStats).refresh()
        await wait_until(pilot, lambda: "cannot draw" in notices(app),
                         "the error to be shown")
        assert not app.screen.query_one(TrainStats).display
        step = app.session.trainer.step
        await wait_until(pilot, lambda: app.session.trainer.step > step + 2, "training to go on")
        assert app.is_running and state(app) == "running"


async def test_an_unexpected_error_while_training_saves_the_run_and_is_shown(workspace, monkeypatch):
    from mnemos_tui.screens.train import TrainScreen

    def broken(self, event):
        raise RuntimeError("broken step display")

    app = MnemosApp(root=workspace)
    app.strict_errors = False
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "running", "the run to start")
        monkeypatch.setattr(TrainScreen, "_show_step", broken)
        await wait_until(pilot, lambda: "broken step display" in notices(app),
                         "the error to be shown")
        out_dir = Path(app.session.trainer.out_dir)
        await wait_until(pilot, lambda: (out_dir / "state.json").is_file(), "the checkpoint")
        step = checkpoint_info(out_dir).step
        assert step > 0
        await wait_until(pilot, lambda: app.session.trainer.step > step + 2, "training to go on")
        assert app.is_running and app.session.trainer.state == "running"


async def test_a_time_budget_in_the_form_reaches_the_run_and_its_progress(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="", time_budget="", eval_interval="2")
        form = app.screen.query_one("#hparams")
        assert "required without a time budget" in text_of(app.screen.query_one("#e-max_steps"))
        app.screen.query_one("#f-time_budget").value = "-5m"
        await pilot.pause()
        assert "more than 0 seconds" in text_of(app.screen.query_one("#e-time_budget"))
        app.screen.query_one("#f-time_budget").value = "5m"
        app.screen.query_one("#f-max_steps").value = "4"  # whichever ends first: these steps, long before 5 min
        app.screen.query_one("#f-optimizer").value = "lion"
        await pilot.pause()
        assert "optimizer must be 'adamw' or 'muon' or 'sgd'" in text_of(app.screen.query_one("#e-optimizer"))
        app.screen.query_one("#f-optimizer").value = "muon"
        await pilot.pause()
        assert form.errors == {} and form.configs()[1].time_budget == 300 and form.configs()[1].max_steps == 4
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "finished", "the run to finish")
        await pilot.pause()
        assert "/5:00 left" in text_of(app.screen.query_one("#train-phase"))
        saved = checkpoint_info(app.session.trainer.out_dir).train_config
        assert saved["time_budget"] == 300 and saved["optimizer"] == "muon"
        form.set_values({"time_budget": 90.0, "max_steps": None})
        assert app.screen.query_one("#f-time_budget").value == "90s" and app.screen.query_one("#f-max_steps").value == ""


async def test_auto_is_the_default_and_fills_the_form_for_the_training_file_saying_why(workspace):
    from mnemos.autosize import plan
    from mnemos.calibrate import Calibration
    from mnemos_tui.widgets.auto_plan import AutoPlan

    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        form = app.screen.query_one(HyperparamForm)
        assert form.preset == "auto"
        reasons = app.screen.query_one(AutoPlan)
        await wait_until(pilot, lambda: "vocabulary" in text_of(reasons), "auto's reasons")
        expected = plan(workspace / "data" / "training" / "train.txt", 300, form.value("workers"),
                        calibration=Calibration(workspace / "data" / "training" / ".cache",
                                                workers=form.value("workers")))
        assert text_of(reasons).count("•") == len(expected.reasons)
        assert "5 min" in text_of(reasons)  # the app's default budget
        model, train = form.configs()
        assert (model.n_layer, model.n_embd, model.dropout) == (expected.model["n_layer"], expected.model["n_embd"],
                                                                expected.model["dropout"])
        assert train.tokenizer_vocab == expected.train["tokenizer_vocab"] and train.time_budget == 300
        # another budget: auto chooses again for it
        app.screen.query_one("#f-time_budget").value = "90s"
        await wait_until(pilot, lambda: "1.5 min" in text_of(reasons), "auto's reasons for 90 s")
        await pilot.pause()
        assert form.configs()[1].time_budget == 90
        # a person's edit is never overwritten by a choice that arrives later
        app.screen.query_one("#f-n_layer").value = "3"
        await pilot.pause()
        app.screen.plan_auto()
        await wait_until(pilot, lambda: "vocabulary" in text_of(reasons), "auto's reasons again")
        await pilot.pause()
        assert form.value("n_layer") == 3
        # another preset hides the reasons and fills its own values
        form.query_one("#preset").value = "small"
        await pilot.pause()
        assert reasons.has_class("hidden") and form.value("n_layer") == 4


async def test_the_form_chooses_the_architecture_and_the_head(workspace):
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, arch="llama", head="untied", n_layer="2", n_head="4", n_embd="128")
        form = app.screen.query_one(HyperparamForm)
        model, _ = form.configs()
        assert (model.arch, model.tied_head, model.intermediate_size) == ("llama", False, 352)
        summary = text_of(app.screen.query_one("#form-summary"))
        gpt2 = ModelConfig(vocab_size=257, n_layer=2, n_head=4, n_embd=128, block_size=16).num_params()
        assert f"{model.num_params() / 1e6:.2f} M" in summary and f"{gpt2 / 1e6:.2f} M" not in summary
        app.screen.query_one("#f-arch").value = "bert"
        await pilot.pause()
        assert "'gpt2' or 'llama'" in text_of(app.screen.query_one("#e-arch"))


async def test_sigterm_or_sighup_while_training_saves_then_exits(workspace):
    """`kill`, systemd or a closed terminal: the run is saved as with "save and quit"."""
    import signal

    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_train(pilot, app, max_steps="100000", eval_interval="100000")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: state(app) == "running" and app.session.trainer.step > 0, "the run to start")
        out_dir = Path(app.session.trainer.out_dir)
        app.stop_signal(signal.SIGHUP)  # what the handler installed on the event loop calls
        await wait_until(pilot, lambda: not app.is_running, "the app to exit")
    assert app.stopped_by == signal.SIGHUP and app.session.trainer.state == "done"
    assert checkpoint_info(out_dir).step == app.session.trainer.step > 0


def test_after_term_or_hup_a_stuck_shutdown_ends_the_process_once_the_run_is_saved(workspace, monkeypatch):
    """A closed terminal (HUP) left Textual's shutdown waiting forever on its input thread, so
    the app ended the process itself once its run was saved (and not before)."""
    import signal

    import mnemos_tui.app as app_mod

    monkeypatch.setattr(app_mod, "EXIT_GRACE_S", 0.0)
    app = MnemosApp(root=workspace)
    states = iter(["running", "stopping", "stopping", "finished"])

    class Session:
        @property
        def alive(self):
            return next(states) != "finished"

    app.session, exits = Session(), []
    app.hard_exit = exits.append
    app._exit_if_stuck(signal.SIGHUP, poll_s=0.0)
    assert exits == [128 + signal.SIGHUP] and next(states, "done") == "done"  # it waited for every state


@pytest.mark.parametrize("ignored", [False, True])
async def test_the_app_catches_term_and_hup_unless_started_ignoring_them(workspace, ignored):
    """Under `nohup` (HUP ignored) a closed terminal must not end the app and its run; TERM
    and a HUP that is not ignored reach stop_signal through the event loop's handlers."""
    import signal

    saved = {s: signal.signal(s, signal.SIG_IGN if ignored and s == signal.SIGHUP else signal.SIG_DFL)
             for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        app = MnemosApp(root=workspace)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            caught = {s: signal.getsignal(s) not in (signal.SIG_DFL, signal.SIG_IGN)
                      for s in (signal.SIGTERM, signal.SIGHUP)}
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert caught == {signal.SIGTERM: True, signal.SIGHUP: not ignored}
