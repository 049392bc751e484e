"""Inspect: see inside a trained model while you use it.

Eight views of one checkpoint and one prompt: the prompt's tokens (with the merge tree of
the token under the cursor), the next-token distribution (reshaped at once by
temperature / top-k / top-p, and stepped forward token by token), the attention maps of
every layer and head, the model's anatomy, the learning replay of the run, the logit
lens (the prediction after each layer), what each head does (previous-token,
duplicate-token and induction scores, attention entropy) and where one prediction's
logit comes from (direct logit attribution). The numbers come from ``mnemos.inspect``,
``mnemos.lens``, ``mnemos.heads`` and ``mnemos.attribution``; loading and forward passes
run in thread workers, so typing stays smooth.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label, Select, Static, TabbedContent, TabPane, Tree

from mnemos_tui.screens.base import CHECKPOINT_KEY, PROMPT_KEY, MnemosScreen
from mnemos_tui.widgets.anatomy import AnatomyTree, ComponentDetails
from mnemos_tui.widgets.attention_map import AttentionMap
from mnemos_tui.widgets.attribution_chart import AttributionChart
from mnemos_tui.widgets.checkpoint_select import CheckpointSelect
from mnemos_tui.widgets.head_grid import HeadGrid, HeadMapDialog, head_summary
from mnemos_tui.widgets.lens_table import LensTable
from mnemos_tui.widgets.next_token import NextTokenPanel
from mnemos_tui.widgets.replay import ReplayView
from mnemos_tui.widgets.token_view import TokenDetails, TokenStrip

DEFAULT_PROMPT = "To be, or not to be, that is the question:"
TABS = ("tokens", "next", "attention", "anatomy", "replay", "lens", "heads", "attribution")
DEBOUNCE_S = 0.12  # wait this long after a key stroke before running the model
LOADED_BYTES = 8192  # how much of the training file ctrl+t shows in the Tokens view


class InspectScreen(MnemosScreen):
    SUB_TITLE = "Inspect"
    AUTO_FOCUS = "TokenStrip"  # focused as the screen is composed: no key typed after F7 is lost
    BINDINGS = [
        PROMPT_KEY,
        CHECKPOINT_KEY,
        Binding("ctrl+t", "tokens", "Tokens", tooltip="The training text's tokens (its first 8 KB)"),
        *(Binding(str(i + 1), f"show_tab('{tab}')", tab.capitalize(), show=False, tooltip=f"The {tab} view")
          for i, tab in enumerate(TABS)),
        Binding("n", "step('top')", "Take top token"),
        Binding("s", "step('sample')", "Sample token"),
    ]
    HELP_PANES = (("Tokens", TokenStrip), ("Next token", NextTokenPanel), ("Attention", AttentionMap),
                    ("Replay", ReplayView), ("Lens", LensTable), ("Heads", HeadGrid),
                    ("Attribution", AttributionChart))  # F1 lists their keys too

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="inspect-bar"):
            yield CheckpointSelect(id="inspect-checkpoint")
            yield Label(" prompt ", id="inspect-prompt-label")
            yield Input(DEFAULT_PROMPT, placeholder="a prompt to look inside with", id="inspect-prompt",
                        compact=True, select_on_focus=False)  # ctrl+e then typing edits the prompt
        yield Static("", id="inspect-status")
        with TabbedContent(id="inspect-tabs", initial="tokens"):
            with TabPane("1 Tokens", id="tokens"):
                with Horizontal(classes="panes"):
                    with VerticalScroll(id="token-pane", classes="pane"):
                        yield TokenStrip(id="token-strip")
                    with VerticalScroll(classes="pane"):
                        yield TokenDetails(id="token-details")
            with TabPane("2 Next", id="next"):
                with VerticalScroll(classes="pane"):
                    yield NextTokenPanel(id="next-token")
            with TabPane("3 Attention", id="attention"):
                with ScrollableContainer(classes="pane"):
                    yield AttentionMap(id="attention-map")
            with TabPane("4 Anatomy", id="anatomy"):
                with Horizontal(classes="panes"):
                    yield AnatomyTree("model", id="anatomy-tree", classes="pane")
                    with VerticalScroll(classes="pane"):
                        yield ComponentDetails(id="component-details")
            with TabPane("5 Replay", id="replay"):
                with VerticalScroll(classes="pane"):
                    yield ReplayView(id="replay-view")
            with TabPane("6 Lens", id="lens"):
                yield LensTable(id="lens-table", classes="pane")
            with TabPane("7 Heads", id="heads"):
                with VerticalScroll(classes="pane"):
                    yield Static(id="head-summary")
                    yield HeadGrid(id="head-grid")
            with TabPane("8 Attribution", id="attribution"):
                with VerticalScroll(classes="pane"):
                    yield AttributionChart(id="attribution-chart")

    def __init__(self) -> None:
        super().__init__()
        self.ckpt = None  # the loaded Checkpoint
        self.anatomy_root = None
        self.head_scores = None
        self.token_view = None
        self.token_text: str | None = None  # a loaded text shown in Tokens instead of the prompt
        self._debounce: Timer | None = None
        self._loading: Path | None = None  # the checkpoint being loaded
        self._model_lock = threading.Lock()

    def on_mount(self) -> None:
        super().on_mount()
        self.refresh_checkpoints()

    def on_screen_resume(self) -> None:
        """Back on this screen: new runs may be listed, and a run still training may have
        recorded more replay samples."""
        self.refresh_checkpoints()
        if self.ckpt is not None:
            from mnemos.inspect import replay

            self.query_one(ReplayView).show(replay(self.ckpt.path))

    # -- the checkpoint ---------------------------------------------------------------

    def refresh_checkpoints(self) -> None:
        """Refill the checkpoint list (runs may have appeared) and load the chosen one."""
        select = self.query_one(CheckpointSelect)
        try:
            count = select.reload(self.workspace.checkpoints_dir, keep=self.workspace.checkpoint)
        except OSError as exc:
            self.report(exc)
            return
        if count == 0:
            self.set_status("No checkpoint yet: train a model on the Train screen (F3), then come back.")
            return
        self._open(Path(str(select.value)))

    @on(Select.Changed, "#inspect-checkpoint")
    def _checkpoint_chosen(self, event: Select.Changed) -> None:
        if event.value != Select.NULL:
            self._open(Path(str(event.value)))

    def _open(self, path: Path) -> None:
        if self._loading == path or (self.ckpt is not None and Path(self.ckpt.path).resolve() == path):
            return
        self._loading = path
        self.set_status(f"loading {self.workspace.show(path)} …")
        self.load(path)

    @work(thread=True, exclusive=True, group="inspect-load")
    def load(self, path: Path) -> None:
        from mnemos.checkpoint import load_checkpoint
        from mnemos.errors import MnemosError
        from mnemos.heads import head_scores, training_tokens
        from mnemos.inspect import anatomy, replay

        try:
            ckpt = load_checkpoint(path)
            root, frames = anatomy(ckpt.model), replay(path)
            heads = (head_scores(ckpt.model, exclude=ckpt.tokenizer.special_tokens.values(),
                                 seen=training_tokens(ckpt))
                     if ckpt.model_config.block_size >= 4 else None)
        except (MnemosError, OSError) as exc:
            self.app.call_from_thread(self._load_failed, path, exc)
            return
        self.app.call_from_thread(self._loaded, ckpt, root, frames, heads)

    def _load_failed(self, path: Path, exc: Exception) -> None:
        self._loading = None
        self.report(exc, "Cannot open checkpoint")
        self.set_status(f"cannot open {self.workspace.show(path)}: {exc}")

    def _loaded(self, ckpt, root, frames, heads) -> None:
        self.ckpt, self.anatomy_root, self.head_scores, self._loading = ckpt, root, heads, None
        self.workspace.checkpoint = Path(ckpt.path)
        cfg, state = ckpt.model_config, ckpt.state
        best = state.get("best_val_loss")
        layers = f"{cfg.n_layer} layer{'s' if cfg.n_layer != 1 else ''}"
        self.set_status(f"step {state.get('step', 0)} · {layers} × {cfg.n_head} heads · n_embd {cfg.n_embd} · "
                        f"context {cfg.block_size} · vocab {cfg.vocab_size} · {_count(root.params)} params"
                        + (f" · best val loss {best:.3f}" if best is not None else ""))
        tree = self.query_one(AnatomyTree)
        tree.show(root)
        self.query_one(ComponentDetails).show(root, root.flops)
        self.query_one(ReplayView).show(frames)
        self.query_one(HeadGrid).show(heads)
        if heads is None:
            self.query_one("#head-summary", Static).update(
                "Head scores need two copies of a sequence in the context: a model with block_size 4 or more.")
        self.update_tokens()
        self.run_model()

    def set_status(self, message: str) -> None:
        self.query_one("#inspect-status", Static).update(message)

    # -- the prompt -------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        return self.query_one("#inspect-prompt", Input).value

    @on(Input.Changed, "#inspect-prompt")
    def _prompt_changed(self) -> None:
        self.token_text = None
        self.update_tokens()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE_S, self.run_model)

    def update_tokens(self) -> None:
        """The Tokens view: cheap (the tokenizer only), so it follows every key stroke."""
        if self.ckpt is None:
            return
        from mnemos.inspect import tokenize_view

        text = self.token_text if self.token_text is not None else self.prompt
        self.token_view = tokenize_view(self.ckpt.tokenizer, text)
        self.query_one(TokenStrip).show(self.token_view)
        if not self.token_view.tokens:
            self._show_token_details(None)

    @on(TokenStrip.Selected)
    def _token_selected(self, event: TokenStrip.Selected) -> None:
        self._show_token_details(event.token)

    def _show_token_details(self, token) -> None:
        from mnemos.inspect import merge_tree

        tok = self.ckpt.tokenizer
        tree = merge_tree(tok, token.id) if token is not None else None
        self.query_one(TokenDetails).show(self.token_view, token, tree, tok.vocab_size, len(tok.merges))

    def run_model(self) -> None:
        if self.ckpt is not None:
            self.forward(self.ckpt, self.prompt)

    @work(thread=True, exclusive=True, group="inspect-model")
    def forward(self, ckpt, prompt: str) -> None:
        """Next-token logits and attention maps of the prompt, off the UI thread. One
        forward at a time (the model's buffers are shared between calls)."""
        from mnemos.activations import run_with_cache
        from mnemos.errors import MnemosError
        from mnemos.generate import Generator
        from mnemos.inspect import attention_view, next_token_logits
        from mnemos.lens import lens_view

        try:
            with self._model_lock:
                model = ckpt.model
                ids = Generator(model, ckpt.tokenizer).encode_prompt(prompt)
                logits = next_token_logits(model, ids)
                attention = attention_view(model, ckpt.tokenizer, prompt) if prompt else None
                kept = ids[-model.config.block_size:]
                cache = run_with_cache(model, np.asarray([kept]))
                lens = lens_view(model, ckpt.tokenizer, cache, truncated=len(ids) - len(kept))
        except MnemosError as exc:
            self.app.call_from_thread(self.report, exc)
            return
        self.app.call_from_thread(self._forward_done, ckpt, prompt, logits, attention, cache, lens)

    def _forward_done(self, ckpt, prompt: str, logits: np.ndarray, attention, cache, lens) -> None:
        if ckpt is not self.ckpt or prompt != self.prompt:
            return  # the prompt (or checkpoint) changed meanwhile: a newer result is on its way
        self.query_one(NextTokenPanel).show_logits(logits, ckpt.tokenizer)
        self.query_one(AttentionMap).show(attention)
        self.query_one(LensTable).show(lens)
        self.query_one(AttributionChart).show(ckpt.model, ckpt.tokenizer, cache)

    # -- actions ----------------------------------------------------------------------

    def action_focus_prompt(self) -> None:
        self.set_focus(self.query_one("#inspect-prompt", Input))  # at once: the next keys typed go there

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        focus = {"tokens": TokenStrip, "next": NextTokenPanel, "attention": AttentionMap,
                 "anatomy": AnatomyTree, "replay": ReplayView, "lens": LensTable, "heads": HeadGrid,
                 "attribution": AttributionChart}[tab]
        self.query_one(focus).focus()

    def action_tokens(self) -> None:
        """Show the start of the training file (its first 8 KB) in the Tokens view."""
        path = self.workspace.train_file
        try:
            with open(path, "rb") as f:  # the start of the file, cut at a line end
                head = f.read(LOADED_BYTES)
        except (OSError, TypeError):
            self.notify("No training file chosen: pick one on the Datasets screen (F2).", severity="warning")
            return
        if len(head) == LOADED_BYTES and b"\n" in head:
            head = head[:head.rindex(b"\n") + 1]
        self.token_text = head.decode("utf-8", errors="replace")
        self.update_tokens()
        self.action_show_tab("tokens")

    def action_step(self, how: str) -> None:
        """Append the next token (the most likely one, or one sampled with the current
        settings) to the prompt and look again: generation one step at a time."""
        from mnemos.generate import sample

        panel = self.query_one(NextTokenPanel)
        if self.ckpt is None or panel.view is None:
            return
        if how == "top":
            token = panel.view.candidates[0].id
        else:
            from mnemos.generate import sampling_distribution

            probs = sampling_distribution(panel.logits, panel.temperature, panel.top_k, panel.top_p)
            token = sample(probs, np.random.default_rng())
        ranks = [c.id for c in panel.view.candidates]
        rank = f"candidate {ranks.index(token) + 1}" if token in ranks else "outside the top list"
        panel.note = (f"took [{panel.label(token)}] ({how}: p {panel.probability(token):.1%}, {rank}); "
                      f"below, the distribution of the token after it")
        prompt = self.query_one("#inspect-prompt", Input)
        with prompt.prevent(Input.Changed):
            prompt.value += self.ckpt.tokenizer.decode([token])
        self.update_tokens()
        self.run_model()

    @on(Tree.NodeHighlighted, "#anatomy-tree")
    def _component_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None and self.anatomy_root is not None:
            self.query_one(ComponentDetails).show(event.node.data, self.anatomy_root.flops)

    @on(DataTable.RowSelected, "#lens-table")
    def _explain_row(self, event: DataTable.RowSelected) -> None:
        """Enter on a logit-lens row: where that position's prediction comes from."""
        self.query_one(AttributionChart).explain(event.cursor_row)
        self.action_show_tab("attribution")

    @on(DataTable.CellSelected, "#head-grid")
    def _open_head(self) -> None:
        head = self.query_one(HeadGrid).head
        if head is not None and self.head_scores is not None:
            self.app.push_screen(HeadMapDialog(self.head_scores, self.ckpt.tokenizer, *head))

    @on(HeadGrid.KindChanged)
    def _head_kind(self, event: HeadGrid.KindChanged) -> None:
        if event.grid.scores is not None:
            self.query_one("#head-summary", Static).update(head_summary(event.grid.scores, event.grid.kind))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "step":  # only where the next-token view is
            return self.query_one(TabbedContent).active == "next"
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()


def _count(n: int) -> str:
    """22.0k, 124.4M: a parameter count short enough for the status line at 80 columns."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)
