"""--time-budget: durations, the steps that fit, and budgeted runs on an injected clock.

The trainer reads time through ``Trainer._clock``; here it is a counter that advances
only where work is simulated (reading the text, each batch, each save), so each test
knows exactly how much "time" everything took and never waits for wall time.
"""

import dataclasses
import json
import re
import threading
import time

import numpy as np
import pytest

from mnemos import budget, cli
from mnemos import data as data_mod
from mnemos import trainer as trainer_mod
from mnemos.budget import parse_duration, steps_that_fit
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import ConfigError
from mnemos.trainer import Trainer

MODEL = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)
TRAIN = TrainConfig(tokenizer_vocab=256, batch_size=4, max_steps=None, time_budget=60.0, warmup_steps=20, lr=3e-3,
                    min_lr=3e-4, eval_interval=25, eval_steps=2, sample_tokens=4, seed=3, workers=1)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    words = "to be or not that is the question whether tis nobler in the mind".split()
    path = tmp_path_factory.mktemp("data") / "train.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 9)) for _ in range(200)) + "\n")
    return path


class FakeClock:
    """Seconds that pass only when the test says work happened."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """Reading the text costs 2 s, every batch (training or evaluation) ``clock.batch_s``,
    a save 0.5 s."""
    c = FakeClock()
    c.batch_s = 0.25
    real_read, real_batch, real_save = data_mod.read_text, data_mod.get_batch, trainer_mod.save_checkpoint

    def read_text(path):
        c.now += 2.0
        return real_read(path)

    def get_batch(*args):
        c.now += c.batch_s
        return real_batch(*args)

    def save(*args, **kw):
        c.now += 0.5
        return real_save(*args, **kw)

    monkeypatch.setattr(data_mod, "read_text", read_text)
    monkeypatch.setattr(data_mod, "get_batch", get_batch)
    monkeypatch.setattr(trainer_mod, "save_checkpoint", save)
    return c


def run(text_file, out, clock, cfg=TRAIN, on_event=None, resume=False, overrides=None, before=0.0):
    events = []

    def callback(e):
        events.append(e)
        if on_event:
            on_event(e, trainer)

    if resume:
        trainer = Trainer.from_checkpoint(out, callback=callback, **(overrides or {}))
    else:
        trainer = Trainer.new(MODEL, cfg, text_file, out_dir=out, callback=callback)
    trainer._clock = clock
    trainer.count_preparation(before)  # e.g. --preset auto's measuring, done before the trainer
    start = clock()
    done = trainer.run()
    return trainer, events, done, clock() - start


@pytest.mark.parametrize("text, seconds", [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("1.5h", 5400),
                                           (" 2M ", 120), ("0.5", 0.5), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5m", "abc", "", "5 minutes", "0s", "1d", "nan", float("inf"), 0, -3])
def test_bad_durations_say_what_is_accepted(text):
    with pytest.raises(ConfigError, match="time budget") as info:
        parse_duration(text)
    assert "\n" not in str(info.value) and ("e.g." in str(info.value))


def test_steps_that_fit_leave_room_for_the_evaluations_and_the_final_save():
    # 100 s left, final eval + save 4 s (5 s set aside), steps of 1 s each carrying 4 s / 10 of the evaluations
    assert budget.FINAL_MARGIN == 1.25
    assert steps_that_fit(0, 0.0, 100.0, 1.0, 3.0, 1.0, 10) == int(95 / 1.4)
    assert steps_that_fit(50, 40.0, 100.0, 1.0, 3.0, 1.0, 10) == 50 + int(55 / 1.4)
    assert steps_that_fit(7, 94.5, 100.0, 1.0, 3.0, 1.0, 10) == 7  # 0.5 s left after the final ones: no step
    assert steps_that_fit(7, 93.5, 100.0, 1.0, 3.0, 1.0, 10) == 8


def test_config_needs_steps_or_a_budget():
    assert TrainConfig(max_steps=None, time_budget=10).max_steps is None
    with pytest.raises(ConfigError, match="max_steps"):
        TrainConfig(max_steps=None)
    for bad in (0, -1.0, float("nan"), "5m"):
        with pytest.raises(ConfigError, match="time_budget"):
            TrainConfig(time_budget=bad)
    assert TrainConfig.from_dict({"max_steps": 5}).time_budget is None  # configs saved before the field


def test_a_budgeted_run_ends_within_its_budget_decayed(text_file, tmp_path, clock):
    trainer, events, done, used = run(text_file, tmp_path / "run", clock)
    steps = [e for e in events if e.kind == "step"]
    assert done.reason == "finished" and done.step == steps[-1].step
    assert 0.95 * 60 <= used <= 60 and abs(done.elapsed_s - used) < 1e-9
    # 2 s reading, evaluations of 4 batches + a save every 25 steps, 0.25 s a step: about 175 steps
    assert 165 <= done.step <= 185, done.step
    assert steps[-1].lr < TRAIN.min_lr + 0.01 * (TRAIN.lr - TRAIN.min_lr)  # decayed, not cut off
    assert max(e.lr for e in steps) > 0.98 * TRAIN.lr  # and it got to the peak first
    assert steps[-1].max_steps == done.step and all(e.time_budget_s == 60 for e in steps)
    assert all(abs(e.budget_left_s - (60 - (e.elapsed_s - 0))) < 1e-6 for e in steps)
    first = [e for e in events if e.kind == "prepare"][0]
    assert first.phase == "budget" and "time budget 1:00, preparation included" in first.message
    assert [e.reason for e in events if e.kind == "checkpoint"][-1] in ("best", "latest")
    assert [e.step for e in events if e.kind == "eval"][-1] == done.step  # a final evaluation and save
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["budget_used_s"] == pytest.approx(used - 0.5, abs=0.01)  # all but the final save itself
    assert state["step_time_s"] == pytest.approx(0.25)


def test_the_horizon_follows_a_machine_that_slows_down(text_file, tmp_path, clock):
    def slow_down(e, trainer):
        if e.kind == "step" and e.step == 60:
            clock.batch_s = 0.75  # three times slower from here on

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, on_event=slow_down)
    steps = [e for e in events if e.kind == "step"]
    assert 0.95 * 60 <= used <= 60
    assert steps[59].max_steps > 160 and done.step < 120  # the plan shrank with the speed
    assert steps[-1].lr < TRAIN.min_lr + 0.05 * (TRAIN.lr - TRAIN.min_lr)


def test_max_steps_and_budget_whichever_ends_first(text_file, tmp_path, clock):
    cfg = dataclasses.replace(TRAIN, max_steps=50)
    trainer, events, done, used = run(text_file, tmp_path / "a", clock, cfg)
    assert done.step == 50 and used < 30  # the steps ended first
    assert [e.lr for e in events if e.kind == "step"][-1] < cfg.min_lr * 1.1
    assert "or 50 steps, whichever ends first" in [e for e in events if e.kind == "prepare"][0].message
    cfg = dataclasses.replace(TRAIN, max_steps=10_000)
    trainer, events, done, used = run(text_file, tmp_path / "b", clock, cfg)
    assert done.step < 200 and 0.95 * 60 <= used <= 60  # the budget ended first


def test_a_budget_too_short_for_one_step_is_one_clear_error(text_file, tmp_path, clock):
    cfg = dataclasses.replace(TRAIN, time_budget=2.5)
    trainer, events, done, used = run(text_file, tmp_path / "run", clock, cfg)
    assert done.reason == "error" and done.step == 0
    message = [e for e in events if e.kind == "error"][0].message
    assert "time budget of 2.5 s is too short" in message and "give at least" in message and "\n" not in message
    assert not (tmp_path / "run" / "config.json").exists()
    suggested = float(re.search(r"give at least (\d+)s", message).group(1))
    for budget, reason in ((suggested, "finished"), (suggested - 2, "error")):  # the suggestion is what one step needs
        cfg = dataclasses.replace(TRAIN, time_budget=budget)
        assert run(text_file, tmp_path / f"run{budget:g}", clock, cfg)[2].reason == reason, budget


def test_preparation_before_the_trainer_counts_against_the_budget(text_file, tmp_path, clock):
    trainer, events, done, used = run(text_file, tmp_path / "run", clock, before=15.0)
    assert done.reason == "finished" and 0.95 * 45 <= used <= 45  # 15 of the 60 s were spent before run()
    assert 120 <= done.step <= 140, done.step  # three quarters of the steps of a whole budget (~175)
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].lr < TRAIN.min_lr + 0.01 * (TRAIN.lr - TRAIN.min_lr)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["budget_used_s"] > 15 + used - 1


def test_a_budget_spent_in_preparation_stops_it_at_once(text_file, tmp_path, clock):
    cfg = dataclasses.replace(TRAIN, time_budget=20.0, tokenizer_vocab=300)
    tokenizer_progress = []

    def on_event(e, trainer):
        if e.kind == "prepare" and e.phase == "tokenizer" and e.total > 1:
            tokenizer_progress.append(e)

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, cfg, on_event=on_event, before=25.0)
    message = [e for e in events if e.kind == "error"][0].message
    assert done.reason == "error" and "time budget of 20 s is too short" in message and "(measuring)" in message
    assert used == 0 and not tokenizer_progress  # refused before reading the text or learning a tokenizer
    assert not (tmp_path / "run").exists()


def test_a_resumed_budgeted_run_keeps_its_schedule(text_file, tmp_path, clock):
    def stop_at_60(e, trainer):
        if e.kind == "step" and e.step == 60:
            trainer.stop()

    _, first, done, used_1 = run(text_file, tmp_path / "run", clock, on_event=stop_at_60)
    assert done.step == 60 and done.reason == "stopped"
    planned = [e.max_steps for e in first if e.kind == "step"][-1]
    _, second, done, used_2 = run(text_file, tmp_path / "run", clock, resume=True)
    steps = [e for e in second if e.kind == "step"]
    assert steps[0].step == 61 and abs(steps[0].max_steps - planned) <= 10  # the same plan, give or take prep
    assert steps[0].lr < TRAIN.lr  # past the warmup: not restarted
    assert 0.95 * 60 <= used_1 + used_2 <= 60 + 0.5  # one budget for both sessions (+ the stop's save)
    assert steps[-1].lr < TRAIN.min_lr + 0.01 * (TRAIN.lr - TRAIN.min_lr)
    with pytest.raises(ConfigError, match="used its time budget"):
        Trainer.from_checkpoint(tmp_path / "run")
    assert Trainer.from_checkpoint(tmp_path / "run", time_budget=90.0).train_cfg.time_budget == 90.0


def test_pauses_do_not_spend_the_budget(text_file, tmp_path, clock):
    def lunch(trainer):
        while trainer.state != "paused":
            time.sleep(0.001)
        clock.now += 1800  # half an hour passes while paused
        trainer.unpause()

    def pause_at_30(e, trainer):
        if e.kind == "step" and e.step == 30:
            trainer.pause()
            threading.Thread(target=lunch, args=(trainer,)).start()

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, on_event=pause_at_30)
    assert 165 <= done.step <= 185 and 0.95 * 60 <= used - 1800 <= 60


def test_cli_budget_flags(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 200)
    for bad in ("0", "-5m", "abc"):
        assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--time-budget", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "time budget" in err
    assert not (tmp_path / "r").exists()
    args = cli.build_parser().parse_args(["train", "--time-budget", "5m"])
    model, train = cli.train_configs(args)
    assert train.time_budget == 300 and train.max_steps is None
    args = cli.build_parser().parse_args(["train", "--time-budget", "90s", "--max-steps", "7"])
    assert cli.train_configs(args)[1].max_steps == 7


def test_cli_progress_line_shows_the_budget(capsys):
    from mnemos.events import StepEvent

    printer = cli.ProgressPrinter(json_mode=False, every=1)
    printer(StepEvent(10, 400, 2.5, 1e-3, 0.5, 1000.0, 12.0, 40.0, 640, time_budget_s=60.0, budget_left_s=48.0))
    assert "step     10/~400 |" in capsys.readouterr().out
    printer = cli.ProgressPrinter(json_mode=True)
    printer(StepEvent(10, 400, 2.5, 1e-3, 0.5, 1000.0, 12.0, 40.0, 640, time_budget_s=60.0, budget_left_s=48.0))
    row = json.loads(capsys.readouterr().out)
    assert row["time_budget_s"] == 60.0 and row["budget_left_s"] == 48.0 and row["max_steps"] == 400


def test_format_duration():
    assert budget.format_duration(59.6) == "0:59" and budget.format_duration(3725) == "1:02:05"


def test_a_final_evaluation_far_slower_than_measured_is_cut_short_not_the_budget(text_file, tmp_path, clock):
    def slow_at_the_end(e, trainer):
        if e.kind == "step" and e.step == e.max_steps:
            clock.batch_s = 1.0  # the final evaluation's batches: four times the planned

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, on_event=slow_at_the_end)
    final = [e for e in events if e.kind == "eval"][-1]
    assert final.step == done.step and (tmp_path / "run" / "state.json").is_file()
    assert used <= 60 + 2 * 1.0  # at most one batch each for the train and the validation loss past it
    assert final.induction_head is None  # the probe was left out, and fewer loss batches taken


def test_an_evaluation_far_slower_than_measured_does_not_cut_the_schedule(text_file, tmp_path, clock):
    def one_slow_evaluation(e, trainer):
        if e.kind == "step" and e.step == 150:
            clock.batch_s = 3.0  # the evaluation at step 150: twelve times its estimate per batch
        if e.kind == "eval" and e.step == 150:
            clock.batch_s = 0.25

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, on_event=one_slow_evaluation)
    steps = [e for e in events if e.kind == "step"]
    assert 0.95 * 60 <= used <= 60 and done.step > 150
    assert steps[-1].lr < TRAIN.min_lr + 0.01 * (TRAIN.lr - TRAIN.min_lr)  # still decayed


@pytest.mark.parametrize("at_step, factor", [(150, 3.0), (165, 4.0), (170, 2.0)])
def test_a_slow_down_in_the_last_steps_still_ends_decayed(text_file, tmp_path, clock, at_step, factor):
    """The seconds per step follow a slow-down within two steps (the median of the last
    three, when higher than that of the last 21): the horizon shrinks at once, the final
    evaluation is set aside at the new speed, and the last step is still near min_lr."""
    def slow_down(e, trainer):
        if e.kind == "step" and e.step == at_step:
            clock.batch_s = 0.25 * factor

    trainer, events, done, used = run(text_file, tmp_path / "run", clock, on_event=slow_down)
    steps = [e for e in events if e.kind == "step"]
    # the step that slowed down was planned at the old speed: at most its own excess over (0.75 s of 60)
    assert done.reason == "finished" and 0.95 * 60 <= used <= 60 + 0.25 * (factor - 1)
    assert steps[-1].lr < TRAIN.min_lr + 0.05 * (TRAIN.lr - TRAIN.min_lr), [(e.step, e.lr) for e in steps[-5:]]
