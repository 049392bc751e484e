"""A run folder belongs to the run that writes it (issue 13 #3, #4, #5): a second run, a
resume or a delete of a live run's folder is refused naming the holder; a dead holder's
lock is taken over; a symlinked folder is saved through; --force keeps the user's files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnemos.checkpoint import delete_checkpoint, load_checkpoint
from mnemos.cli import main
from mnemos.errors import CheckpointError
from mnemos.runlock import RunLock, lock_holder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-steps", "1", "--warmup-steps", "2", "--vocab-size", "256", "--seed", "3", "--workers", "1",
        "--sample-tokens", "0"]


@pytest.fixture
def proj(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride to the sea".split()
    (tmp_path / "train.txt").write_text("\n".join(" ".join(rng.choice(words, 9)) for _ in range(200)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train(capsys, *argv):
    rc = main(["train", "--data", "train.txt", "--json", *TINY, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_lock_is_exclusive_even_within_one_process_and_leaves_no_file(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        holder = lock_holder(run)
        assert holder["pid"] == os.getpid() and holder["started"] > 0
        with pytest.raises(CheckpointError, match=rf"{run} is in use by another run \(pid {os.getpid()}, `"):
            RunLock(run)
    assert lock_holder(run) is None and list(tmp_path.iterdir()) == []


def test_a_live_runs_folder_refuses_a_second_run_a_resume_and_a_delete(proj, capsys):
    rc, _, err = train(capsys, "--out", "run", "--max-steps", "2", "--eval-interval", "2")
    assert rc == 0, err
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mnemos", "train", "--resume", "run", "--max-steps", "100000",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "step":
                break
        holder = lock_holder(proj / "run")
        assert holder["pid"] == proc.pid and "train --resume run" in holder["command"]
        for argv in (["--out", "run", "--force"], ["--resume", "run", "--max-steps", "9"]):
            rc, out, err = train(capsys, *argv)
            assert rc == 2 and err.count("\n") == 1 and f"in use by another run (pid {proc.pid}, " in err, err
        with pytest.raises(CheckpointError, match=f"in use by another run \\(pid {proc.pid}"):
            delete_checkpoint(proj / "run")
    finally:
        proc.kill()
        proc.communicate()
    assert (proj / ".run.lock").exists() and lock_holder(proj / "run") is None  # stale: its process is gone
    step = load_checkpoint(proj / "run").state["step"]
    rc, out, err = train(capsys, "--resume", "run", "--max-steps", str(step + 1))
    assert rc == 0, err  # the dead run's lock is taken over
    assert not (proj / ".run.lock").exists()
    proc = subprocess.run([sys.executable, "-c", "import fcntl, os; "
                                                  "fcntl.flock(os.open('.run.lock', os.O_CREAT | os.O_RDWR), "
                                                  "fcntl.LOCK_EX)"], cwd=proj, env=env)
    assert proc.returncode == 0 and (proj / ".run.lock").exists()  # a lock of a process gone since
    delete_checkpoint(proj / "run")
    assert not (proj / "run").exists() and not (proj / ".run.lock").exists()  # the stale lock file went too


def test_out_and_resume_through_a_symlink_use_its_target(proj, capsys):
    (proj / "real").mkdir()
    (proj / "link").symlink_to("real")
    for argv in (["--out", "link", "--max-steps", "4", "--eval-interval", "2"],
                 ["--resume", "link", "--max-steps", "6"]):
        rc, out, err = train(capsys, *argv)
        assert rc == 0, err
        assert (proj / "link").is_symlink() and os.readlink(proj / "link") == "real"
    assert load_checkpoint(proj / "real").state["step"] == 6
    assert sorted(p.name for p in proj.iterdir()) == [".cache", "link", "real", "train.txt"]  # no stray folders


def test_force_replaces_only_what_a_run_wrote(proj, capsys):
    rc, out, err = train(capsys, "--out", "run", "--max-steps", "2", "--eval-interval", "1")
    assert rc == 0, err
    assert main(["eval", "--checkpoint", "run", "--data", "train.txt"]) == 0
    (proj / "run" / "notes.md").write_text("my notes")
    (proj / "run" / "plots").mkdir()
    (proj / "run" / "plots" / "loss.png").write_bytes(b"png")
    old = load_checkpoint(proj / "run").model.params.data.copy()
    rc, out, err = train(capsys, "--out", "run", "--force", "--max-steps", "1", "--eval-interval", "5",
                         "--seed", "9")
    assert rc == 0, err
    files = sorted(str(p.relative_to(proj / "run")) for p in (proj / "run").iterdir())
    assert files == ["best", "config.json", "metrics.jsonl", "model.npz", "notes.md", "optimizer.npz", "plots",
                     "state.json", "tokenizer.json"]  # the old evals.jsonl and eval-report.md are gone
    assert (proj / "run" / "notes.md").read_text() == "my notes"
    assert (proj / "run" / "plots" / "loss.png").read_bytes() == b"png"
    ckpt = load_checkpoint(proj / "run")
    assert ckpt.state["step"] == 1 and not np.array_equal(ckpt.model.params.data, old)
    assert load_checkpoint(proj / "run" / "best").state["step"] == 1  # the new run's best, not the old one's


def test_force_help_names_exactly_what_it_removes(capsys):
    assert main(["train", "--help"]) == 0
    from mnemos.checkpoint import FORCE_REPLACES

    help_text = " ".join(capsys.readouterr().out.split())
    for name in FORCE_REPLACES:
        assert name in help_text
    assert "any other file there is kept" in help_text
