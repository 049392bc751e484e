"""Train: the hyperparameter form, keyboard control of a run, and its live view.

The run belongs to the app's ``TrainingSession`` (``mnemos_tui.session``): this screen calls its
controls (start, pause, unpause, stop, save now) and draws the batches of events it
publishes (at most 5 a second): the numbers, the progress bar and the sparkline; the
loss plot is redrawn at most twice a second. A resumed run shows its history first.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, ProgressBar, Select, Sparkline, Static

from mnemos import events as ev
from mnemos.budget import format_duration
from mnemos.config import AUTO_BUDGET_S, AUTO_PRESET
from mnemos.errors import MnemosError
from mnemos_tui.screens.base import MnemosScreen
from mnemos_tui.session import RunEnded, RunHistory, TrainingSession, app_words
from mnemos_tui.widgets.auto_plan import AutoPlan
from mnemos_tui.widgets.hparam_form import HyperparamForm
from mnemos_tui.widgets.induction_strip import InductionStrip
from mnemos_tui.widgets.loss_plot import LossPlot
from mnemos_tui.widgets.system_row import SystemRow
from mnemos_tui.widgets.train_stats import TrainStats

NEW_RUN = "__new__"
SPARK_POINTS = 120
PLOT_INTERVAL = 0.5  # seconds between loss plot redraws while training


class TrainScreen(MnemosScreen):
    SUB_TITLE = "Train"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", tooltip="Start training"),
        Binding("ctrl+b", "pause", "Pause/resume", tooltip="Pause or resume training"),
        Binding("ctrl+x", "stop", "Stop", priority=True, tooltip="Stop training (asks first; the run is saved)"),
        Binding("ctrl+s", "save", "Save", tooltip="Save a checkpoint now"),
        Binding("ctrl+l", "log_scale", "Log scale", tooltip="Loss plot: log scale on / off"),
        Binding("ctrl+y", "replay", "Replay", tooltip="The learning replay: the sample at each evaluation"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._plot_due = 0.0
        self._losses: list[float] = []  # the sparkline's last points
        self._best_val = math.inf  # the lowest validation loss shown this run
        self._view_failed = False  # the live view raised once this run (said once, saved once)
        self._auto_planned_for = None  # the training file auto last chose for
        self._saved_steps: dict[str, int] = {}  # the step each run in "start from" is at

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
                yield SystemRow(id="system-row")
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
        self.session.events.subscribe(self, self._engine_events)
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
            runs = [info for info in list_checkpoints(ws.checkpoints_dir) if info.problem is None]
        except OSError as exc:
            self.report(exc)
            runs = []
        options += [(f"resume {info.name} (step {info.step})", info.path) for info in runs]
        self._saved_steps = {info.path: info.step for info in runs}
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
        if event.valid:  # Datasets judges a file against these
            self.workspace.settings = (event.form.value("tokenizer_vocab"), event.form.value("block_size"))

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
    def session(self) -> "TrainingSession":
        return self.mnemos.session

    @property
    def running(self) -> bool:
        """A run is alive (starting, preparing, running, paused or stopping)."""
        return self.session.alive

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer shows what makes sense now: True active, None greyed out."""
        state = self.session.state
        if action == "start":
            return None if self.running else True
        if action in ("pause", "stop", "save"):
            return True if state in ("running", "paused") else None
        return True

    def action_start(self) -> None:
        if self.running:
            self.notify("A run is already going: stop it first (ctrl+x)", severity="warning")
            return
        form = self.query_one(HyperparamForm)
        try:
            model_cfg, train_cfg = form.configs()
        except MnemosError as exc:
            self.report(exc, "Cannot start")
            return
        resume = self.query_one("#start-from", Select).value
        ws = self.workspace
        if resume == NEW_RUN and ws.train_file is None:
            self.notify("No training file: choose one on Datasets (F2) or fetch the sample corpus there",
                        title="Cannot start", severity="error")
            return
        done = self._saved_steps.get(str(resume), 0)
        if resume != NEW_RUN and train_cfg.max_steps <= done:
            self.notify(f"This run is already at step {done:,}. To train it further, raise max-steps above "
                        f"{done:,} in the form, then start again.", title="Nothing left to train",
                        severity="warning", timeout=10)
            self.query_one("#f-max_steps", Input).focus()
            return
        run_name = self.query_one("#run-name", Input).value.strip()
        if run_name and (Path(run_name).name != run_name or run_name.startswith(".")):
            self.notify("A run name is a plain folder name (no / or leading dot)", title="Cannot start",
                        severity="error")
            return
        self._reset_live()
        self._set_form_enabled(False)
        self.session.start(model_cfg, train_cfg, ws.train_file, None if resume == NEW_RUN else Path(str(resume)),
                           ws.checkpoints_dir / run_name if run_name else None)

    def action_pause(self) -> None:
        """Pause a running run, resume a paused one (one key for both)."""
        if self.session.state == "paused":
            self.session.unpause()
        else:
            self.session.pause()

    def action_stop(self) -> None:
        """Stop the run after asking (it saves its last step; resume it from "start from")."""
        from mnemos_tui.screens.dialogs import ConfirmDialog

        if not self.session.alive:
            return
        self.app.push_screen(ConfirmDialog("Stop training? The last step is saved; you can resume the run later.",
                                           yes="Stop"), lambda yes: self.session.stop() if yes else None)

    def action_save(self) -> None:
        if self.session.alive:
            self.session.save_now()
            self.notify("Saving a checkpoint after this step ...")

    def action_replay(self) -> None:
        """The learning replay: the fixed prompt's sample at every evaluation so far."""
        from mnemos.inspect import replay, replay_frames
        from mnemos_tui.widgets.replay import ReplayDialog

        if self.session.trainer is not None:
            frames = replay_frames(list(self.session.trainer.metrics))
        elif self.workspace.checkpoint is not None:
            frames = replay(self.workspace.checkpoint)
        else:
            frames = []
        self.app.push_screen(ReplayDialog(frames))

    def action_log_scale(self) -> None:
        self.query_one(LossPlot).toggle_log_scale()

    # -- events -----------------------------------------------------------------------

    def _engine_events(self, events: list) -> None:
        """The session's signal: a batch of engine events, oldest first."""
        try:
            self._show_events(events)
        except Exception as exc:  # a display bug must stop neither the screen nor the run: save, say so once
            if not self._view_failed and self.session.alive:
                self.session.save_now()
                self.report(exc, "The live view failed; the run saves a checkpoint now and goes on")
            self._view_failed = True

    def _show_events(self, events: list) -> None:
        steps = [e for e in events if isinstance(e, ev.StepEvent)]
        plot = self.query_one(LossPlot)
        if steps:
            self._add_steps(plot, [(e.step, e.loss) for e in steps])
            self._show_step(steps[-1])
        for event in events:
            self._handle(event, plot)
        now = time.monotonic()
        if now >= self._plot_due or any(not isinstance(e, ev.StepEvent) for e in events):
            plot.replot()
            self._plot_due = now + PLOT_INTERVAL

    def _add_steps(self, plot: LossPlot, points: list[tuple[int, float]]) -> None:
        plot.add_train([s for s, _ in points], [v for _, v in points])
        self._losses = (self._losses + [v for _, v in points])[-SPARK_POINTS:]
        self.query_one("#loss-spark", Sparkline).data = list(self._losses)

    def _add_val(self, plot: LossPlot, step: int, loss: float) -> None:
        plot.add_val(step, loss)
        if math.isfinite(loss):
            self._best_val = min(self._best_val, loss)
        self.query_one(TrainStats).set(val_loss=_loss(loss), best_val_loss=_loss(self._best_val))

    def _handle(self, event, plot: LossPlot) -> None:
        stats = self.query_one(TrainStats)
        if isinstance(event, ev.PrepareEvent):
            if not plot.train_points:  # a resumed run keeps its progress on show
                self.query_one("#train-bar", ProgressBar).update(total=event.total or None, progress=event.done)
            self.query_one("#train-phase", Label).update(event.message or event.phase)
        elif isinstance(event, RunHistory):
            self._show_history(event.rows, plot)
        elif isinstance(event, ev.EvalEvent):
            self._add_val(plot, event.step, event.val_loss)
            self.query_one(InductionStrip).add(event)
        elif isinstance(event, ev.SampleEvent):
            sample = self.query_one("#train-sample")
            sample.border_title = f"Sample at step {event.step} (val loss {event.val_loss:.3f})"
            self.query_one("#sample-text", Static).update(Text(event.prompt + event.text))
        elif isinstance(event, ev.CheckpointEvent):
            if event.reason in ("manual", "final", "interrupt"):
                self.notify(f"Checkpoint saved at step {event.step}: {self.workspace.show(Path(event.path))}")
        elif isinstance(event, ev.DoneEvent):
            stats.set(eta="-")
            loss = f", loss {event.loss:.4f}" if event.loss is not None else ""
            self.notify(f"Training {event.reason} at step {event.step}{loss}",
                        severity="error" if event.reason == "error" else "information")
        elif isinstance(event, ev.WarningEvent):
            self.notify(app_words(event.message), title="Training warning", severity="warning", timeout=10)
        elif isinstance(event, ev.ErrorEvent):
            self.notify(app_words(event.message), title="Training error", severity="error", timeout=10)
        elif isinstance(event, RunEnded):
            if event.error:
                self.notify(event.error, title="Training stopped", severity="error", timeout=10)
            self._set_form_enabled(True)
            self.refresh_sources()
        stats.set(state=self.session.state)
        system = self.query_one(SystemRow)
        system.display, system.run_dir = self.session.alive, self.session.run_dir

    def _show_history(self, rows: list[dict], plot: LossPlot) -> None:
        """A resumed run: its curves, best validation loss and progress so far."""
        self._add_steps(plot, [(r["step"], r["loss"]) for r in rows
                               if r.get("event") == "step" and r.get("loss") is not None])
        for row in rows:
            if row.get("event") == "eval" and row.get("val_loss") is not None:
                self._add_val(plot, row["step"], row["val_loss"])
        last = next((r for r in reversed(rows) if r.get("event") == "step"), None)
        if last is not None:
            max_steps = self.query_one(HyperparamForm).configs()[1].max_steps
            self.query_one("#train-bar", ProgressBar).update(total=max_steps, progress=last["step"])
            self.query_one(TrainStats).set(step=f"{last['step']:,}/{max_steps:,}", loss=_loss(last["loss"]))

    def _show_step(self, e) -> None:
        bar = self.query_one("#train-bar", ProgressBar)
        bar.update(total=e.max_steps, progress=e.step)
        budgeted = e.time_budget_s is not None  # max_steps is then the planned last step, re-estimated as it goes
        total = f"~{e.max_steps:,}" if budgeted and e.step < e.max_steps else f"{e.max_steps:,}"  # exact at the end
        phase = f"step {e.step:,}/{total}"
        if budgeted:  # short enough to fit beside the bar at 120 columns
            phase += f" · {format_duration(e.budget_left_s)}/{format_duration(e.time_budget_s)} left"
        # fixed size (1fr x 1): no new layout needed, several times a second
        self.query_one("#train-phase", Label).update(phase, layout=False)
        self.query_one(TrainStats).set(
            step=f"{e.step:,}/{total}", loss=f"{e.loss:.4f}", tokens_per_s=f"{e.tokens_per_s:,.0f}",
            lr=f"{e.lr:.2e}", grad_norm=f"{e.grad_norm:.3f}", elapsed=format_duration(self._active_s(e)),
            eta=format_duration(e.eta_s))

    def _active_s(self, e) -> float:
        """How long the run has trained: its wall time less its pauses (the trainer's budget clock)."""
        trainer = self.session.trainer
        return trainer.budget_used_s if trainer is not None else e.elapsed_s

    def _set_form_enabled(self, enabled: bool) -> None:
        for widget in (self.query_one(HyperparamForm), self.query_one("#start-from"), self.query_one("#run-name")):
            widget.disabled = not enabled

    def _reset_live(self) -> None:
        self._losses = []
        self._best_val = math.inf
        self._view_failed = False
        self.query_one(LossPlot).clear_data()
        self.query_one(LossPlot).replot()
        self.query_one("#loss-spark", Sparkline).data = []
        self.query_one(InductionStrip).clear()
        self.query_one(TrainStats).reset()
        self.query_one("#train-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-phase", Label).update("")


def _loss(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
