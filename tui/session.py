"""``TrainingSession``: the app's one training run, which every screen observes.

The session owns the ``mnemos.trainer.Trainer``, the thread worker that runs it and the
``EventBridge`` that carries its events to the app's thread. Screens never reach into the
trainer or into each other: they call the session's controls (``start``, ``pause``,
``unpause``, ``stop``, ``save_now``, ``quit``) and subscribe to ``session.events``, a
Textual signal published on the app's thread with each batch of engine events (the
trainer's own, plus a ``RunHistory`` when a run resumes and a ``RunEnded`` when the worker
is done). The session keeps what any screen may ask about: ``state``, ``trainer``,
``run_dir``, ``alive``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.signal import Signal
from textual.worker import Worker, get_current_worker

from mnemos.events import CheckpointEvent, DoneEvent, Event, StateEvent
from mnemos_tui.bridge import EngineEvents, EventBridge

if TYPE_CHECKING:
    from mnemos.config import ModelConfig, TrainConfig
    from mnemos.trainer import Trainer
    from mnemos_tui.app import MnemosApp

ALIVE = ("starting", "preparing", "running", "paused", "stopping")
ENDED = {"finished": "finished", "stopped": "stopped", "error": "failed"}  # DoneEvent.reason -> state


@dataclass
class RunStarted(Event):
    """The worker has set the run up: its trainer (not yet running)."""

    kind: ClassVar[str] = "started"
    trainer: "Trainer | None" = None


@dataclass
class RunHistory(Event):
    """The points a resumed run had already logged (``metrics.jsonl``'s rows)."""

    kind: ClassVar[str] = "history"
    rows: list[dict] = field(default_factory=list)


@dataclass
class RunEnded(Event):
    """The worker is done (after the trainer's ``DoneEvent``, or instead of it when the
    run could not start); ``error`` is the message shown for that."""

    kind: ClassVar[str] = "ended"
    error: str | None = None


class TrainingSession:
    """Start, control and observe the app's training run (at most one at a time)."""

    def __init__(self, app: "MnemosApp") -> None:
        self.app = app
        self.events: Signal[list[Event]] = Signal(app, "training-events")
        self.trainer: Trainer | None = None
        self.state = "idle"  # idle, one of ALIVE, or finished / stopped / failed
        self.run_dir: Path | None = None  # the run's folder once known
        self.worker: Worker | None = None
        self._exit_when_done = False
        self._stop_asked: tuple[str, bool] | None = None  # the stop asked for (reason, save), if any

    @property
    def alive(self) -> bool:
        """A run is starting, preparing, running, paused or stopping."""
        return self.state in ALIVE

    # -- controls (the app's thread) ---------------------------------------------------

    def start(self, model_cfg: "ModelConfig", train_cfg: "TrainConfig", data: Path | None,
              resume_dir: Path | None = None, out_dir: Path | None = None) -> None:
        """A new run on ``data`` into ``out_dir`` (None: a dated folder), or the run in
        ``resume_dir`` continued with the given settings."""
        if self.alive:
            raise RuntimeError("a run is already going")
        self.trainer, self.run_dir, self._exit_when_done, self._stop_asked = None, resume_dir, False, None
        self._set_state("starting")
        self.worker = self.app.run_worker(lambda: self._run(model_cfg, train_cfg, data, resume_dir, out_dir),
                                          name="training", group="train", thread=True, exclusive=True,
                                          exit_on_error=False)

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.pause()

    def unpause(self) -> None:
        if self.trainer is not None:
            self.trainer.unpause()

    def stop(self) -> None:
        """Stop after the current step, saving it."""
        if self.alive:
            self._stop("final", save=True)

    def save_now(self) -> None:
        if self.trainer is not None:
            self.trainer.save_now()

    def quit(self, save: bool) -> None:
        """Stop the run (saving unless ``save`` is False), then exit the app once it has ended."""
        self._exit_when_done = True
        self._stop("interrupt", save)

    def end(self) -> None:
        """The app is closing: a live run stops after its current step and saves it."""
        if self.trainer is not None and self.alive and self._stop_asked is None:
            self.trainer.stop(reason="interrupt")

    def _stop(self, reason: str, save: bool) -> None:
        self._stop_asked = (reason, save)  # applied when the trainer arrives, if it has not yet
        if self.trainer is not None:
            self.trainer.stop(reason=reason, save=save)
        self._set_state("stopping")

    # -- the worker ---------------------------------------------------------------------

    def _run(self, model_cfg, train_cfg, data, resume_dir, out_dir) -> None:
        from mnemos.checkpoint import read_metrics
        from mnemos.config import setting_values
        from mnemos.trainer import Trainer

        worker = get_current_worker()
        bridge = EventBridge(self.app.post_message)
        made: list[Trainer] = []

        def callback(event: Event) -> None:
            bridge(event)
            if worker.is_cancelled and made:
                made[0].stop()

        error = None
        try:
            if resume_dir is None:
                runs_root = self.app.workspace.checkpoints_dir
                trainer = Trainer.new(model_cfg, train_cfg, str(data), out_dir=out_dir, callback=callback,
                                      runs_root=runs_root)
            else:  # the form's settings (its shape fields hold the run's own, locked)
                trainer = Trainer.from_checkpoint(str(resume_dir), callback=callback,
                                                  **setting_values(model_cfg, train_cfg))
            made.append(trainer)
            bridge(RunStarted(trainer))
            if resume_dir is not None:
                bridge(RunHistory(read_metrics(resume_dir)))
            trainer.run()
        except Exception as exc:  # the app stays up: the error is shown by whoever observes
            from mnemos.errors import MnemosError

            error = app_words(str(exc)) if isinstance(exc, MnemosError) else f"{type(exc).__name__}: {exc}"
        finally:
            bridge(RunEnded(error))
            bridge.flush()

    # -- events (the app's thread) ---------------------------------------------------------

    def deliver(self, message: EngineEvents) -> None:
        """Keep the session's own state from a batch of events, then publish it."""
        for event in message.events:
            if isinstance(event, RunStarted):
                self.trainer = event.trainer
                self.run_dir = self.run_dir or Path(event.trainer.out_dir)
                if self._stop_asked is not None:
                    self.trainer.stop(*self._stop_asked)
            elif isinstance(event, StateEvent) and self.state != "stopping":
                self._set_state(event.state)
            elif isinstance(event, CheckpointEvent):
                self.run_dir = Path(event.path)
                self.app.workspace.checkpoint = self.run_dir
            elif isinstance(event, DoneEvent):
                self._set_state(ENDED.get(event.reason, "stopped"))
            elif isinstance(event, RunEnded):
                if self.alive:  # it never ran
                    self._set_state("failed" if event.error else "stopped")
        self.events.publish(message.events)
        if self._exit_when_done and any(isinstance(e, RunEnded) for e in message.events):
            self.app.exit()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.app.refresh_bindings()


FLAG_WORDS = {"--out": "run name", "--resume": "start from", "--data": "training file (Datasets, F2)",
              "--val-data": "testing file"}


def app_words(message: str) -> str:
    """An engine message in the app's words: a setting's command-line flag becomes the
    form field's name (``--block-size`` -> ``block-size``), other flags the app's control."""
    from mnemos.config import SETTINGS

    labels = {s.flag: s.label for s in SETTINGS}
    return re.sub(r"--[a-z][a-z-]*", lambda m: labels.get(m.group(0), FLAG_WORDS.get(m.group(0), m.group(0))),
                  message)
