"""F1: every key of the app and of each screen, read from their ``BINDINGS``.

Built from the bindings themselves, so the help cannot drift from the keys.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

GENERAL = [
    ("tab / shift+tab", "Move between fields and panes"),
    ("ctrl+p", "Command palette: go to any screen, change the theme"),
    ("up / down / pgup / pgdn", "Scroll the focused list, log or table"),
    ("enter", "Select / submit"),
]


def _binding_rows(app, bindings) -> list[tuple[str, str]]:
    """One row per action: actions sharing a key (pause and resume) share its row, and
    keys doing the same thing (delete, d) are listed together."""
    by_key: dict[str, list[str]] = {}
    for b in Binding.make_bindings(bindings):
        if b.description and b.description not in by_key.setdefault(app.get_key_display(b), []):
            by_key[app.get_key_display(b)].append(b.description)
    by_action: dict[str, list[str]] = {}
    for key, descriptions in by_key.items():
        if descriptions:
            by_action.setdefault(" / ".join(descriptions), []).append(key)
    return [(" / ".join(keys), action) for action, keys in by_action.items()]


class HelpScreen(ModalScreen[None]):
    """The list of keys, one table per screen."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close help"),
                Binding("g", "guide", "How it works: the guide")]

    def compose(self) -> ComposeResult:
        from tui.app import SCREENS

        with VerticalScroll(id="help-body") as scroll:
            scroll.border_title = "Keys (Esc closes, g opens the guide: how the model works)"
            yield Static(self._table("Everywhere", GENERAL + _binding_rows(self.app, self.app.BINDINGS)))
            for entry in SCREENS:
                screen_cls = entry.load()
                rows = _binding_rows(self.app, screen_cls.BINDINGS)
                rows += getattr(screen_cls, "EXTRA_KEYS", [])
                yield Static(self._table(f"{entry.title} ({entry.key.upper()}) — {entry.help}", rows))

    def action_guide(self) -> None:
        from tui.screens.guide import GuideScreen

        self.app.push_screen(GuideScreen())

    def _table(self, title: str, rows: list[tuple[str, str]]) -> Table:
        table = Table(title=Text(title, style="bold"), title_justify="left", show_header=False,
                      box=None, expand=True, padding=(0, 1))
        table.add_column("key", style="bold", width=24, no_wrap=True)
        table.add_column("action", ratio=1)
        for key, description in rows:
            table.add_row(key, description)
        return table
