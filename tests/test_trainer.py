"""mnemos.trainer: events, exact resume, controls from another thread, errors."""

import threading

import numpy as np
import pytest

from mnemos.checkpoint import load_checkpoint, read_metrics
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError, ConfigError, MnemosError
from mnemos.trainer import Trainer

WORDS = ("the king is dead long live the queen and all her men ride to the sea at dawn "
         "where ships wait in grey light while birds cry over stone walls").split()
MODEL = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.1)
TRAIN = TrainConfig(tokenizer_vocab=256, batch_size=4, grad_accum=2, max_steps=40, warmup_steps=5, lr=3e-3, min_lr=3e-4,
                    eval_interval=10, eval_steps=2, sample_tokens=8, seed=7)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) + "." for _ in range(300)]
    path = tmp_path_factory.mktemp("data") / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Recorder:
    def __init__(self, on_event=None):
        self.events, self.on_event = [], on_event

    def __call__(self, event):
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    def of(self, kind):
        return [e for e in self.events if e.kind == kind]


def train(text_file, out, train_cfg=TRAIN, model_cfg=MODEL, **kw):
    rec = kw.pop("recorder", None) or Recorder()
    trainer = Trainer.new(model_cfg, train_cfg, text_file, out_dir=out, callback=rec, **kw)
    done = trainer.run()
    return trainer, rec, done


def test_a_run_reports_learns_and_saves(text_file, tmp_path):
    trainer, rec, done = train(text_file, tmp_path / "run")
    kinds = [e.kind for e in rec.events]
    assert kinds[0] == "state" and "prepare" in kinds and kinds[-1] == "done"
    assert done.reason == "finished" and done.step == 40 and done.checkpoint == str(tmp_path / "run")
    assert [e.step for e in rec.of("step")] == list(range(1, 41))
    evals = rec.of("eval")
    assert [e.step for e in evals] == [0, 10, 20, 30, 40]
    assert evals[-1].val_loss < evals[0].val_loss - 0.5  # it learned something
    assert [e.step for e in rec.of("sample")] == [0, 10, 20, 30, 40]
    assert all(e.prompt == "\n" and isinstance(e.text, str) for e in rec.of("sample"))
    assert [e.step for e in rec.of("checkpoint")] == [10, 20, 30, 40]
    assert any("last 10% of the training tokens" in e.message for e in rec.of("prepare"))
    assert [e.message for e in rec.of("prepare") if e.phase == "tokenizer" and e.message] == [
        "tokenizer: byte level, one token per byte (no merges to learn)"]
    assert all(e.tokens_per_s > 0 and e.eta_s >= 0 for e in rec.of("step"))
    best = min(evals[1:], key=lambda e: e.val_loss)
    assert done.best_val_loss == best.val_loss
    assert load_checkpoint(tmp_path / "run" / "best").state["step"] == best.step
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows if r["event"] == "step"] == list(range(1, 41))
    assert [r["step"] for r in rows if r["event"] == "sample"] == [0, 10, 20, 30, 40]
    assert trainer.state == "done" and trainer.model_cfg.vocab_size == 257


def test_bpe_vocabulary_and_validation_file(text_file, tmp_path):
    val = tmp_path / "val.txt"
    val.write_text(text_file.read_text()[:3000])
    cfg = TrainConfig(**{**TRAIN.to_dict(), "tokenizer_vocab": 280, "max_steps": 4, "eval_interval": 2})
    trainer, rec, done = train(text_file, tmp_path / "run", cfg, val_data=val)
    assert done.reason == "finished"
    assert trainer.tokenizer.vocab_size == 281 and trainer.model_cfg.vocab_size == 281
    assert any(e.phase == "tokenizer" and e.total > 0 and not e.message for e in rec.of("prepare"))
    assert any(f"validation: {val}" in e.message for e in rec.of("prepare"))
    assert load_checkpoint(tmp_path / "run").tokenizer == trainer.tokenizer
    messages = [e.message for e in rec.of("prepare") if e.phase == "tokenizer" and e.message]
    assert messages == [f"tokenizer: learning 280 tokens from {text_file} ({len(text_file.read_text()):,} characters; "
                        "reused from the cache if trained before)"]  # all 280: no shortfall to report


def test_a_text_with_fewer_merges_than_asked_says_so(text_file, tmp_path):
    """The vocabulary asked for is a ceiling: a text runs out of pairs to merge (here its
    ~30 distinct words make far fewer than 1024 - 256 merges), and the run says how many it got."""
    cfg = TrainConfig(**{**TRAIN.to_dict(), "tokenizer_vocab": 1024, "max_steps": 1, "eval_interval": 1})
    trainer, rec, done = train(text_file, tmp_path / "run", cfg)
    learned = trainer.tokenizer.vocab_size - 1
    assert done.reason == "finished" and 256 < learned < 1024
    assert trainer.model_cfg.vocab_size == learned + 1
    said = [e.message for e in rec.of("prepare") if e.phase == "tokenizer" and e.message]
    assert said[-1] == (f"tokenizer: {learned} of the 1024 tokens asked for: the text has no more pairs to merge; "
                        f"the model's vocabulary is {learned + 1}")


