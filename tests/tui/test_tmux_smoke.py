"""Tests of the installed ``mnemos-tui`` in a real terminal (tmux): it starts in an empty
folder, switches screens by keys, shows what each screen should, and quits cleanly; and
the loss plot on a log scale survives redraws while a run is paused (issue 14, finding 1).

They drive the installed command, so they skip (saying why) when it would run another
checkout's code than the one under test."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_helpers import TEXT

APP = "env -u PYTHONPATH mnemos-tui"  # the installed command, as a user runs it


def installed_tui(tmp_path: Path) -> Path:
    """The folder the installed ``mnemos-tui`` imports its ``mnemos_tui`` package from."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([sys.executable, "-c", "import mnemos_tui; print(mnemos_tui.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    return Path(found.stdout.strip()).parent.resolve() if found.returncode == 0 else Path("(not importable)")


@pytest.fixture(autouse=True)
def installed_is_this_checkout(tmp_path):
    if shutil.which("tmux") is None or shutil.which("mnemos-tui") is None:
        pytest.skip("needs tmux and the installed mnemos-tui (pip install -e .)")
    here = (Path(__file__).parents[2] / "tui").resolve()  # this checkout's app folder
    if installed_tui(tmp_path) != here:
        pytest.skip(f"the installed mnemos-tui runs {installed_tui(tmp_path)}, not this checkout's {here} "
                    f"(pip install -e . here to test it)")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for_text(session: str, text: str, limit: float = 60.0, pattern: bool = False) -> str:
    """The pane's text once it contains ``text`` (a regular expression if ``pattern``);
    ``limit`` only guards against a hang."""
    end = time.monotonic() + limit
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if re.search(text, screen) if pattern else text in screen:
            return screen
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
        time.sleep(0.2)


def send(session: str, *keys: str) -> None:
    tmux("send-keys", "-t", session, *keys)


def wait_for_exit(marker: Path, limit: float = 60.0) -> str:
    """The app's exit status (``limit`` only guards against a hang)."""
    end = time.monotonic() + limit
    while not marker.exists():
        if time.monotonic() > end:
            raise AssertionError("the app did not exit")
        time.sleep(0.2)
    return marker.read_text().strip()


@contextlib.contextmanager
def app_in_tmux(folder: Path, size: tuple[int, int], args: str = ""):
    """The app running in ``folder`` in a new tmux session of ``size``: yields the
    session's name; its exit status goes to ``folder/exit-status``."""
    session = f"mnemos-test-{uuid.uuid4().hex[:8]}"
    tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), "-c", str(folder),
         f"{APP} {args}; echo $? > {folder / 'exit-status'}; sleep 30")
    try:
        yield session
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_start_switch_screens_and_quit_in_tmux(tmp_path):
    with app_in_tmux(tmp_path, (100, 30)) as session:
        wait_for_text(session, "No training file yet")
        assert "Mnemos — Datasets" in wait_for_text(session, "Fetch sample")  # the screen's keys in the footer
        for key, expected in [("F3", "preset"), ("F4", "test file"), ("F5", "No checkpoints yet"),
                              ("F6", "Saved runs"), ("F1", "Everywhere")]:
            tmux("send-keys", "-t", session, key)
            wait_for_text(session, expected)
        tmux("send-keys", "-t", session, "Escape")
        tmux("send-keys", "-t", session, "C-q")
        assert wait_for_exit(tmp_path / "exit-status") == "0"
        for folder in ("data/training", "data/testing", "checkpoints"):
            assert (tmp_path / folder).is_dir()


def test_log_scale_loss_plot_survives_redraws_while_paused_in_tmux(tmp_path):
    """Finding 1 of issue 14, as it was found: train, pause, log scale, then help and
    other screens open and closed (each a redraw with no new points). The app used to
    exit with plotext's ``math domain error`` and take the run with it."""
    (tmp_path / "data" / "training").mkdir(parents=True)
    (tmp_path / "data" / "training" / "train.txt").write_text(TEXT * 15, encoding="utf-8")
    with app_in_tmux(tmp_path, (120, 40), "--data data/training/train.txt") as session:
        wait_for_text(session, "preset")
        send(session, "C-r")
        wait_for_text(session, r"step\s+([3-9]|\d\d+)/", pattern=True)  # a few points on the plot (live numbers)
        send(session, "C-b")
        wait_for_text(session, "paused")
        send(session, "C-l")
        wait_for_text(session, "loss (log scale)")
        for key, shown in [("F1", "Everywhere"), ("Escape", "loss (log scale)"), ("F1", "Everywhere"),
                           ("Escape", "loss (log scale)"), ("F2", "Mnemos — Datasets"), ("F3", "loss (log scale)")]:
            send(session, key)
            screen = wait_for_text(session, shown)
        assert "paused" in screen and "cannot be drawn" not in screen and "Everywhere" not in screen
        send(session, "C-q")
        wait_for_text(session, "Save and quit")
        send(session, "s")
        assert wait_for_exit(tmp_path / "exit-status") == "0"
        runs = [p for p in (tmp_path / "checkpoints").iterdir() if (p / "state.json").is_file()]
        assert len(runs) == 1  # quitting saved the paused run


def test_keys_typed_right_after_a_screen_key_reach_that_screen_in_tmux(tmp_path):
    """Issue 14.10 as it was found: F5 and a prompt sent at once (one send-keys); the
    prompt used to go to the Datasets tree the app was leaving."""
    with app_in_tmux(tmp_path, (80, 24)) as session:
        wait_for_text(session, "No training file yet")
        send(session, "F5", "hello there")
        screen = wait_for_text(session, "hello there")
        assert "Mnemos — Generate" in screen
        send(session, "F2", "F5", "!")  # a screen already built, then back
        wait_for_text(session, "hello there!")
        send(session, "C-q")
        assert wait_for_exit(tmp_path / "exit-status") == "0"
