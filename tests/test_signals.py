"""Issue 13: every way a run is told to stop (Ctrl+C, SIGTERM from `timeout`/systemd/docker,
SIGHUP from a closed terminal), at random moments including the middle of a save, leaves a
checkpoint that loads and resumes; the exit status is 128 + the signal's number."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnemos.bpe_train import count_chunks
from mnemos.checkpoint import load_checkpoint
from mnemos.cli import main

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


def _default_signals(ignore=()):
    """The dispositions a shell gives a command (the suite may run under nohup, which ignores
    HUP), except ``ignore``: for a child process, before it runs."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN if signum in ignore else signal.SIG_DFL)


@pytest.fixture
def default_signals():
    """TERM and HUP at their defaults in this process for the test, put back after."""
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _train(*argv, ignore=()):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "mnemos", "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=lambda: _default_signals(ignore))


@pytest.mark.parametrize("signum, twice", [(signal.SIGINT, False), (signal.SIGTERM, False),
                                            (signal.SIGHUP, False), (signal.SIGTERM, True)])
def test_a_signal_at_a_random_moment_leaves_a_resumable_checkpoint(proj, capsys, signum, twice):
    """Saving at every step, most of the time is spent saving: the signal lands in a save
    as often as not. A second signal gives up at once, even in the middle of a save."""
    proc = _train("--data", "train.txt", "--out", "run", "--max-steps", "100000", "--eval-interval", "1",
                  "--json", *TINY)
    saves = 0
    for line in proc.stdout:
        saves += json.loads(line)["event"] == "checkpoint"
        if saves == 2:
            break
    rng = random.Random(int(signum) * 10 + twice)
    time.sleep(rng.uniform(0.0, 0.05))
    proc.send_signal(signum)
    if twice:
        time.sleep(rng.uniform(0.0, 0.01))
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    # a second signal that lands after the run has finished saving meets the default
    # action: killed by it, which a shell reports as the same 128 + N
    assert proc.returncode == 128 + signum or (twice and proc.returncode == -signum), err
    assert "Traceback" not in err
    step = load_checkpoint(proj / "run").state["step"]
    assert step >= 2
    if not twice:
        events = [json.loads(line) for line in out.splitlines()]
        assert events[-1]["event"] == "done" and events[-1]["reason"] == "stopped"
        assert [e for e in events if e["event"] == "checkpoint"][-1]["step"] == step
    rc = main(["train", "--resume", "run", "--max-steps", str(step + 1), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert [json.loads(x)["step"] for x in out.splitlines() if '"event": "step"' in x] == [step + 1]


def test_counting_the_chunks_of_a_big_text_can_be_cancelled_after_each_block():
    """Ctrl+C while the tokenizer reads 300 MB: the cancel point is each ~1 MB block, not
    the end of the count (it took 34 s to stop)."""
    class Cancelled(Exception):
        pass

    seen = []

    def progress(done, total):
        seen.append((done, total))
        if len(seen) == 2:
            raise Cancelled

    blocks = iter(["a b", "c d", "e f", "g h"])
    with pytest.raises(Cancelled):
        count_chunks(blocks, str.split, progress, total=7)
    assert seen == [(0, 7), (0, 7)] and next(blocks) == "e f"  # stopped after the second block


def test_closing_the_terminal_saves_the_run_and_exits_129(proj):
    """A real hang-up: the terminal goes away (SIGHUP, and every later write fails with
    EIO); the run is saved all the same."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: `mnemos train` on the pseudo-terminal
        _default_signals()
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "mnemos", "train", "--data", "train.txt", "--out", "run",
                                  "--max-steps", "100000", "--eval-interval", "100000", *TINY])
    seen = b""
    while not re.search(rb"step +\d+/", seen):  # the progress line of the first steps (not "eval step 0")
        if select.select([fd], [], [], 60)[0]:
            seen += os.read(fd, 65536)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP
    assert load_checkpoint(proj / "run").state["step"] > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_outside_training_says_so_in_one_line_and_writes_nothing(proj, capsys, monkeypatch, signum,
                                                                          default_signals):
    """import, export, eval, compare: TERM or HUP in the middle of writing is an interrupt
    (cleanups run, the half-written file is not renamed into place), one line, 128 + N."""
    from mnemos import fileio

    assert main(["train", "--data", "train.txt", "--out", "run", "--max-steps", "1", *TINY]) == 0
    real_write = fileio.write_atomic

    def write_then_signal(path, write):
        def signalled(f):
            write(f)
            os.kill(os.getpid(), signum)  # delivered at the next bytecode: before the rename
        real_write(path, signalled)

    monkeypatch.setattr(fileio, "write_atomic", write_then_signal)
    capsys.readouterr()
    assert main(["compare", "run", "--report", "c.md"]) == 128 + signum
    err = capsys.readouterr().err
    assert err.strip() == f"mnemos compare: interrupted ({signal.Signals(signum).name})"
    assert sorted(p.name for p in proj.iterdir()) == [".cache", "run", "train.txt"]  # no report, no temporary file
    assert signal.getsignal(signum) is signal.SIG_DFL  # the handler is put back


def test_a_signal_the_process_was_started_ignoring_stays_ignored(proj, capsys, monkeypatch):
    """Under `nohup` (HUP ignored) a closed terminal must not stop a run or a command: the
    first version caught HUP whatever it found, so nohup'd training stopped at the hang-up.
    The run ignores the HUP and goes on; the TERM after it stops it (143, not 129)."""
    proc = _train("--data", "train.txt", "--out", "run", "--max-steps", "100000", "--eval-interval", "5",
                  "--json", *TINY, ignore=(signal.SIGHUP,))
    steps = []
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "step":
            steps.append(event["step"])
            if len(steps) == 3:
                proc.send_signal(signal.SIGHUP)
            if len(steps) == 40:  # still training, well after the hang-up
                proc.send_signal(signal.SIGTERM)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(60) == 128 + signal.SIGTERM and len(steps) >= 40
    assert load_checkpoint(proj / "run").state["step"] >= 40

    from mnemos import fileio  # and a command outside training, in this process
    assert main(["train", "--data", "train.txt", "--out", "one", "--max-steps", "1", *TINY]) == 0
    real_write = fileio.write_atomic

    def write_then_hang_up(path, write):
        def signalled(f):
            write(f)
            os.kill(os.getpid(), signal.SIGHUP)
        real_write(path, signalled)

    monkeypatch.setattr(fileio, "write_atomic", write_then_hang_up)
    saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        capsys.readouterr()
        assert main(["compare", "one", "--report", "c.md"]) == 0
        assert (proj / "c.md").is_file()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, saved)
