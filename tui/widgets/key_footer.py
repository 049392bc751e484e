"""``KeyFooter``: Textual's compact footer that never cuts a key in two.

Textual's footer lays every shown binding out in one row and cuts it at the screen's
edge ("f3 T▏" at 120 columns; at 80 only the palette key was left). This one shows the
screen's own keys first, then the focused pane's, then F1, then "f2…f7 Screens" (one item for the six screen
keys), and leaves out whole any key that does not fit: F1 and the command palette list
them all. It is laid out again when the terminal is resized.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

SCREEN_KEYS = ("f2…f7", "Screens")  # the one footer item for the app's screen keys (F1 lists them)


def _width(key: str, description: str) -> int:
    """Columns a compact footer item takes: key, space, description, margin."""
    return len(key) + 1 + len(description) + 1


class KeyFooter(Footer):
    """The app's footer: the screen's keys first, each whole or not at all."""

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._laid_out_for = 0

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        room = self.app.size.width
        if palette is not None:
            room -= _width(self.app.get_key_display(palette[1]), palette[1].description) + 2
        self._laid_out_for = self.app.size.width
        shown: set[str] = set()
        rank = lambda item: 0 if item[0] is self.screen else 2 if item[0] is self.app else 1
        for _node, binding, enabled, tooltip in sorted(active.values(), key=rank):  # screen, pane, app
            if not binding.show or binding.action in shown:
                continue
            key = self.app.get_key_display(binding)
            width = _width(key, binding.description)
            if width > room:
                continue
            room -= width
            shown.add(binding.action)
            yield FooterKey(binding.key, key, binding.description, binding.action, disabled=not enabled,
                            tooltip=tooltip or binding.tooltip).data_bind(compact=Footer.compact)
        if _width(*SCREEN_KEYS) <= room and "help" in {b.action for _n, b, _e, _t in active.values()}:
            yield FooterKey("f1", *SCREEN_KEYS, "app.help", tooltip="F2 Datasets · F3 Train · F4 Evaluate · "
                            "F5 Generate · F6 Checkpoints · F7 Inspect").data_bind(compact=Footer.compact)
        if palette is not None and self.show_command_palette:
            _node, binding, enabled, tooltip = palette
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            classes="-command-palette", disabled=not enabled, tooltip=binding.tooltip)

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and self.app.size.width != self._laid_out_for:
            self.call_after_refresh(self.recompose)
