"""F1: every key of the app and of each screen, read from their ``BINDINGS`` (and from
those of the panes a screen names in ``HELP_PANES``).

Built from the bindings themselves, so the help cannot drift from the keys; one row per
action (``left / right  Head − / Head +``), so no key is listed twice.
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
    ("f2 … f7", "The screens: each one below, with its keys"),
]


def _binding_rows(app, bindings, pane: str = "") -> list[tuple[str, str]]:
    """One row per action method: its keys together (``d / delete``), and the steps of one
    action too (``left / right``: head − / head +; ``1 / 2 …``: the views). ``pane`` names
    the pane the keys act in."""
    rows: dict[str, tuple[list[str], list[str]]] = {}
    for b in Binding.make_bindings(bindings):
        if not b.description:
            continue
        keys, words = rows.setdefault(b.action.partition("(")[0], ([], []))
        said = b.tooltip or b.description  # the longer words where there are some
        if app.get_key_display(b) not in keys:
            keys.append(app.get_key_display(b))
        if said not in words:
            words.append(said)
    prefix = f"{pane}: " if pane else ""
    return [(_keys_text(keys), prefix + " / ".join(words)) for keys, words in rows.values()]


def _keys_text(keys: list[str]) -> str:
    """``d / del``; a run of digits as ``1 … 8`` (it fits the key column)."""
    if len(keys) > 2 and all(key.isdigit() for key in keys):
        return f"{keys[0]} … {keys[-1]}"
    return " / ".join(keys)


class HelpScreen(ModalScreen[None]):
    """The list of keys, one table per screen."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close help"),
                Binding("g", "guide", "How it works: the guide")]

    def compose(self) -> ComposeResult:
        from mnemos_tui.app import SCREENS

        with VerticalScroll(id="help-body") as scroll:
            scroll.border_title = "Keys (Esc closes, g opens the guide: how the model works)"
            yield Static(self._table("Everywhere", GENERAL + _binding_rows(self.app, [
                b for b in self.app.BINDINGS if not (b.id or "").startswith("screen.")])))
            for entry in SCREENS:
                screen_cls = entry.load()
                rows = _binding_rows(self.app, screen_cls.BINDINGS)
                for pane, pane_cls in getattr(screen_cls, "HELP_PANES", ()):
                    rows += _binding_rows(self.app, pane_cls.BINDINGS, pane)
                rows += getattr(screen_cls, "EXTRA_KEYS", [])
                yield Static(self._table(f"{entry.title} ({entry.key.upper()}) — {entry.help}", rows))

    def action_guide(self) -> None:
        from mnemos_tui.screens.guide import GuideScreen

        self.app.push_screen(GuideScreen())

    def _table(self, title: str, rows: list[tuple[str, str]]) -> Table:
        table = Table(title=Text(title, style="bold"), title_justify="left", show_header=False,
                      box=None, expand=True, padding=(0, 1))
        table.add_column("key", style="bold", width=24, no_wrap=True)
        table.add_column("action", ratio=1)
        for key, description in rows:
            table.add_row(key, description)
        return table
