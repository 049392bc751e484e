"""Fixtures of the TUI tests: a workspace folder with a small text of our own (the
current directory while a test runs) and a deterministic checkpoint in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_helpers import TEXT, make_checkpoint


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def steady_machine(monkeypatch):
    """The Train screen's preset auto times a few training steps; here the machine answers
    at once, as a 100 GFLOP/s one would, so screens and snapshots do not depend on its load."""
    from mnemos import calibrate

    monkeypatch.setattr(calibrate, "time_steps", lambda cfg, batch, workers, steps=2, device="cpu":
                        100e9 / calibrate.flops_per_token(cfg))


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty folder holding data/training/train.txt and data/testing/test.txt; the
    current directory while the test runs."""
    (tmp_path / "data" / "training").mkdir(parents=True)
    (tmp_path / "data" / "testing").mkdir(parents=True)
    (tmp_path / "data" / "training" / "train.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "data" / "testing" / "test.txt").write_text(TEXT[: len(TEXT) // 3], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def checkpoint(workspace) -> Path:
    return make_checkpoint(workspace)
