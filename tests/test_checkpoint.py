"""mnemos.checkpoint: round trips, best/, one-line errors, atomicity (disk full, SIGKILL)."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from mnemos import checkpoint as ck
from mnemos.checkpoint import (FORMAT_VERSION, delete_checkpoint, list_checkpoints, load_checkpoint, read_metrics,
                               save_checkpoint)
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError
from mnemos.nn import GPT
from mnemos.optim import AdamW
from mnemos.tokenizer import BPETokenizer

MODEL_CFG = ModelConfig(vocab_size=257, n_layer=1, n_head=2, n_embd=16, block_size=8)
TRAIN_CFG = TrainConfig(max_steps=10)


def make_parts(seed=0):
    model = GPT(MODEL_CFG, seed=seed)
    opt = AdamW(model.params)
    model.params.grad[...] = np.random.default_rng(seed).normal(size=model.params.size).astype(np.float32)
    opt.step(1e-3)
    return model, BPETokenizer(), opt


def save(path, model, tok, opt, step, **kw):
    return save_checkpoint(path, model, tok, MODEL_CFG, TRAIN_CFG, opt, {"step": step, "best_val_loss": None}, **kw)


def test_round_trip(tmp_path):
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 3, metrics=[{"event": "step", "step": 1, "loss": 5.0}])
    loaded = load_checkpoint(run)
    assert loaded.model_config == MODEL_CFG and loaded.train_config == TRAIN_CFG
    assert loaded.state["step"] == 3 and loaded.state["format_version"] == FORMAT_VERSION
    assert loaded.tokenizer == tok
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name], value)
    opt_state = loaded.optimizer_state()
    np.testing.assert_array_equal(opt_state["m"], opt.m)
    np.testing.assert_array_equal(opt_state["v"], opt.v)
    assert opt_state["t"] == 1
    assert read_metrics(run) == [{"event": "step", "step": 1, "loss": 5.0}]
    with np.load(run / "model.npz", allow_pickle=False) as z:
        assert set(z.files) == set(model.params.names)
        assert all(z[k].dtype == np.float32 for k in z.files)
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION and config["model"]["n_embd"] == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_best_is_updated_kept_or_dropped(tmp_path):
    model, tok, opt = make_parts()
    run = tmp_path / "run"
    save(run, model, tok, opt, 1, best="update")
    first = model.state_dict()
    model.params.data += 1.0
    save(run, model, tok, opt, 2, best="keep")
    assert load_checkpoint(run / "best").state["step"] == 1
    np.testing.assert_array_equal(load_checkpoint(run / "best").model.state_dict()["wte"], first["wte"])
    assert load_checkpoint(run).state["step"] == 2
    save(run, model, tok, opt, 3, best="update")
    assert load_checkpoint(run / "best").state["step"] == 3
    assert os.stat(run / "best" / "model.npz").st_ino == os.stat(run / "model.npz").st_ino  # a hard link, no copy
    save(run, model, tok, opt, 4, best="drop")
    assert not (run / "best").exists()


def test_other_files_stay_unless_fresh(tmp_path):
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 1, best="update", metrics=[{"step": 1}])
    (run / "eval-report.md").write_text("# report")
    (run / "best" / "evals.jsonl").write_text("{}\n")
    save(run, model, tok, opt, 2)
    assert (run / "eval-report.md").read_text() == "# report"
    assert (run / "best" / "evals.jsonl").read_text() == "{}\n"
    save(run, model, tok, opt, 1, fresh=True)  # a new run over an old folder (--force)
    assert sorted(p.name for p in run.iterdir()) == sorted(ck.CHECKPOINT_FILES)


def test_metrics_are_kept_when_not_given(tmp_path):
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 1, metrics=[{"step": 1}])
    save(run, model, tok, opt, 2)
    assert read_metrics(run) == [{"step": 1}]


def test_read_metrics_skips_a_cut_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]


# --------------------------------------------------------------------------- bad checkpoints


@pytest.fixture
def run(tmp_path):
    model, tok, opt = make_parts()
    return save(tmp_path / "run", model, tok, opt, 5)


def _one_line_error(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    for w in words:
        assert w in message
    return message


def test_missing_and_foreign_folders(tmp_path):
    _one_line_error(tmp_path / "nope", "does not exist")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hi")
    _one_line_error(tmp_path / "foreign", "not a Mnemos checkpoint")


def test_truncated_model_npz(run):
    blob = (run / "model.npz").read_bytes()
    (run / "model.npz").write_bytes(blob[: len(blob) // 2])
    _one_line_error(run, "model.npz", "truncated or corrupt")


def test_corrupted_model_npz(run):
    blob = bytearray((run / "model.npz").read_bytes())
    for i in range(len(blob) // 3, len(blob) // 3 + 64):  # flip bytes inside an array's data
        blob[i] ^= 0xFF
    (run / "model.npz").write_bytes(bytes(blob))
    _one_line_error(run, "model.npz", "truncated or corrupt")


def test_pickled_arrays_are_refused(run):
    with open(run / "model.npz", "wb") as f:
        np.savez(f, wte=np.array([{"evil": 1}], dtype=object))
    _one_line_error(run, "model.npz")


def test_newer_format_version(run):
    config = json.loads((run / "config.json").read_text())
    config["format_version"] = FORMAT_VERSION + 1
    (run / "config.json").write_text(json.dumps(config))
    _one_line_error(run, "newer Mnemos", "upgrade")


def test_shape_mismatch(run):
    config = json.loads((run / "config.json").read_text())
    config["model"]["n_embd"] = 32
    (run / "config.json").write_text(json.dumps(config))
    _one_line_error(run, "config.json says n_embd 32 but the model was saved with n_embd 16", "edited")
    state = json.loads((run / "state.json").read_text())
    del state["model_shape"]  # as saved before the shape was recorded: the arrays' shapes tell
    (run / "state.json").write_text(json.dumps(state))
    _one_line_error(run, "model.npz does not fit its config.json", "shape (257, 16), expected float32 and (257, 32)")


def test_missing_file(run):
    (run / "tokenizer.json").unlink()
    _one_line_error(run, "tokenizer.json is missing")


def test_corrupt_json(run):
    (run / "state.json").write_text("{not json")
    _one_line_error(run, "state.json is corrupt")


# --------------------------------------------------------------------------- atomicity


def test_disk_full_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 1, best="update")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    real = ck._write_npz

    def full_disk(path, arrays):
        if path.name == "optimizer.npz":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, arrays)

    monkeypatch.setattr(ck, "_write_npz", full_disk)
    model.params.data += 1.0
    with pytest.raises(CheckpointError, match="disk is full.*previous checkpoint is intact") as info:
        save(run, model, tok, opt, 2, best="update")
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert load_checkpoint(run).state["step"] == 1 and load_checkpoint(run / "best").state["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the half-written folder is gone


def test_disk_full_on_the_first_save_says_nothing_was_saved(tmp_path, monkeypatch):
    model, tok, opt = make_parts()

    def full_disk(path, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_write_npz", full_disk)
    with pytest.raises(CheckpointError, match="disk is full.*nothing was saved"):
        save(tmp_path / "run", model, tok, opt, 1)
    assert list(tmp_path.iterdir()) == []


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 7)
    dead = subprocess.Popen(["true"])
    dead.wait()
    os.rename(run, tmp_path / f".run.previous-{dead.pid}")  # as if that process was killed between its renames
    assert load_checkpoint(run).state["step"] == 7
    assert [i.name for i in list_checkpoints(tmp_path)] == ["run"]


def test_reading_while_another_thread_saves(tmp_path):
    """The TUI lists and loads checkpoints while its trainer thread saves them."""
    model, tok, opt = make_parts()
    run = save(tmp_path / "run", model, tok, opt, 0)
    done, errors = threading.Event(), []

    def saver():
        try:
            for step in range(1, 40):
                save(run, model, tok, opt, step, best="update" if step % 2 else "keep")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=saver)
    thread.start()
    steps = []
    while not done.is_set():
        (info,) = list_checkpoints(tmp_path)
        assert info.problem is None
        steps.append(load_checkpoint(run).state["step"])
    thread.join()
    assert errors == [] and steps == sorted(steps)
    assert load_checkpoint(run).state["step"] == 39


KILLER = textwrap.dedent("""
    import sys
    import numpy as np
    from mnemos.checkpoint import save_checkpoint
    from mnemos.config import ModelConfig, TrainConfig
    from mnemos.nn import GPT
    from mnemos.optim import AdamW
    from mnemos.tokenizer import BPETokenizer

    cfg = ModelConfig(vocab_size=257, n_layer=2, n_head=2, n_embd=64, block_size=32)
    model, tok = GPT(cfg), BPETokenizer()
    opt = AdamW(model.params)
    for step in range(1, 100000):
        model.params.data[...] = step
        opt.m[...] = step
        save_checkpoint(sys.argv[1], model, tok, cfg, TrainConfig(), opt, {"step": step},
                        metrics=[{"step": s} for s in range(step)], best="update" if step % 3 == 0 else "keep")
        print(step, flush=True)
