"""``MnemosScreen``: the frame every top-level screen shares (header, body, footer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header

from mnemos_tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from mnemos_tui.app import MnemosApp
    from mnemos_tui.workspace import Workspace


# ctrl+f on every screen with a checkpoint list (Evaluate, Generate, Inspect). Keys that move
# the focus are priority bindings: taken before the focused widget sees them, so the keys
# typed right after them go where they moved the focus (a plain binding runs only once the
# focused widget has passed the key up, after the next keys were already handed to it).
CHECKPOINT_KEY = Binding("ctrl+f", "focus_checkpoint", "Checkpoint", show=False, priority=True,
                         tooltip="Choose the checkpoint")
PROMPT_KEY = Binding("ctrl+e", "focus_prompt", "Prompt", priority=True, tooltip="Back to the prompt")
NARROW = 100  # below this many columns the app has the -narrow class: side panes shrink


class MnemosScreen(Screen):
    """A top-level screen: subclasses give ``SUB_TITLE`` (shown in the header after the
    app's title) and ``compose_body()``, and call ``super().on_mount()`` if they mount."""

    SUB_TITLE = ""

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield from self.compose_body()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.app.set_class(self.app.size.width < NARROW, "-narrow")

    def on_resize(self, event: events.Resize) -> None:
        self.app.set_class(event.size.width < NARROW, "-narrow")

    def action_focus_checkpoint(self) -> None:
        """ctrl+f: to the screen's checkpoint list (screens with one bind CHECKPOINT_KEY).
        ``set_focus`` at once, not ``focus()`` (which waits its turn behind keys already
        typed): so are the other "go to" keys."""
        from mnemos_tui.widgets.checkpoint_select import CheckpointSelect

        self.set_focus(self.query_one(CheckpointSelect))

    @property
    def mnemos(self) -> "MnemosApp":
        from mnemos_tui.app import MnemosApp

        return cast(MnemosApp, self.app)

    @property
    def workspace(self) -> "Workspace":
        return self.mnemos.workspace

    def report(self, error: BaseException, title: str = "Error") -> None:
        """Show an error as a notification; the screen stays usable."""
        from mnemos.errors import MnemosError

        message = str(error) if isinstance(error, MnemosError) else f"{type(error).__name__}: {error}"
        self.notify(message, title=title, severity="error", timeout=8)
