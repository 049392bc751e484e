"""``MnemosApp``: the screen list, the global keys, and ``main()`` for ``mnemos-tui``.

Each top-level screen is a Textual *mode* (it keeps its state while you look at another
one). Adding a screen is one ``ScreenEntry`` in ``SCREENS``: its key binding, command
palette entry and help section follow from it. Screen modules (and through them NumPy
and the engine) are imported only when first shown, so the app starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from mnemos_tui.bridge import EngineEvents
from mnemos_tui.screens.base import MnemosScreen
from mnemos_tui.session import TrainingSession
from mnemos_tui.workspace import Workspace


EXIT_GRACE_S = 5.0  # after TERM or HUP: how long the app may take to end once its run is saved


@dataclass(frozen=True)
class ScreenEntry:
    """One top-level screen: its mode name, key, title, and ``module:Class``."""

    mode: str
    key: str
    title: str
    help: str
    target: str

    def load(self) -> type[Screen]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("datasets", "f2", "Datasets", "Browse text files, choose training and testing files",
                "mnemos_tui.screens.datasets:DatasetsScreen"),
    ScreenEntry("train", "f3", "Train", "Hyperparameters, start / pause / stop training, live loss",
                "mnemos_tui.screens.train:TrainScreen"),
    ScreenEntry("evaluate", "f4", "Evaluate", "Loss, perplexity and bits per byte of a checkpoint",
                "mnemos_tui.screens.evaluate:EvaluateScreen"),
    ScreenEntry("generate", "f5", "Generate", "Chat with a trained checkpoint",
                "mnemos_tui.screens.generate:GenerateScreen"),
    ScreenEntry("checkpoints", "f6", "Checkpoints", "List, inspect and delete saved runs",
                "mnemos_tui.screens.checkpoints:CheckpointsScreen"),
    ScreenEntry("inspect", "f7", "Inspect", "See inside a model: tokens, next-token odds, attention, anatomy, replay",
                "mnemos_tui.screens.inspect:InspectScreen"),
)


def _factory(entry: ScreenEntry):
    return lambda: entry.load()()


class MnemosApp(App[None]):
    """The Mnemos terminal app."""

    TITLE = "Mnemos"
    CSS_PATH = "mnemos.tcss"
    MODES = {entry.mode: _factory(entry) for entry in SCREENS}
    # One key map for the whole app: a key means one thing on every screen (ctrl+r starts,
    # ctrl+x stops, ctrl+s saves, ctrl+t colours the text by token ...; README lists them,
    # tests/tui/test_keymap.py keeps it so). The footer shows the screen's own keys first
    # (tui/widgets/key_footer.py); F2-F7 are summed up there as one item.
    BINDINGS = [
        # priority: taken before the focused widget sees them, so the keys typed after them
        # go to the screen they open (see action_switch_mode)
        Binding("f1", "help", "Help", priority=True),
        *(Binding(entry.key, f"switch_mode('{entry.mode}')", entry.title, id=f"screen.{entry.mode}", show=False,
                  priority=True) for entry in SCREENS),
        Binding("ctrl+g", "guide", "Guide", show=False, tooltip="How it works: the guide to the model"),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False, tooltip="Quit (asks to save a running run)"),
    ]

    def __init__(self, root: str | Path | None = None, data: str | Path | None = None,
                 checkpoint: str | Path | None = None, start: str | None = None) -> None:
        super().__init__()
        self.workspace = Workspace(Path(root) if root is not None else Path.cwd())
        self.workspace.ensure_folders()
        if data is not None:
            self.workspace.train_file = self.workspace.resolve(data)
        if checkpoint is not None:
            self.workspace.checkpoint = self.workspace.resolve(checkpoint)
        self.start_mode = start or ("generate" if checkpoint is not None else
                                    "train" if data is not None else "datasets")
        self.session = TrainingSession(self)  # the one training run, which screens observe
        self.stopped_by: int | None = None  # the signal (TERM, HUP) that ended the app, if one did
        self.hard_exit = None  # os._exit where the app is the process (main), for _exit_if_stuck
        self.strict_errors: bool | None = None  # None: unexpected errors end the app only when headless
        self._error_times: list[float] = []

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        try:  # `kill`, systemd (TERM) and a closed terminal (HUP) save a running run, as the CLI does
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored (nohup's HUP) stays ignored
                    loop.add_signal_handler(signum, self.stop_signal, signum)
        except (NotImplementedError, RuntimeError, AttributeError, ValueError):
            pass  # no loop signal handlers here (Windows, or not the main thread)

    def stop_signal(self, signum: int) -> None:
        """SIGTERM / SIGHUP: save the running run (as "save and quit" does), then exit with
        128 + the signal's number (see ``main``)."""
        self.stopped_by = signum
        if self.hard_exit is not None:
            threading.Thread(target=self._exit_if_stuck, args=(signum,), name="mnemos-signal-exit", daemon=True).start()
        if self.session.alive:
            self.session.quit(save=True)
        else:
            self.exit()

    def _exit_if_stuck(self, signum: int, poll_s: float = 0.1) -> None:
        """Once the run has saved and stopped, give the app ``EXIT_GRACE_S`` to end, then end
        the process: after a closed terminal (HUP), Textual's shutdown was seen to wait forever
        on its input thread (one case spinning two threads at 100% CPU), and TERM could not
        stop it either, since its handler runs on the loop that was shutting down."""
        while self.session.alive:
            time.sleep(poll_s)
        time.sleep(EXIT_GRACE_S)
        self.hard_exit(128 + signum)

    # -- navigation -----------------------------------------------------------------

    def action_help(self) -> None:
        from mnemos_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_guide(self) -> None:
        from mnemos_tui.screens.guide import GuideScreen

        if not isinstance(self.screen, GuideScreen):
            self.push_screen(GuideScreen())

    async def action_switch_mode(self, mode: str) -> None:
        """F2-F7: show a screen, and take the next key only once it is mounted and has put
        the focus where it wants it. Keys typed right after F5 used to reach the screen
        being left ("F5 hello" in tmux: "hello" went to the Datasets tree, where `e` chose
        a test file), as F5 was a plain binding, run only after the focused widget had
        passed it up, and Textual's action does not wait for the new screen."""
        await self.switch_mode(mode)
        await self.screen.wait_for_refresh()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for entry in SCREENS:
            yield SystemCommand(f"Go to {entry.title} ({entry.key.upper()})", entry.help,
                                lambda mode=entry.mode: self.switch_mode(mode))
        yield SystemCommand("Help (F1)", "Every key of every screen", self.action_help)
        yield SystemCommand("Guide (ctrl+g)", "How it works: the guide to the model", self.action_guide)
        for entry in SCREENS:  # every action of every screen: "start", "stop", "evaluate", "sample" ...
            for binding in _actions(entry.load().BINDINGS):
                yield SystemCommand(f"{entry.title}: {binding.tooltip or binding.description}",
                                    f"{self.get_key_display(binding)} on {entry.title} ({entry.key.upper()})",
                                    partial(self.run_on_screen, entry.mode, binding.action), discover=False)
        if isinstance(screen, MnemosScreen) and type(screen) not in {entry.load() for entry in SCREENS}:
            for binding in _actions(screen.BINDINGS):  # a screen opened from another one (Compare)
                yield SystemCommand(f"{screen.SUB_TITLE}: {binding.tooltip or binding.description}",
                                    f"{self.get_key_display(binding)} here",
                                    partial(screen.run_action, binding.action), discover=False)

    async def run_on_screen(self, mode: str, action: str) -> None:
        """Show the screen of ``mode`` and run one of its actions there (a palette command)."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        await self.screen.run_action(action)

    # -- errors -----------------------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        """The safety net under every handler (Textual has no public hook for this yet):
        an unexpected exception becomes an error notification and the app stays up
        (screens catch the errors they expect themselves). A widget whose drawing fails
        is hidden, so it cannot fail again on every repaint (the plot used to, and took
        the app and its training down). Headless runs (tests) keep Textual's behaviour
        unless ``strict_errors`` is False, so a bug fails the test instead of hiding in a
        toast; a burst of errors still exits, with the traceback."""
        now = time.monotonic()
        self._error_times = [t for t in self._error_times if now - t < 2.0] + [now]
        strict = self.is_headless if self.strict_errors is None else self.strict_errors
        if strict or len(self._error_times) > 5:
            super()._handle_exception(error)
            return
        logging.getLogger("mnemos_tui").exception("unexpected error", exc_info=error)
        failed = _failed_widget(error)
        if failed is not None:
            failed.display = False
        title = (f"{type(failed).__name__} could not be drawn and is hidden" if failed is not None
                 else "Unexpected error (the app carries on)")
        self.notify(f"{type(error).__name__}: {error}", title=title, severity="error", timeout=10)

    # -- quitting -------------------------------------------------------------------

    def on_engine_events(self, message: EngineEvents) -> None:
        self.session.deliver(message)

    def on_unmount(self) -> None:
        """However the app ends (an error included), a live run stops and saves first;
        the process waits for it."""
        self.session.end()

    async def action_quit(self) -> None:
        if not self.session.alive:
            self.exit()
            return
        from mnemos_tui.screens.dialogs import QuitDialog

        self.push_screen(QuitDialog(), self._quit_chosen)

    def _quit_chosen(self, choice: str | None) -> None:
        if choice in ("save", "discard"):
            self.session.quit(save=choice == "save")


def _actions(bindings) -> list[Binding]:
    """The bindings of ``bindings`` with a description, one per action (``delete,d`` is one)."""
    by_action: dict[str, Binding] = {}
    for binding in Binding.make_bindings(bindings):
        if binding.description:
            by_action.setdefault(binding.action, binding)
    return list(by_action.values())


def _failed_widget(error: BaseException) -> Widget | None:
    """The innermost widget whose ``render`` raised ``error``, read from the traceback."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Widget) and not isinstance(owner, Screen) and tb.tb_frame.f_code.co_name in ("render", "render_line", "render_lines"):
            found = owner
        tb = tb.tb_next
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnemos-tui",
        description="Train, evaluate and talk to a small GPT from the terminal. "
                    "F1 in the app lists every key.")
    parser.add_argument("--data", metavar="FILE", help="training text file (opens the Train screen)")
    parser.add_argument("--checkpoint", metavar="DIR", help="checkpoint folder (opens the Generate screen)")
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="folder holding data/ and checkpoints/ (default: the current folder)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    app = MnemosApp(root=args.root, data=args.data, checkpoint=args.checkpoint)
    app.hard_exit = os._exit  # a process of its own: TERM and HUP may end it if its shutdown hangs
    app.run()
    if app.stopped_by is not None:
        sys.exit(128 + app.stopped_by)


if __name__ == "__main__":
    main()