""")


def test_sigkill_at_a_random_moment_leaves_a_whole_checkpoint(tmp_path):
    """Kill a process that saves checkpoints back to back at random moments: every
    time, the folder loads and its weights, moments and state agree on one step."""
    script = tmp_path / "saver.py"
    script.write_text(KILLER)
    run = tmp_path / "run"
    rng = random.Random(1234)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one (more) checkpoint exists
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        ckpt = load_checkpoint(run)
        step = ckpt.state["step"]
        assert np.all(ckpt.model.params.data == step)
        assert np.all(ckpt.optimizer_state()["m"] == step)
        assert len(read_metrics(run)) == step
        if (run / "best").exists():
            best = load_checkpoint(run / "best")
            assert best.state["step"] % 3 == 0 and np.all(best.model.params.data == best.state["step"])
    model, tok, opt = make_parts()
    save(run, model, tok, opt, 10**6)  # the next save clears what the killed ones left
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_reading_while_another_process_saves_never_mixes_checkpoints(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(KILLER)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        steps = []
        for _ in range(15):
            ckpt = load_checkpoint(run)
            step = ckpt.state["step"]
            assert np.all(ckpt.model.params.data == step)  # weights and state of one and the same save
            steps.append(step)
        assert steps == sorted(steps) and steps[-1] > steps[0]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------- browsing


def test_list_and_delete(tmp_path):
    model, tok, opt = make_parts()
    save(tmp_path / "old", model, tok, opt, 1)
    time.sleep(0.01)
    save(tmp_path / "new", model, tok, opt, 2, best="update")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "keep.txt").write_text("mine")
    broken = save(tmp_path / "broken", model, tok, opt, 3)
    (broken / "state.json").write_text("{")
    os.utime(broken / "config.json", (0, 0))
    infos = list_checkpoints(tmp_path)
    assert [i.name for i in infos] == ["new", "old", "broken"]
    new = infos[0]
    assert new.step == 2 and new.has_best and new.num_params == MODEL_CFG.num_params() and new.problem is None
    assert new.size_bytes < 2 * sum(p.stat().st_size for p in (tmp_path / "new").iterdir() if p.is_file())
    assert infos[2].problem is not None and "state.json" in infos[2].problem
    delete_checkpoint(tmp_path / "old")
    assert not (tmp_path / "old").exists()
    with pytest.raises(CheckpointError, match="refusing to delete"):
        delete_checkpoint(tmp_path / "not-a-run")
    assert (tmp_path / "not-a-run" / "keep.txt").read_text() == "mine"
    assert list_checkpoints(tmp_path / "missing") == []

