"""Default places, relative to the working folder (the app's: its root folder): the
training and test texts `mnemos data sample` writes and `train` / `eval` read when no
``--data`` is given, and the folder of runs."""

from pathlib import Path

TRAIN_DATA = Path("data") / "training" / "train.txt"
TEST_DATA = Path("data") / "testing" / "test.txt"
RUNS_ROOT = Path("checkpoints")
