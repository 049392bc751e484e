"""The folder the app works in: where data files and checkpoints live.

The app is given a root folder (the current directory by default) so that tests and
snapshots can point it at a temporary folder and show paths relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnemos.paths import RUNS_ROOT, TEST_DATA, TRAIN_DATA


@dataclass
class Workspace:
    """The root folder plus the files and checkpoint the user has chosen so far."""

    root: Path
    train_file: Path | None = None
    test_file: Path | None = None
    checkpoint: Path | None = None
    settings: tuple[int, int] | None = None  # the Train form's (tokenizer_vocab, block_size) while valid

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.train_file is None and (self.root / TRAIN_DATA).is_file():
            self.train_file = self.root / TRAIN_DATA
        if self.test_file is None and (self.root / TEST_DATA).is_file():
            self.test_file = self.root / TEST_DATA

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / RUNS_ROOT

    def ensure_folders(self) -> None:
        """Create ``data/training``, ``data/testing`` and ``checkpoints`` if missing."""
        for folder in (self.root / TRAIN_DATA.parent, self.root / TEST_DATA.parent,
                       self.checkpoints_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def resolve(self, text: str | Path) -> Path:
        """A path typed by the user: ``~`` expanded, relative to the root."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.root / path

    def show(self, path: Path | None) -> str:
        """A path for display: relative to the root when inside it."""
        if path is None:
            return "(none)"
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)
