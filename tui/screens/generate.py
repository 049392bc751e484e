"""Generate: a chat-like view over ``mnemos.generate.Generator``.

The reply streams token by token from a thread worker (posted in small batches so the
UI repaints at most ~20 times a second); Esc stops it between two tokens and keeps the
partial reply. ``#generate-side`` is the slot for see-inside panels next to the chat.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select
from textual.worker import get_current_worker

from mnemos_tui.screens.base import CHECKPOINT_KEY, PROMPT_KEY, MnemosScreen
from mnemos_tui.widgets.chat_log import ChatLog, Turn
from mnemos_tui.widgets.checkpoint_select import CheckpointSelect
from mnemos_tui.widgets.next_token import StepInspector
from mnemos_tui.widgets.sampling_form import SamplingForm

POST_INTERVAL = 0.05  # seconds between UI updates while streaming


class TokensGenerated(Message):
    """New tokens of a turn (``status`` set on the last message of the turn)."""

    def __init__(self, turn: Turn, ids: list[int], pieces: list[str], steps: list, status: str | None) -> None:
        super().__init__()
        self.turn, self.ids, self.pieces, self.steps, self.status = turn, ids, pieces, steps, status


class GenerateScreen(MnemosScreen):
    SUB_TITLE = "Generate"
    AUTO_FOCUS = "#prompt"  # focused as the screen is composed: no key typed after F5 is lost
    BINDINGS = [
        Binding("ctrl+x", "stop", "Stop", priority=True, tooltip="Stop the reply"),
        Binding("escape", "stop", "Stop", show=False, tooltip="Stop the reply"),
        Binding("ctrl+t", "tokens", "Tokens", tooltip="Token boundaries in the chat on / off"),
        Binding("ctrl+o", "odds", "Odds", tooltip="Next-token odds of each generated token"),
        PROMPT_KEY,
        Binding("ctrl+s", "save", "Save", tooltip="Save the chat as Markdown"),
        Binding("ctrl+n", "new_chat", "New chat", tooltip="New chat: clear this one (asks first)"),
        CHECKPOINT_KEY,
        Binding("pageup", "scroll_chat(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_chat(1)", "Scroll down", show=False),
    ]
    HELP_PANES = (("Odds", StepInspector),)  # F1 lists its keys too
    EXTRA_KEYS = [("enter (in the prompt)", "Generate a reply"),
                  ("tab", "Move to the chat to scroll it with up / down / home / end")]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = None  # (path, Checkpoint, mtime of its state.json) once loaded
        self.generating = False
        self._stop = False  # Esc was pressed: the worker's should_stop() sees it

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="generate-main"):
            with Vertical(id="generate-chat"):
                with Horizontal(classes="form-row"):
                    yield Label("checkpoint", classes="form-label")
                    yield CheckpointSelect(id="checkpoint")
                yield SamplingForm(id="sampling")
                yield Label("", id="model-info")
                yield ChatLog(id="chat", classes="pane")
                yield Input(placeholder="Type a prompt and press Enter (Esc stops the reply)", id="prompt",
                            select_on_focus=False)  # back to it (ctrl+e), typing adds to it
            with Vertical(id="generate-side", classes="hidden"):
                yield StepInspector(id="odds")  # records every reply's odds, shown or not

    def on_mount(self) -> None:
        super().on_mount()
        self.refresh_checkpoints()

    def on_screen_resume(self) -> None:
        self.refresh_checkpoints()

    # -- checkpoint -------------------------------------------------------------------

    def refresh_checkpoints(self) -> None:
        select = self.query_one(CheckpointSelect)
        wanted = self.workspace.checkpoint
        try:
            count = select.reload(self.workspace.checkpoints_dir, keep=wanted)
        except OSError as exc:
            self.report(exc)
            return
        if count == 0:
            self.query_one("#model-info", Label).update("No checkpoints yet: train one on the Train screen (F3).")
        value = select.value
        if value != Select.NULL and (self.loaded is None or self.loaded[0] != Path(str(value))
                                     or self.loaded[2] != _saved_at(Path(str(value)))):
            self.load_model(Path(str(value)))  # another checkpoint, or this one saved again

    @on(Select.Changed, "#checkpoint")
    def _checkpoint_chosen(self, event: Select.Changed) -> None:
        if event.value != Select.NULL:
            self.workspace.checkpoint = Path(str(event.value))
            self.load_model(Path(str(event.value)))

    @work(thread=True, exclusive=True, group="load")
    def load_model(self, path: Path) -> None:
        from mnemos.checkpoint import load_checkpoint

        self.app.call_from_thread(self.query_one("#model-info", Label).update, f"loading {path.name} …")
        try:
            checkpoint = load_checkpoint(path)
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "Cannot load the checkpoint")
            self.app.call_from_thread(self.query_one("#model-info", Label).update, "")
            return
        self.app.call_from_thread(self._model_loaded, path, checkpoint, _saved_at(path))

    def _model_loaded(self, path: Path, checkpoint, saved_at: float) -> None:
        self.loaded = (path, checkpoint, saved_at)
        self.query_one(ChatLog).tokenizer = checkpoint.tokenizer
        cfg = checkpoint.model_config
        step = checkpoint.state.get("step", 0)
        self.query_one("#model-info", Label).update(
            f"{path.name}: {cfg.num_params() / 1e6:.2f} M parameters, {cfg.n_layer} layers, "
            f"context {cfg.block_size}, vocab {cfg.vocab_size}, step {step}")

    # -- generating -------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        if self.generating:
            self.notify("Still generating: ctrl+x stops it", severity="warning")
            return
        if self.loaded is None:
            self.notify("Choose a checkpoint first (train one on F3 if the list is empty)", severity="error")
            return
        try:
            sampling = self.query_one(SamplingForm).settings()
        except Exception as exc:
            self.report(exc, "Sampling settings")
            return
        prompt = event.value
        event.input.value = ""
        turn = self.query_one(ChatLog).start_turn(prompt, sampling.describe())
        for odds in self.query(StepInspector):  # the see-inside panel follows the new reply
            odds.start(self.loaded[1].tokenizer, sampling.temperature, sampling.top_k, sampling.top_p)
        self.generating, self._stop = True, False
        self.refresh_bindings()
        self.generate(turn, prompt, sampling)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, turn: Turn, prompt: str, sampling) -> None:
        from mnemos.generate import Generator

        worker = get_current_worker()
        checkpoint = self.loaded[1]
        ids, pieces, steps, due = [], [], [], time.monotonic() + POST_INTERVAL
        status = "error"
        try:
            generator = Generator(checkpoint.model, checkpoint.tokenizer)
            stream = generator.stream(prompt, max_new_tokens=sampling.max_new_tokens,
                                      temperature=sampling.temperature, top_k=sampling.top_k,
                                      top_p=sampling.top_p, seed=sampling.seed,
                                      should_stop=lambda: self._stop or worker.is_cancelled)
            for step in stream:
                ids.append(step.token_id)
                pieces.append(step.text)
                steps.append(step)
                if time.monotonic() >= due:
                    self.post_message(TokensGenerated(turn, ids, pieces, steps, None))
                    ids, pieces, steps, due = [], [], [], time.monotonic() + POST_INTERVAL
            status = generator.stop_reason or "max_tokens"
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "Generation failed")
        finally:
            self.post_message(TokensGenerated(turn, ids, pieces, steps, status))

    @on(TokensGenerated)
    def _tokens(self, message: TokensGenerated) -> None:
        chat = self.query_one(ChatLog)
        chat.extend(message.turn, message.ids, message.pieces)
        for odds in self.query(StepInspector):
            odds.add_steps(message.steps)
        if message.status is not None:
            chat.finish(message.turn, message.status)
            self.generating = False
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating
        return True

    def action_stop(self) -> None:
        self._stop = True

    def action_tokens(self) -> None:
        chat = self.query_one(ChatLog)
        if chat.tokenizer is None:
            self.notify("Load a checkpoint first: its tokenizer draws the boundaries", severity="warning")
            return
        chat.set_show_tokens(not chat.show_tokens)

    def action_odds(self) -> None:
        """Show / hide the next-token odds of each generated token (tui/widgets/next_token.py)."""
        side = self.query_one("#generate-side")
        side.set_class(not side.has_class("hidden"), "hidden")
        if not side.has_class("hidden"):
            self.query_one(StepInspector).focus()
        else:  # closed: typing goes to the prompt again
            self.action_focus_prompt()

    def action_focus_prompt(self) -> None:
        """Back to the prompt, from wherever the focus is."""
        self.set_focus(self.query_one("#prompt", Input))  # at once: the next keys typed go there

    def action_new_chat(self) -> None:
        """Start a new chat: the current one is cleared after asking (ctrl+s saves it first)."""
        if self.generating:
            self.notify("ctrl+x stops the reply first", severity="warning")
            return
        chat = self.query_one(ChatLog)
        if not chat.turns:
            return
        from mnemos_tui.screens.dialogs import ConfirmDialog

        self.app.push_screen(ConfirmDialog("Clear this chat and start a new one? (ctrl+s saves it first)",
                                           yes="Clear"), lambda yes: chat.clear() if yes else None)

    def action_scroll_chat(self, direction: int) -> None:
        chat = self.query_one(ChatLog)
        (chat.scroll_page_down if direction > 0 else chat.scroll_page_up)(animate=False)

    def action_save(self) -> None:
        chat = self.query_one(ChatLog)
        if not chat.turns:
            self.notify("Nothing to export yet", severity="warning")
            return
        name = self.loaded[0].name if self.loaded else "unknown"
        folder = self.workspace.root / "transcripts"
        path = folder / f"chat-{datetime.now():%Y%m%d-%H%M%S}.md"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(chat.to_markdown(f"Mnemos chat with {name}"), encoding="utf-8")
        except OSError as exc:
            self.report(exc, "Export failed")
            return
        self.notify(f"Transcript saved: {self.workspace.show(path)}")


def _saved_at(path: Path) -> float:
    """When the checkpoint was last saved (training may save it again while we chat)."""
    try:
        return (path / "state.json").stat().st_mtime
    except OSError:
        return 0.0
