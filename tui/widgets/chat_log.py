"""``ChatLog``: the conversation, one block per turn, the reply streaming in.

Each turn keeps its prompt, the generated token ids and the text each token made
readable, so the view can be redrawn at any time with token boundaries shown
(alternating colours, each token's own bytes from ``tokenizer.token_bytes``) or hidden,
and exported as Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static



@dataclass
class Turn:
    prompt: str
    settings: str
    ids: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # the text each token made readable
    status: str = "generating"  # "generating", "stopped", "eot", "max_tokens", "error"

    @property
    def reply(self) -> str:
        return "".join(self.pieces)


STATUS = {"generating": "generating … (Esc stops)", "stopped": "stopped by Esc",
          "eot": "end of text", "max_tokens": "max tokens reached", "error": "error"}


class ChatLog(VerticalScroll, can_focus=True):
    """The turns; ``tokenizer`` (set when a checkpoint loads) enables token boundaries."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.turns: list[Turn] = []
        self.show_tokens = False
        self.tokenizer = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.set_show_tokens(self.show_tokens))
        self._hint()

    def _hint(self) -> None:
        self.mount(Static(Text("Type a prompt below and press Enter. The model continues your text.",
                               style="italic"), classes="chat-hint"))

    def start_turn(self, prompt: str, settings: str) -> Turn:
        self.query(".chat-hint").remove()
        turn = Turn(prompt, settings)
        self.turns.append(turn)
        self.mount(Static(self._render_turn(turn), classes="chat-turn"))
        self.scroll_end(animate=False)
        return turn

    def extend(self, turn: Turn, ids: list[int], pieces: list[str]) -> None:
        turn.ids.extend(ids)
        turn.pieces.extend(pieces)
        self.refresh_turn(turn)

    def finish(self, turn: Turn, status: str) -> None:
        turn.status = status
        self.refresh_turn(turn)

    def refresh_turn(self, turn: Turn) -> None:
        at_end = self.scroll_y >= self.max_scroll_y - 1
        index = self.turns.index(turn)
        blocks = list(self.query(".chat-turn").results(Static))
        blocks[index].update(self._render_turn(turn))
        if at_end:
            self.call_after_refresh(self.scroll_end, animate=False)

    def set_show_tokens(self, show: bool) -> None:
        self.show_tokens = show
        for turn in self.turns:
            self.refresh_turn(turn)

    def clear(self) -> None:
        self.turns = []
        self.query(".chat-turn").remove()
        self._hint()  # a new chat starts as the first one did

    # -- rendering --------------------------------------------------------------------

    def _boundary_styles(self) -> tuple[str, str]:
        """Two backgrounds from the current theme (primary and secondary, faded into the
        background), so token boundaries read on light and dark themes alike."""
        from textual.color import Color

        theme = self.app.current_theme
        background = Color.parse(theme.background or ("#000000" if theme.dark else "#ffffff"))
        return tuple(f"on {background.blend(Color.parse(c), 0.45).hex}"
                     for c in (theme.primary, theme.secondary or theme.accent or theme.primary))

    def _tokens(self, ids: list[int]) -> Text:
        from mnemos.inspect import token_text

        styles = self._boundary_styles()
        text = Text()
        specials = {i: s for s, i in self.tokenizer.special_tokens.items()}
        for n, token_id in enumerate(ids):
            piece = specials.get(token_id) or token_text(self.tokenizer.token_bytes(token_id))
            text.append(piece, style=styles[n % 2])
        return text

    def _prompt_tokens(self, prompt: str) -> Text:
        from mnemos.inspect import tokenize_view

        styles = self._boundary_styles()
        view = tokenize_view(self.tokenizer, prompt)
        text = Text()
        for n, token in enumerate(view.tokens):
            text.append(token.text, style=styles[n % 2])
        return text

    def _render_turn(self, turn: Turn) -> Group:
        tokens = self.show_tokens and self.tokenizer is not None
        header = Text.assemble(("you", "bold"), ("  " + turn.settings, "dim"))
        prompt = self._prompt_tokens(turn.prompt) if tokens and turn.prompt else Text(turn.prompt or "(empty prompt)")
        reply = self._tokens(turn.ids) if tokens else Text(turn.reply)
        count = f"{len(turn.ids)} tokens · {STATUS.get(turn.status, turn.status)}"
        footer = Text.assemble(("mnemos", "bold"), ("  " + count, "dim"))
        return Group(header, prompt, footer, reply, Text())

    def to_markdown(self, title: str) -> str:
        """The transcript: each prompt, its settings, and the reply as the model wrote it."""
        lines = [f"# {title}", ""]
        for n, turn in enumerate(self.turns, 1):
            lines += [f"## Turn {n}", "", f"*{turn.settings}; {len(turn.ids)} tokens, {STATUS.get(turn.status, turn.status)}*",
                      "", "**Prompt**", "", "```text", turn.prompt, "```", "", "**Reply**", "",
                      "```text", turn.reply, "```", ""]
        return "\n".join(lines)