def _params(run):
    ckpt = load_checkpoint(run)
    return ckpt.model.params.data.copy(), ckpt.optimizer_state()


@pytest.mark.parametrize("sampling", ["random", "epoch"])
def test_resume_is_bit_exact(text_file, tmp_path, sampling):
    """20 steps, stop, resume, 20 more == 40 straight steps (dropout, grad accumulation
    and evaluations in between included), whichever way the windows are drawn."""
    cfg = TrainConfig(**{**TRAIN.to_dict(), "sampling": sampling})
    train(text_file, tmp_path / "straight", cfg)

    holder = {}
    rec = Recorder(lambda e: e.kind == "step" and e.step == 17 and holder["t"].stop())
    first = Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "split", callback=rec)
    holder["t"] = first
    done = first.run()
    assert done.reason == "stopped" and done.step == 17
    assert rec.of("checkpoint")[-1].reason == "final" and rec.of("checkpoint")[-1].step == 17
    rec2 = Recorder()
    resumed = Trainer.from_checkpoint(tmp_path / "split", callback=rec2)
    assert resumed.run().reason == "finished"
    assert [e.step for e in rec2.of("step")] == list(range(18, 41))
    assert any(e.message == f"resuming {tmp_path / 'split'} at step 17 of 40" for e in rec2.of("prepare"))
    assert [e.step for e in rec2.of("eval")] == [20, 30, 40]  # no second baseline evaluation

    a, opt_a = _params(tmp_path / "straight")
    b, opt_b = _params(tmp_path / "split")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt_a["m"], opt_b["m"])
    np.testing.assert_array_equal(opt_a["v"], opt_b["v"])
    assert opt_a["t"] == opt_b["t"] == 40
    rows = read_metrics(tmp_path / "split")
    assert [r["step"] for r in rows if r["event"] == "step"] == list(range(1, 41))


def test_epoch_sampling_trains_on_other_windows_than_random(text_file, tmp_path):
    """``--sampling epoch`` reaches the batches (the same seed gives other weights) and the
    checkpoint counts the windows drawn: 40 steps x 2 micro-batches x 4."""
    train(text_file, tmp_path / "random")
    train(text_file, tmp_path / "epoch", TrainConfig(**{**TRAIN.to_dict(), "sampling": "epoch"}))
    assert not np.array_equal(_params(tmp_path / "random")[0], _params(tmp_path / "epoch")[0])
    assert load_checkpoint(tmp_path / "epoch").state["windows_drawn"] == 320
    assert load_checkpoint(tmp_path / "random").state["windows_drawn"] is None


def test_evaluation_does_not_change_the_training_stream(text_file, tmp_path):
    train(text_file, tmp_path / "often", TrainConfig(**{**TRAIN.to_dict(), "eval_interval": 3}))
    train(text_file, tmp_path / "rarely", TrainConfig(**{**TRAIN.to_dict(), "eval_interval": 40}))
    np.testing.assert_array_equal(_params(tmp_path / "often")[0], _params(tmp_path / "rarely")[0])


def test_controls_from_another_thread(text_file, tmp_path):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "max_steps": 100000, "eval_interval": 100000})
    reached, paused, saved = threading.Event(), threading.Event(), threading.Event()

    def watch(e):
        if e.kind == "step" and e.step == 3:
            reached.set()
        if e.kind == "state" and e.state == "paused":
            paused.set()
        if e.kind == "checkpoint" and e.reason == "manual":
            saved.set()

    rec = Recorder(watch)
    trainer = Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "run", callback=rec)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("done", trainer.run()))
    worker.start()
    try:
        assert reached.wait(60)
        trainer.pause()
        assert paused.wait(60)
        step = trainer.step
        assert trainer.state == "paused"
        trainer.save_now()
        assert saved.wait(60)
        assert trainer.step == step  # nothing trained while paused
        assert load_checkpoint(tmp_path / "run").state["step"] == step
        trainer.unpause()
        while trainer.step < step + 2 and worker.is_alive():
            worker.join(0.01)
        trainer.stop()
    finally:
        trainer.stop()
        worker.join(60)
    done = result["done"]
    assert done.reason == "stopped" and done.step > step
    states = [e.state for e in rec.of("state")]
    assert states == ["preparing", "running", "paused", "running", "stopping"]
    assert load_checkpoint(tmp_path / "run").state["step"] == done.step


def test_non_finite_gradients_stop_with_the_last_good_checkpoint(text_file, tmp_path, monkeypatch):
    real = Trainer._loss_and_grad

    def poisoned(self, x, y, micro):
        loss = real(self, x, y, micro)
        if self.step == 12:
            self.model.params.grad[5] = np.nan
        return loss

    monkeypatch.setattr(Trainer, "_loss_and_grad", poisoned)
    trainer, rec, done = train(text_file, tmp_path / "run")
    assert done.reason == "error" and done.step == 12
    (error,) = rec.of("error")
    assert "gradient norm nan" in error.message and "at step 13" in error.message
    assert error.last_good_checkpoint == str(tmp_path / "run") and "(step 10)" in error.message
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.state["step"] == 10 and np.isfinite(ckpt.model.params.data).all()


