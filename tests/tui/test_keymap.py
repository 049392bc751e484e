"""One key map: a key means one thing on every screen, every action is in the palette,
F1 lists each key once, and the footer shows whole keys at 80 and 120 columns.

A guard for the future: a new binding that reuses a key for something else (ctrl+t
stopped training on Train but toggled token boundaries on Generate) fails here."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import partial

import pytest
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widget import Widget

import mnemos_tui.screens
import mnemos_tui.widgets
from mnemos_tui.app import SCREENS, MnemosApp
from mnemos_tui.screens.compare import CompareScreen
from test_checkpoints import with_metrics
from tui_helpers import make_checkpoint, wait_until

pytestmark = pytest.mark.anyio

# Keys that act on what has focus (move in a list, a map, a chart; select; close): their
# meaning is "this way" or "this one" wherever they are, so they may differ per pane.
FOCUS_KEYS = {"up", "down", "left", "right", "home", "end", "pageup", "pagedown", "enter", "escape", "space"}


def _classes_with_bindings() -> list[type]:
    """The app, its screens and every widget of tui/ with BINDINGS (dialogs excepted:
    a modal dialog takes every key while it is open and shows its own buttons)."""
    found: list[type] = [MnemosApp]
    for package in (mnemos_tui.screens, mnemos_tui.widgets):
        for module_info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            for _name, cls in inspect.getmembers(module, inspect.isclass):
                if (cls.__module__ == module.__name__ and issubclass(cls, Widget)
                        and not issubclass(cls, ModalScreen) and "BINDINGS" in vars(cls)):
                    found.append(cls)
    return found


def test_every_key_means_one_thing_everywhere():
    meanings: dict[str, dict[tuple[str, str], list[str]]] = {}
    classes = _classes_with_bindings()
    assert {entry.load() for entry in SCREENS} <= set(classes) and CompareScreen in classes
    for cls in classes:
        for binding in Binding.make_bindings(cls.BINDINGS):
            if binding.key in FOCUS_KEYS:
                continue
            meaning = (binding.action, binding.description)
            meanings.setdefault(binding.key, {}).setdefault(meaning, []).append(cls.__name__)
    clashes = {key: found for key, found in meanings.items() if len(found) > 1}
    assert not clashes, f"keys bound to more than one action or description: {clashes}"
    # and the ones the issue named: one meaning each
    assert [a for a, _d in meanings["ctrl+x"]] == ["stop"]
    assert [a for a, _d in meanings["ctrl+t"]] == ["tokens"]
    assert [a for a, _d in meanings["ctrl+l"]] == ["log_scale"]


def test_every_binding_has_a_description():
    """Footer, F1 and palette are built from descriptions: a binding without one is invisible."""
    missing = [(cls.__name__, b.key) for cls in _classes_with_bindings()
               for b in Binding.make_bindings(cls.BINDINGS) if not b.description]
    assert not missing


async def test_every_action_is_in_the_command_palette(workspace):
    app = MnemosApp(root=workspace, start="datasets")
    async with app.run_test() as pilot:
        await pilot.pause()
        commands = list(app.get_system_commands(app.screen))
        reachable = {(c.callback.args[0], c.callback.args[1]) for c in commands
                     if isinstance(c.callback, partial) and len(c.callback.args) == 2}
        for entry in SCREENS:
            for binding in Binding.make_bindings(entry.load().BINDINGS):
                assert (entry.mode, binding.action) in reachable, f"{entry.title}: {binding.key} {binding.action}"
        app_actions = {b.action for b in Binding.make_bindings(app.BINDINGS)}
        titles = " | ".join(c.title for c in commands)
        for entry in SCREENS:
            assert f"Go to {entry.title} ({entry.key.upper()})" in titles
        assert {"help", "guide", "quit"} <= app_actions
        assert "Help (F1)" in titles and "Guide (ctrl+g)" in titles and "Quit" in titles
        # a screen opened from another one: its keys are offered while it is shown
        runs = [with_metrics(make_checkpoint(workspace, name), 1.0) for name in ("a", "b")]
        await app.push_screen(CompareScreen(runs))
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        here = [c.title for c in app.get_system_commands(app.screen)]
        for binding in Binding.make_bindings(CompareScreen.BINDINGS):
            assert f"Compare runs: {binding.tooltip}" in here


async def test_help_lists_each_key_once_per_screen(workspace):
    from mnemos_tui.screens.help import HelpScreen, _binding_rows

    app = MnemosApp(root=workspace, start="datasets")
    async with app.run_test() as pilot:
        await pilot.pause()
        for entry in SCREENS:
            cls = entry.load()
            rows = _binding_rows(app, cls.BINDINGS)
            for pane, pane_cls in getattr(cls, "HELP_PANES", ()):
                rows += _binding_rows(app, pane_cls.BINDINGS, pane)
            descriptions = [description for _keys, description in rows]
            assert len(descriptions) == len(set(descriptions)), f"{entry.title}: {descriptions}"
            for binding in Binding.make_bindings(cls.BINDINGS):  # every key is in some row
                key = app.get_key_display(binding)
                assert any(key in keys.split(" / ") or (key.isdigit() and keys.startswith("1 … ")) for keys, _d in rows)
        inspect_rows = dict(_binding_rows(app, entry.load().BINDINGS))
        assert inspect_rows["1 … 8"].startswith("The tokens view / The next view")  # the views: one row
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


def _footer(app) -> str:
    return " ".join(f"{key.key_display} {key.description}".strip() for key in app.screen.query("FooterKey"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_footer_shows_whole_keys_screen_keys_first(workspace, size):
    make_checkpoint(workspace)
    app = MnemosApp(root=workspace, start="train")
    async with app.run_test(size=size) as pilot:
        for entry in SCREENS:
            await pilot.press(entry.key)
            await wait_until(pilot, lambda: type(app.screen) is entry.load() and app.screen.query("FooterKey"),
                             f"the {entry.title} footer")
            await pilot.pause()
            keys = list(app.screen.query("FooterKey"))
            used = sum(len(k.key_display) + 1 + len(k.description) + 1 for k in keys)
            assert used <= size[0], _footer(app)
            shown = list(dict.fromkeys(b.description for node, b, _e, _t in app.screen.active_bindings.values()
                                       if b.show and node is app.screen))  # the screen's keys offered now
            assert shown[:4] == [k.description for k in keys[:len(shown[:4])]], (entry.title, _footer(app))
            if size[0] >= 120:  # everything fits: all the screen's keys, help and the screen keys
                assert set(shown) <= {k.description for k in keys}, _footer(app)
                assert "f1 Help" in _footer(app) and "f2…f7 Screens" in _footer(app)


def type_ahead(app, *keys: str) -> None:
    """Keys as a terminal sends them when typed ahead (tmux send-keys, a fast typist): all
    queued at once, none waiting for the one before to be handled (Pilot's press waits)."""
    from textual import events

    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def test_keys_typed_right_after_switching_screens_reach_the_new_screen(workspace):
    """Issue 14.10: "F5 hello" lost the "hello" (it went to the Datasets tree, where `e`
    chose a test file) and "F7 ctrl+e XYZ" typed XYZ into the screen being left."""
    make_checkpoint(workspace)
    app = MnemosApp(root=workspace, start="datasets")
    async with app.run_test() as pilot:
        await pilot.pause()
        type_ahead(app, "f5", "h", "e", "y")  # the first visit: the screen is built while the keys wait
        await wait_until(pilot, lambda: app.screen.query("#prompt") and app.screen.query_one("#prompt").value,
                         "the typed text")
        assert app.screen.query_one("#prompt").value == "hey"
        type_ahead(app, "f7", "ctrl+e", "!")  # a slow first visit, then a key that moves the focus
        await wait_until(pilot, lambda: app.screen.query("#inspect-prompt")
                         and app.screen.query_one("#inspect-prompt").value.endswith("!"), "the typed text")
        type_ahead(app, "f5", "!")  # back to a screen already built
        await wait_until(pilot, lambda: app.current_mode == "generate", "Generate")
        await pilot.pause()
        assert app.screen.query_one("#prompt").value == "hey!"
