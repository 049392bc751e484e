"""Events the trainer (and other long jobs) report to a callback.

Plain dataclasses: the CLI prints them (a progress line, or one JSON object per line
with ``--json``), the TUI posts them as Textual messages. ``to_dict()`` gives the JSON
form, with ``"event"`` naming the kind (contract: ``step``, ``eval``, ``done`` ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass
class PrepareEvent(Event):
    """Progress of work before the first step: training the tokenizer, encoding, caching."""

    kind: ClassVar[str] = "prepare"
    phase: str
    done: int
    total: int
    message: str = ""


@dataclass
class StepEvent(Event):
    kind: ClassVar[str] = "step"
    step: int
    max_steps: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    tokens_seen: int
    time_budget_s: float | None = None  # with --time-budget: the budget (max_steps is then the planned last step)
    budget_left_s: float | None = None  # and what is left of it


@dataclass
class EvalEvent(Event):
    """Losses at an evaluation, and the induction bump's two numbers (``mnemos.heads``):
    ``icl_score`` (loss on late minus early tokens of a window; negative = the context
    helps) and ``induction_score`` of the best induction head, ``induction_head`` =
    its [layer, head] counted from 1 (None when not measured)."""

    kind: ClassVar[str] = "eval"
    step: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    is_best: bool
    elapsed_s: float
    icl_score: float | None = None
    induction_score: float | None = None
    induction_head: list[int] | None = None


@dataclass
class SampleEvent(Event):
    """The completion of the run's fixed prompt at an evaluation (the learning replay)."""

    kind: ClassVar[str] = "sample"
    step: int
    prompt: str
    text: str
    val_loss: float


@dataclass
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    reason: str  # "latest", "best", "manual", "final", "interrupt"


@dataclass
class StateEvent(Event):
    """The trainer changed state: "preparing", "running", "paused", "stopping"."""

    kind: ClassVar[str] = "state"
    state: str
    step: int


@dataclass
class DoneEvent(Event):
    kind: ClassVar[str] = "done"
    step: int
    reason: str  # "finished", "stopped", "error"
    loss: float | None
    best_val_loss: float | None
    elapsed_s: float
    checkpoint: str | None
    warning: str | None = None  # e.g. the run diverged (see WarningEvent)


@dataclass
class WarningEvent(Event):
    """Something the user should know that does not stop the run (e.g. the loss diverged)."""

    kind: ClassVar[str] = "warning"
    step: int
    message: str


@dataclass
class ErrorEvent(Event):
    kind: ClassVar[str] = "error"
    message: str
    last_good_checkpoint: str | None

