"""``ReplayView``: the learning replay. The run's fixed prompt, completed at every
evaluation, played back frame by frame next to the loss at that step, so you watch the
text go from noise to words. Frames come from ``mnemos.inspect.replay``."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widget import Widget

from mnemos.inspect import ReplayFrame

SPARK = "▁▂▃▄▅▆▇█"
# An early, untrained sample is noise: show its control characters as escapes, not raw.
_CONTROLS = str.maketrans({c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if chr(c) not in "\n\t"})


def spark_strip(values: list[float | None], current: int | None = None) -> Text:
    """One character per value, its height the value between the lowest and the highest
    ("?" where unknown); the ``current`` one marked."""
    known = [x for x in values if x is not None]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    out = Text()
    for i, x in enumerate(values):
        ch = "?" if x is None else SPARK[int((x - lo) / (hi - lo or 1.0) * (len(SPARK) - 1))]
        out.append(ch, style="bold reverse" if i == current else "")
    return out


def loss_strip(frames: list[ReplayFrame], current: int) -> Text:
    """One character per evaluation, its height the validation loss; the current one marked."""
    return spark_strip([f.val_loss for f in frames], current)


class ReplayView(Widget, can_focus=True):
    """←/→ step through evaluations, space plays them back."""

    DEFAULT_CSS = """
    ReplayView { height: auto; padding: 0 1; }
    """
    BINDINGS = [
        Binding("left", "frame(-1)", "Earlier"),
        Binding("right", "frame(1)", "Later"),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("space", "play", "Play / pause"),
    ]
    PLAY_INTERVAL = 0.8  # seconds per frame

    frame: reactive[int] = reactive(0)
    playing: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.frames: list[ReplayFrame] = []
        self._timer = None

    def show(self, frames: list[ReplayFrame]) -> None:
        self.frames = frames
        self.frame = max(len(frames) - 1, 0)
        self.refresh(layout=True)

    def action_frame(self, delta: int) -> None:
        if self.frames:
            self.frame = max(0, min(len(self.frames) - 1, self.frame + delta))

    def action_jump(self, where: int) -> None:
        if self.frames:
            self.frame = where % len(self.frames)

    def action_play(self) -> None:
        if not self.frames:
            return
        self.playing = not self.playing
        if self.playing:
            if self.frame == len(self.frames) - 1:
                self.frame = 0
            self._timer = self.set_interval(self.PLAY_INTERVAL, self._advance)
        elif self._timer is not None:
            self._timer.stop()

    def _advance(self) -> None:
        if self.frame >= len(self.frames) - 1:
            self.action_play()  # reached the end: stop
        else:
            self.frame += 1

    def watch_frame(self) -> None:
        self.refresh(layout=True)

    def render(self):
        if not self.frames:
            return Text("No samples recorded in this run yet: training records one completion of "
                        "its fixed prompt at each evaluation (--eval-interval).", style="dim")
        f = self.frames[self.frame]
        head = Text()
        head.append(f"evaluation {self.frame + 1}/{len(self.frames)} · step {f.step}", style="bold")
        if f.val_loss is not None:
            head.append(f" · validation loss {f.val_loss:.3f}")
        if f.train_loss is not None:
            head.append(f" · train loss {f.train_loss:.3f}")
        head.append("  ▶ playing" if self.playing else "", style="italic")
        body = Text()
        body.append(f.prompt.translate(_CONTROLS), style="dim")
        body.append(f.text.translate(_CONTROLS))
        strips = [Text("val loss   ").append_text(loss_strip(self.frames, self.frame))]
        if any(fr.induction_score is not None for fr in self.frames):  # runs from before issue 16 have none
            strips += [Text("in-context ").append_text(spark_strip([fr.icl_score for fr in self.frames], self.frame))
                       .append(_value(" late − early loss", f.icl_score), style="dim"),
                       Text("induction  ").append_text(
                           spark_strip([fr.induction_score for fr in self.frames], self.frame))
                       .append(_value(" best induction head", f.induction_score), style="dim")]
        return Group(head, *strips, Text(""), body)


def _value(label: str, value: float | None) -> str:
    return f" {value:+.2f}{label}" if value is not None else ""


class ReplayDialog(ModalScreen[None]):
    """The replay over any screen (the Train screen opens it during a run)."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, frames: list[ReplayFrame]) -> None:
        super().__init__()
        self.frames = frames

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Learning replay (←/→ evaluations, space plays, Esc closes)"
            yield ReplayView(id="replay-dialog-view")

    def on_mount(self) -> None:
        view = self.query_one(ReplayView)
        view.show(self.frames)
        view.focus()