def test_resume_refuses_a_shape_change_and_takes_new_settings(text_file, tmp_path):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "max_steps": 10})
    train(text_file, tmp_path / "run", cfg)
    with pytest.raises(ConfigError, match="cannot change n-embd on resume"):
        Trainer.from_checkpoint(tmp_path / "run", n_embd=32)
    with pytest.raises(ConfigError, match="best checkpoint inside the run"):
        Trainer.from_checkpoint(tmp_path / "run" / "best", max_steps=20)
    with pytest.raises(ConfigError, match="already at step 10 of 10"):
        Trainer.from_checkpoint(tmp_path / "run")
    trainer = Trainer.from_checkpoint(tmp_path / "run", max_steps=12, lr=1e-3, n_embd=16)
    assert trainer.train_cfg.lr == 1e-3 and trainer.train_cfg.max_steps == 12
    assert trainer.run().step == 12
    assert load_checkpoint(tmp_path / "run").train_config.max_steps == 12


def test_out_dir_holding_a_run_needs_force(text_file, tmp_path):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "max_steps": 10, "eval_interval": 5})
    train(text_file, tmp_path / "run", cfg)
    with pytest.raises(CheckpointError, match="already holds a run.*--force"):
        Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="not a Mnemos run"):
        Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    short = TrainConfig(**{**cfg.to_dict(), "max_steps": 3, "eval_interval": 3, "seed": 99})
    _, _, done = train(text_file, tmp_path / "run", short, force=True)
    assert done.reason == "finished"
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.state["step"] == 3 and ckpt.train_config.seed == 99
    assert load_checkpoint(tmp_path / "run" / "best").state["step"] == 3  # the old run's best/ is gone


def test_runs_started_in_the_same_second_get_their_own_folders(text_file, tmp_path, monkeypatch):
    import mnemos.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod.time, "strftime", lambda fmt: "2026-11-27_12-00-00")
    root = tmp_path / "runs"
    first = Trainer.new(MODEL, TRAIN, text_file, runs_root=root)
    second = Trainer.new(MODEL, TRAIN, text_file, runs_root=root)
    assert first.out_dir == root / "2026-11-27_12-00-00"
    assert second.out_dir == root / "2026-11-27_12-00-00-2"
    assert first.out_dir.is_dir() and second.out_dir.is_dir()  # claimed at once, before any save
    with pytest.raises(MnemosError):  # a run refused for its settings claims no folder
        Trainer.new(MODEL, TRAIN, tmp_path / "missing.txt", runs_root=root)
    assert sorted(p.name for p in root.iterdir()) == [".2026-11-27_12-00-00-2.lock", ".2026-11-27_12-00-00.lock",
                                                      "2026-11-27_12-00-00", "2026-11-27_12-00-00-2"]  # + their locks


def test_text_shorter_than_a_window_is_an_error_event(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("only a few words here\n")
    trainer, rec, done = train(f, tmp_path / "run")
    assert done.reason == "error" and done.checkpoint is None
    (error,) = rec.of("error")
    assert "shorter than one context window" in error.message and "--block-size" in error.message
    assert not (tmp_path / "run").exists()


def test_stop_during_preparation_saves_nothing(text_file, tmp_path):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "tokenizer_vocab": 400})
    holder = {}
    rec = Recorder(lambda e: e.kind == "prepare" and e.phase == "tokenizer" and e.total and holder["t"].stop())
    trainer = Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "run", callback=rec)
    holder["t"] = trainer
    done = trainer.run()
    assert done.reason == "stopped" and done.step == 0 and done.checkpoint is None
    assert not rec.of("step") and not (tmp_path / "run").exists()
    # a dated folder claimed for the run is removed again when the run saves nothing
    trainer = Trainer.new(MODEL, cfg, text_file, runs_root=tmp_path / "runs", callback=rec)
    assert trainer.out_dir.is_dir()
    holder["t"] = trainer
    assert trainer.run().checkpoint is None
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_failed_worker_keeps_the_steps_done_so_far(text_file, tmp_path, monkeypatch):
    """A worker that dies or stops mid-step (WorkerError): the weights of the last whole
    step are saved, not lost back to the last evaluation."""
    from mnemos.errors import WorkerError

    real = Trainer._loss_and_grad

    def failing(self, x, y, micro):
        if self.step == 13:
            raise WorkerError("data-parallel worker 2 of 2 died (killed by SIGKILL)")
        return real(self, x, y, micro)

    monkeypatch.setattr(Trainer, "_loss_and_grad", failing)
    trainer, rec, done = train(text_file, tmp_path / "run")
    assert done.reason == "error" and done.step == 13
    (error,) = rec.of("error")
    assert "worker 2 of 2 died" in error.message and f"step 13 is saved in {tmp_path / 'run'}" in error.message
    assert load_checkpoint(tmp_path / "run").state["step"] == 13
