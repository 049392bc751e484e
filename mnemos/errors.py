"""Errors a user can cause.

Every one carries a one-line message that says what went wrong and what to do. The CLI
prints it and exits with status 2; the TUI shows it as a notification and stays up.
"""


class MnemosError(Exception):
    """Base class of every user-facing error."""


class ConfigError(MnemosError):
    """An impossible model or training setting (e.g. n_embd not divisible by n_head).
    ``field`` names the setting it is about (a ModelConfig / TrainConfig attribute) when
    there is one, so a form can show the reason next to it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataError(MnemosError):
    """A data file that cannot be used: missing, empty, binary, not UTF-8, too short."""


class TokenizerError(MnemosError):
    """A tokenizer file that is corrupt or foreign, or text the tokenizer cannot take."""


class CheckpointError(MnemosError):
    """A checkpoint folder that is missing, corrupt, foreign or from a newer version."""


class DeviceError(MnemosError):
    """A compute device that is not available (e.g. --device cuda without CuPy or a GPU)."""


class ContextError(MnemosError):
    """A token sequence longer than the model's block_size (its context window)."""


class WorkerError(MnemosError):
    """A data-parallel worker process that died or failed during a training step."""


class CompareError(MnemosError):
    """Runs that cannot be compared (missing, not runs, given twice, bad options)."""


class SampleCancelled(MnemosError):
    """``cancel()`` returned true while fetching the sample corpus (nothing was written)."""


class EvalCancelled(MnemosError):
    """``cancel()`` returned true during an evaluation (nothing was saved)."""


class ImportError_(MnemosError):  # noqa: N801 - not the builtin ImportError
    """A Hugging Face folder that cannot be imported (unsupported model, missing files)."""
