"""Train: the hyperparameter form, keyboard control of a run, and its live view.

The run is ``mnemos.trainer.Trainer`` in a thread worker; its events arrive through an
``EventBridge`` (coalesced, at most 5 messages a second) and update the numbers, the
progress bar and the sparkline; the loss plot is redrawn at most twice a second.
Pause / resume / stop / save call the trainer's thread-safe controls, which act
between steps.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, ProgressBar, Select, Sparkline, Static
from textual.worker import get_current_worker

from mnemos.budget import format_duration
from tui.bridge import EngineEvents, EventBridge
from tui.screens.base import MnemosScreen
from mnemos.config import AUTO_BUDGET_S, AUTO_PRESET
from tui.widgets.auto_plan import AutoPlan
from tui.widgets.hparam_form import HyperparamForm
from tui.widgets.induction_strip import InductionStrip
from tui.widgets.loss_plot import LossPlot
from tui.widgets.train_stats import TrainStats

NEW_RUN = "__new__"
SPARK_POINTS = 120
PLOT_INTERVAL = 0.5  # seconds between loss plot redraws while training


class TrainScreen(MnemosScreen):
    SUB_TITLE = "Train"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start"),
        Binding("ctrl+b", "pause", "Pause"),
        Binding("ctrl+b", "resume", "Resume"),
        Binding("ctrl+t", "stop", "Stop"),
        Binding("ctrl+s", "save_now", "Save now"),
        Binding("ctrl+l", "log_scale", "Log scale"),
        Binding("ctrl+y", "replay", "Replay"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.trainer = None  # the live run's Trainer (set by the worker)
        self._exit_when_done = False  # quitting: exit the app when the worker ends
        self._plot_due = 0.0
        self._losses: list[float] = []
        self._view_failed = False  # the live view raised once this run (said once, saved once)
        self._auto_planned_for = None  # the training file auto last chose for

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="train-main"):
            with Vertical(id="train-setup", classes="pane") as setup:
                setup.border_title = "Run"
                yield Static(id="train-files")
                with Horizontal(classes="form-row"):
                    yield Label("start from", classes="form-label")
                    yield Select([("new run", NEW_RUN)], value=NEW_RUN, allow_blank=False,
                                 id="start-from", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("run name", classes="form-label")
                    yield Input(placeholder="date and time", id="run-name", compact=True)
                yield HyperparamForm(AUTO_PRESET, id="hparams")
                yield AutoPlan(id="auto-plan")
            with Vertical(id="train-live", classes="pane") as live:
                live.border_title = "Live"
                yield TrainStats(id="train-stats")
                with Horizontal(id="train-progress"):
                    yield ProgressBar(total=1, show_eta=False, id="train-bar")
                    yield Label("", id="train-phase")
                yield LossPlot(id="loss-plot")
                yield Sparkline([], id="loss-spark")
                yield InductionStrip(id="induction-strip")
                with VerticalScroll(id="train-sample") as sample:
                    sample.border_title = "Sample at the last evaluation"
                    yield Static("A sample of generated text appears here at each evaluation.",
                                 id="sample-text")

    def on_mount(self) -> None:
        super().on_mount()
        self.mnemos.train_screen = self
        self.refresh_sources()

    def on_screen_resume(self) -> None:
        self.refresh_sources()

    # -- setup ------------------------------------------------------------------------

    def refresh_sources(self) -> None:
        """Show the chosen files and refill the checkpoint list (new files, new runs)."""
        ws = self.workspace
        text = Text()
        text.append("train ", style="bold")
        text.append(ws.show(ws.train_file))
        text.append("\nval   ", style="bold")
        text.append("last 10% of the training tokens")
        text.append("\n(change them on Datasets, F2)", style="dim")
        self.query_one("#train-files", Static).update(text)
        if self.running:
            return
        if self.query_one(HyperparamForm).preset == AUTO_PRESET and ws.train_file != self._auto_planned_for:
            self.plan_auto()  # another training file: auto chooses again
        from mnemos.checkpoint import list_checkpoints

        select = self.query_one("#start-from", Select)
        current = select.value
        options = [("new run", NEW_RUN)]
        try:
            options += [(f"resume {info.name} (step {info.step})", info.path)
                        for info in list_checkpoints(ws.checkpoints_dir) if info.problem is None]
        except OSError as exc:
            self.report(exc)
        select.set_options(options)
        if current in {value for _, value in options}:
            select.value = current

    # -- auto (mnemos.autosize): the form's values and the reasons, for the training file

    @on(HyperparamForm.AutoWanted)
    def plan_auto(self) -> None:
        """Let auto choose for the training file; its reasons show under the form."""
        form = self.query_one(HyperparamForm)
        self._auto_planned_for = self.workspace.train_file
        self.query_one(AutoPlan).plan(self.workspace.train_file, form.value("time_budget") or AUTO_BUDGET_S,
                                      form.value("workers") or 1)

    @on(AutoPlan.Planned)
    def _auto_planned(self, event: AutoPlan.Planned) -> None:
        self.query_one(HyperparamForm).apply_auto(event.choice)

    @on(HyperparamForm.Changed)
    def _auto_shown(self, event: HyperparamForm.Changed) -> None:
        self.query_one(AutoPlan).set_class(event.form.preset != AUTO_PRESET, "hidden")

    @on(Select.Changed, "#start-from")
    def _start_from_changed(self, event: Select.Changed) -> None:
        form = self.query_one(HyperparamForm)
        if event.value == NEW_RUN or event.value == Select.NULL:
            form.set_resuming(False)
            return
        from mnemos.checkpoint import checkpoint_info

        info = checkpoint_info(str(event.value))
        if info.problem:
            self.notify(info.problem, severity="error")
            return
        form.set_values({**info.model_config, **info.train_config})
        form.set_resuming(True)

    # -- controls ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A run is alive (preparing, running, paused or stopping)."""
        return self.trainer is not None and self.trainer.state not in ("idle", "done")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer shows what makes sense now: True active, None greyed out, False hidden
        (pause and resume share ctrl+b; only one of them is ever shown)."""
        state = self.trainer.state if self.trainer is not None else "idle"
        if action == "start":
            return None if self.running else True
        if action == "pause":
            return True if state == "running" else (False if state == "paused" else None)
        if action == "resume":
            return state == "paused"
        if action in ("stop", "save_now"):
            return True if state in ("running", "paused") else None
        return True

    def action_start(self) -> None:
        if self.running:
            self.notify("A run is already going: stop it first (ctrl+t)", severity="warning")
            return
        form = self.query_one(HyperparamForm)
        try:
            model_cfg, train_cfg = form.configs()
        except Exception as exc:
            self.report(exc, "Cannot start")
            return
        resume = self.query_one("#start-from", Select).value
        ws = self.workspace
        if resume == NEW_RUN and ws.train_file is None:
            self.notify("No training file: choose one on Datasets (F2) or fetch the sample corpus there",
                        title="Cannot start", severity="error")
            return
        run_name = self.query_one("#run-name", Input).value.strip()
        if run_name and (Path(run_name).name != run_name or run_name.startswith(".")):
            self.notify("A run name is a plain folder name (no / or leading dot)", title="Cannot start",
                        severity="error")
            return
        self._reset_live()
        self.query_one(HyperparamForm).disabled = True
        self.query_one("#start-from", Select).disabled = True
        self.query_one("#run-name", Input).disabled = True
        self.trainer = None
        self.run_training(model_cfg, train_cfg, None if resume == NEW_RUN else Path(str(resume)), run_name)
        self.refresh_bindings()

    def action_pause(self) -> None:
        if self.trainer is not None:
            self.trainer.pause()

    def action_resume(self) -> None:
        if self.trainer is not None:
            self.trainer.unpause()

    def action_stop(self) -> None:
        if self.trainer is not None:
            self.trainer.stop()
            self._set_state("stopping")

    def action_save_now(self) -> None:
        if self.trainer is not None:
            self.trainer.save_now()
            self.notify("Saving a checkpoint after this step ...")

    def action_replay(self) -> None:
        """The learning replay: the fixed prompt's sample at every evaluation so far."""
        from mnemos.inspect import replay, replay_frames
        from tui.widgets.replay import ReplayDialog

        if self.trainer is not None:
            frames = replay_frames(list(self.trainer.metrics))
        elif self.workspace.checkpoint is not None:
            frames = replay(self.workspace.checkpoint)
        else:
            frames = []
        self.app.push_screen(ReplayDialog(frames))

    def action_log_scale(self) -> None:
        self.query_one(LossPlot).toggle_log_scale()

    def quit_training(self, save: bool) -> None:
        """Stop the run (saving a final checkpoint unless ``save`` is False), then exit
        the app once the worker has finished."""
        self._exit_when_done = True
        if self.trainer is not None:
            self.trainer.stop(reason="interrupt", save=save)
        self._set_state("stopping")

    # -- the worker -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def run_training(self, model_cfg, train_cfg, resume_dir: Path | None, run_name: str = "") -> None:
        from mnemos.config import setting_values
        from mnemos.trainer import Trainer

        worker = get_current_worker()
        bridge = EventBridge(self.post_message)

        def callback(event) -> None:
            bridge(event)
            if worker.is_cancelled and self.trainer is not None:
                self.trainer.stop()

        ws = self.workspace
        try:
            if resume_dir is None:
                out_dir = str(ws.checkpoints_dir / run_name) if run_name else None  # None: a dated folder
                trainer = Trainer.new(model_cfg, train_cfg, str(ws.train_file), out_dir=out_dir,
                                      callback=callback, runs_root=ws.checkpoints_dir)
            else:  # the form's settings (its shape fields hold the run's own, locked)
                trainer = Trainer.from_checkpoint(str(resume_dir), callback=callback,
                                                  **setting_values(model_cfg, train_cfg))
            self.trainer = self.mnemos.trainer = trainer
            self.app.call_from_thread(self.refresh_bindings)
            trainer.run()
        except Exception as exc:  # the app stays up: the error becomes a notification
            bridge.flush()
            self.app.call_from_thread(self.report, exc, "Training stopped")
        finally:
            bridge.flush()
            self.app.call_from_thread(self._run_ended)

    # -- events -----------------------------------------------------------------------

    @on(EngineEvents)
    def _engine_events(self, message: EngineEvents) -> None:
        try:
            self._show_events(message.events)
        except Exception as exc:  # a display bug must stop neither the screen nor the run: save, say so once
            if not self._view_failed and self.trainer is not None:
                self.trainer.save_now()
                self.report(exc, "The live view failed; the run saves a checkpoint now and goes on")
            self._view_failed = True

    def _show_events(self, events: list) -> None:
        from mnemos import events as ev

        steps = [e for e in events if isinstance(e, ev.StepEvent)]
        plot = self.query_one(LossPlot)
        if steps:
            plot.add_train([e.step for e in steps], [e.loss for e in steps])
            self._losses = (self._losses + [e.loss for e in steps])[-SPARK_POINTS:]
            self._show_step(steps[-1])
        for event in events:
            self._handle(event, plot)
        now = time.monotonic()
        if now >= self._plot_due or any(not isinstance(e, ev.StepEvent) for e in events):
            plot.replot()
            self._plot_due = now + PLOT_INTERVAL

    def _handle(self, event, plot: LossPlot) -> None:
        from mnemos import events as ev

        stats = self.query_one(TrainStats)
        if isinstance(event, ev.PrepareEvent):
            bar = self.query_one("#train-bar", ProgressBar)
            bar.update(total=event.total or None, progress=event.done)
            self.query_one("#train-phase", Label).update(event.message or event.phase)
            stats.set(state="preparing")
        elif isinstance(event, ev.EvalEvent):
            plot.add_val(event.step, event.val_loss)
            self.query_one(InductionStrip).add(event)
            stats.set(val_loss=_loss(event.val_loss), best_val_loss=_loss(event.best_val_loss))
        elif isinstance(event, ev.SampleEvent):
            sample = self.query_one("#train-sample")
            sample.border_title = f"Sample at step {event.step} (val loss {event.val_loss:.3f})"
            self.query_one("#sample-text", Static).update(Text(event.prompt + event.text))
        elif isinstance(event, ev.CheckpointEvent):
            self.workspace.checkpoint = Path(event.path)
            if event.reason in ("manual", "final", "interrupt"):
                self.notify(f"Checkpoint saved at step {event.step}: {self.workspace.show(Path(event.path))}")
        elif isinstance(event, ev.StateEvent):
            self._set_state(event.state)
        elif isinstance(event, ev.DoneEvent):
            self._set_state("done")
            if event.checkpoint:
                self.workspace.checkpoint = Path(event.checkpoint)
            loss = f", loss {event.loss:.4f}" if event.loss is not None else ""
            self.notify(f"Training {event.reason} at step {event.step}{loss}",
                        severity="error" if event.reason == "error" else "information")
        elif isinstance(event, ev.WarningEvent):
            self.notify(event.message, title="Training warning", severity="warning", timeout=10)
        elif isinstance(event, ev.ErrorEvent):
            self.notify(event.message, title="Training error", severity="error", timeout=10)

    def _show_step(self, e) -> None:
        bar = self.query_one("#train-bar", ProgressBar)
        bar.update(total=e.max_steps, progress=e.step)
        budgeted = e.time_budget_s is not None  # max_steps is then the planned last step, re-estimated as it goes
        total = f"~{e.max_steps:,}" if budgeted and e.step < e.max_steps else f"{e.max_steps:,}"  # exact at the end
        phase = f"step {e.step:,} of {total}"
        if budgeted:
            phase += (f" · {format_duration(e.budget_left_s)} of the {format_duration(e.time_budget_s)} "
                      f"time budget left")
        # fixed size (1fr x 1): no new layout needed, several times a second
        self.query_one("#train-phase", Label).update(phase, layout=False)
        self.query_one(TrainStats).set(
            step=f"{e.step:,} / {total}", loss=f"{e.loss:.4f}", tokens_per_s=f"{e.tokens_per_s:,.0f}",
            lr=f"{e.lr:.2e}", grad_norm=f"{e.grad_norm:.3f}", elapsed=format_duration(e.elapsed_s),
            eta=format_duration(e.eta_s))
        self.query_one("#loss-spark", Sparkline).data = list(self._losses)

    def _set_state(self, state: str) -> None:
        self.query_one(TrainStats).set(state=state)
        self.refresh_bindings()

    def _reset_live(self) -> None:
        self._losses = []
        self._view_failed = False
        self.query_one(LossPlot).clear_data()
        self.query_one(LossPlot).replot()
        self.query_one("#loss-spark", Sparkline).data = []
        self.query_one(InductionStrip).clear()
        self.query_one(TrainStats).reset()
        self.query_one(TrainStats).set(state="starting")
        self.query_one("#train-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-phase", Label).update("")

    def _run_ended(self) -> None:
        self.query_one(HyperparamForm).disabled = False
        self.query_one("#start-from", Select).disabled = False
        self.query_one("#run-name", Input).disabled = False
        state = self.trainer.state if self.trainer is not None else "idle"
        self._set_state(state if state != "idle" else "idle")
        self.refresh_sources()
        if self._exit_when_done:
            self.app.exit()


def _loss(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
