"""Smoke test of the installed ``mnemos-tui`` in a real terminal (tmux): it starts in an
empty folder, switches screens by keys, shows what each screen should, and quits cleanly."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("mnemos-tui") is None,
                                reason="needs tmux and the installed mnemos-tui (pip install -e .)")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for_text(session: str, text: str, limit: float = 60.0) -> str:
    """The pane's text once it contains ``text`` (``limit`` only guards against a hang)."""
    end = time.monotonic() + limit
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
        time.sleep(0.2)


def test_start_switch_screens_and_quit_in_tmux(tmp_path):
    session = f"mnemos-smoke-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "exit-status"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(tmp_path),
         f"mnemos-tui; echo $? > {marker}; sleep 30")
    try:
        wait_for_text(session, "No training file yet")
        assert "Mnemos — Datasets" in wait_for_text(session, "Sample corpus")  # the screen's keys in the footer
        for key, expected in [("F3", "preset"), ("F4", "test file"), ("F5", "No checkpoints yet"),
                              ("F6", "Saved runs"), ("F1", "Everywhere")]:
            tmux("send-keys", "-t", session, key)
            wait_for_text(session, expected)
        tmux("send-keys", "-t", session, "Escape")
        tmux("send-keys", "-t", session, "C-q")
        end = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < end:
            time.sleep(0.2)
        assert marker.read_text().strip() == "0"
        for folder in ("data/training", "data/testing", "checkpoints"):
            assert (tmp_path / folder).is_dir()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
