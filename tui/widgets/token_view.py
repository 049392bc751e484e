"""``TokenStrip``: a text with its token boundaries in alternating colours, a token
cursor moved by keyboard, and ``TokenDetails``: the id, bytes and merge tree of the
token under the cursor. The numbers come from ``mnemos.inspect``."""

from __future__ import annotations

from rich.console import Group
from rich.style import Style
from rich.text import Text
from rich.tree import Tree
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from mnemos.inspect import MergeNode, TokenInfo, TokenView


def _shown(tok: TokenInfo) -> str:
    """A token as drawn: its text, with line breaks and tabs marked."""
    return tok.text.replace("\n", "↵\n").replace("\t", "⇥\t")


class TokenStrip(Widget, can_focus=True):
    """The text, token by token; ←/→ move the cursor from token to token."""

    DEFAULT_CSS = """
    TokenStrip { height: auto; padding: 0 1; }
    TokenStrip > .token-strip--even { background: $primary 30%; }
    TokenStrip > .token-strip--odd { background: $secondary 30%; }
    TokenStrip > .token-strip--special { background: $warning 40%; text-style: italic; }
    TokenStrip > .token-strip--cursor { background: $accent; color: $text; text-style: bold underline; }
    """
    COMPONENT_CLASSES = {"token-strip--even", "token-strip--odd", "token-strip--special",
                         "token-strip--cursor"}
    BINDINGS = [
        Binding("left", "move(-1)", "Previous token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
    ]

    cursor: reactive[int] = reactive(0)

    class Selected(Message):
        """The cursor moved onto ``token``."""

        def __init__(self, token: TokenInfo) -> None:
            super().__init__()
            self.token = token

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: TokenView | None = None

    def show(self, view: TokenView) -> None:
        """Draw ``view``; the cursor stays on the same token index where it can."""
        self.view = view
        self.cursor = min(self.cursor, max(view.n_tokens - 1, 0))
        self.refresh(layout=True)
        self._announce()

    def action_move(self, delta: int) -> None:
        if self.view and self.view.tokens:
            self.cursor = max(0, min(self.view.n_tokens - 1, self.cursor + delta))

    def action_jump(self, where: int) -> None:
        if self.view and self.view.tokens:
            self.cursor = where % self.view.n_tokens

    def watch_cursor(self) -> None:
        self.refresh()
        self._announce()
        self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        """Keep the cursor's line visible when the text is longer than the pane."""
        if self.view is None or not self.view.tokens or self.parent is None:
            return
        width, console = max(1, self.content_size.width), self.app.console
        start = sum(len(_shown(t)) for t in self.view.tokens[:self.cursor])
        line = offset = 0
        for hard in self.render().split("\n", allow_blank=True):  # hard lines, then their wraps
            rows = hard.wrap(console, width)
            if offset + len(hard.plain) >= start:
                for row in rows:
                    offset += len(row.plain)
                    if offset > start:
                        break
                    line += 1
                break
            line += len(rows)
            offset += len(hard.plain) + 1
        self.parent.scroll_to_region(Region(0, line, width, 1), animate=False, immediate=True)

    def _announce(self) -> None:
        if self.view and self.view.tokens:
            self.post_message(self.Selected(self.view.tokens[self.cursor]))

    def render(self) -> Text:
        if self.view is None or not self.view.tokens:
            return Text("(no text)", style="dim")
        out = Text()
        styles = [self.get_component_rich_style(f"token-strip--{name}", partial=True)
                  for name in ("even", "odd", "special", "cursor")]
        for tok in self.view.tokens:
            style = styles[2] if tok.special else styles[tok.index % 2]
            if tok.index == self.cursor:  # the cursor: highlighted when focused, underlined otherwise
                style = styles[3] if self.has_focus else style + Style(underline=True)
            out.append(_shown(tok), style=style)
        return out

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def merge_tree_renderable(node: MergeNode) -> Tree:
    """A merge tree as a ``rich`` tree: each merge with its rank, bytes at the leaves."""

    def label(n: MergeNode) -> Text:
        text = Text()
        text.append(f"[{n.label}]", style="bold")
        text.append(f" id {n.id}")
        if n.kind == "merge":
            text.append(f"  merge #{n.rank}", style="italic")
        else:
            text.append(f"  {n.kind} {n.bytes.hex(' ')}", style="dim")
        return text

    def add(tree: Tree, n: MergeNode) -> None:
        for child in n.children:
            add(tree.add(label(child)), child)

    root = Tree(label(node), guide_style="dim")
    add(root, node)
    return root


class TokenDetails(Static):
    """Counts of the whole text, then the token under the cursor and its merge tree."""

    token: TokenInfo | None = None
    tree: MergeNode | None = None

    def show(self, view: TokenView, token: TokenInfo | None, tree: MergeNode | None,
             vocab_size: int, n_merges: int) -> None:
        self.token, self.tree = token, tree
        head = Text()
        head.append(f"{view.n_tokens} tokens · {view.n_bytes} bytes · {view.n_chars} characters\n", style="bold")
        head.append(f"{view.bytes_per_token:.2f} bytes per token · vocabulary {vocab_size} "
                    f"({n_merges} merges)\n")
        if token is None:
            self.update(head)
            return
        head.append(f"\ntoken {token.index + 1} of {view.n_tokens}: ", style="bold")
        head.append(f"[{token.label}]", style="reverse")
        head.append(f"\nid {token.id} · bytes {token.bytes.hex(' ')} · offset {token.start}\n")
        if tree is not None:
            if tree.kind == "merge":
                head.append(f"merge #{tree.rank} of {n_merges} (lower = more frequent pair "
                            f"in the training text), built from {len(tree.leaves())} bytes "
                            f"in {tree.depth - 1} merge level{'s' if tree.depth != 2 else ''}\n", style="italic")
            elif tree.kind == "byte":
                head.append("a single byte: no merge built it\n", style="italic")
            else:
                head.append("a special token: never produced by a merge\n", style="italic")
            self.update(Group(head, merge_tree_renderable(tree)))
        else:
            self.update(head)
