"""Pilot tests of the Inspect screen: each view shows the engine's numbers for the
checkpoint and prompt, and the keyboard moves through it. Plus a snapshot."""

from __future__ import annotations

import asyncio
import functools
import io

import numpy as np
import pytest

from mnemos.config import ModelConfig, TrainConfig
from mnemos.events import EvalEvent, SampleEvent
from mnemos.inspect import attention_view, next_token_distribution, next_token_logits
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. ") * 6
SIZE = (110, 36)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A workspace with one checkpoint (fixed seed, no training: the same on every
    machine) and a metrics.jsonl holding three replay samples."""
    from mnemos.checkpoint import save_checkpoint
    from mnemos.optim import AdamW

    root = tmp_path_factory.mktemp("inspect-ws")
    tok = BPETokenizer.train(TEXT, 300)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    model = GPT(cfg, seed=1)
    model.params.data *= 6  # sharper than the init: attention and odds far from uniform
    metrics = []
    for step, loss, text in [(0, 5.7, "x#q"), (50, 3.1, "to be tho"), (100, 2.2, "to be or not")]:
        metrics.append(EvalEvent(step, loss + 0.1, loss, loss, True, 1.0).to_dict())
        metrics.append(SampleEvent(step, "To be", text, loss).to_dict())
    save_checkpoint(root / "checkpoints" / "run", model, tok, cfg, TrainConfig(tokenizer_vocab=300),
                    AdamW(model.params), {"step": 100, "best_val_loss": 2.2}, metrics=metrics)
    train = root / "data" / "training" / "train.txt"
    train.parent.mkdir(parents=True)
    train.write_text("".join(f"line {i}: to be, or not to be\n" for i in range(60)), encoding="utf-8")
    return root


def sync(test):
    """Run an async Pilot test without an async pytest plugin."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def _text(renderable) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _app(root):
    from mnemos_tui.app import MnemosApp

    return MnemosApp(root=root, checkpoint=root / "checkpoints" / "run", start="inspect")


async def _workers_done(app):
    """Wait for the app's workers. A worker superseded by a newer one of its exclusive
    group (the debounced prompt re-running the forward pass) ends cancelled: that is
    the screen working as designed, not a failure."""
    from textual.worker import WorkerCancelled

    for worker in list(app.workers):
        try:
            await worker.wait()
        except WorkerCancelled:
            pass


async def _ready(app, pilot):
    for _ in range(50):
        await pilot.pause(0.05)
        await _workers_done(app)
        screen = app.screen
        if getattr(screen, "ckpt", None) is not None and screen.query_one("#next-token").view is not None:
            return screen
    raise AssertionError("the Inspect screen did not load the checkpoint")


async def _settle(app, pilot):
    await pilot.pause(0.3)  # past the debounce
    await _workers_done(app)
    await pilot.pause()


@sync
async def test_tokens_view_follows_the_cursor_and_the_prompt(root):
    from mnemos_tui.widgets.token_view import TokenDetails, TokenStrip

    app = _app(root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(app, pilot)
        tok = screen.ckpt.tokenizer
        strip = screen.query_one(TokenStrip)
        assert strip.view.ids == tok.encode(screen.prompt)
        await pilot.press("right", "right", "right")
        assert strip.cursor == 3
        token, details = strip.view.tokens[3], screen.query_one(TokenDetails)
        assert details.token is token
        assert b"".join(leaf.bytes for leaf in details.tree.leaves()) == token.bytes
        await pilot.press("end")
        assert strip.cursor == strip.view.n_tokens - 1
        await pilot.press("ctrl+t")  # the training text: longer than the pane
        await pilot.pause()
        assert strip.view.text == (root / "data" / "training" / "train.txt").read_text(encoding="utf-8")
        pane = strip.parent
        await pilot.press("end")
        await pilot.pause()
        # the cursor stays in view (these short lines do not wrap: line = newlines before it)
        line = strip.view.text[:strip.view.tokens[-1].char_start].count("\n")
        assert pane.max_scroll_y > 0 and pane.scroll_y <= line < pane.scroll_y + pane.scrollable_content_region.height
        await pilot.press("home")
        await pilot.pause()
        assert pane.scroll_y == 0
        await pilot.press("ctrl+e")
        await pilot.press("end", *"xyz")
        await _settle(app, pilot)
        assert screen.prompt.endswith("xyz")
        assert strip.view.ids == tok.encode(screen.prompt)


@sync
async def test_next_token_keys_reshape_the_distribution(root):
    from mnemos_tui.widgets.next_token import NextTokenPanel

    app = _app(root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(app, pilot)
        ckpt = screen.ckpt
        await pilot.press("2")
        panel = screen.query_one(NextTokenPanel)
        assert panel.has_focus
        ids = ckpt.tokenizer.encode(screen.prompt)
        np.testing.assert_array_equal(panel.logits, next_token_logits(ckpt.model, ids))
        before = panel.view.entropy
        await pilot.press("minus", "minus", "minus", "minus", "minus")
        assert panel.temperature == pytest.approx(0.5)
        assert panel.view.entropy < before  # colder is more certain
        await pilot.press("k", "k")  # off -> 200 -> 100
        await pilot.press("p")  # 1.0 -> 0.95
        assert (panel.top_k, panel.top_p) == (100, 0.95)
        want = next_token_distribution(panel.logits, ckpt.tokenizer, 0.5, 100, 0.95, k=10)
        assert [(c.id, c.prob) for c in panel.view.candidates] == [(c.id, c.prob) for c in want.candidates]
        await pilot.press("0")
        assert (panel.temperature, panel.top_k, panel.top_p) == (1.0, None, None)
        top = panel.view.candidates[0]
        prompt = screen.prompt
        await pilot.press("n")  # take the most likely token: the prompt grows by it
        await _settle(app, pilot)
        assert screen.prompt == prompt + ckpt.tokenizer.decode([top.id])
        assert "took" in panel.note
        np.testing.assert_array_equal(panel.logits,
                                      next_token_logits(ckpt.model, ckpt.tokenizer.encode(screen.prompt)))


@sync
async def test_attention_map_walks_layers_heads_and_queries(root):
    from mnemos_tui.widgets.attention_map import AttentionMap

    app = _app(root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(app, pilot)
        await pilot.press("3")
        amap = screen.query_one(AttentionMap)
        assert amap.has_focus
        want = attention_view(screen.ckpt.model, screen.ckpt.tokenizer, screen.prompt)
        np.testing.assert_array_equal(amap.view.weights, want.weights)
        assert (amap.layer, amap.head) == (0, 0)
        np.testing.assert_array_equal(amap.weights, want.weights[0, 0])
        await pilot.press("right")
        assert amap.head == 1
        await pilot.press("down")
        assert amap.layer == 1
        np.testing.assert_array_equal(amap.weights, want.weights[1, 1])
        await pilot.press("down", "right")  # both wrap around
        assert (amap.layer, amap.head) == (0, 0)
        await pilot.press("m")
        np.testing.assert_allclose(amap.weights, want.weights[0].mean(0))
        T = len(want.ids)
        await pilot.press("comma", "comma")
        assert amap.query == T - 3
        assert f"(position {T - 3}) reads" in _text(amap.render())
        screen.query_one("#inspect-prompt").value = ""  # nothing to attend to: the map clears
        await _settle(app, pilot)
        assert amap.view is None and "no attention maps" in _text(amap.render())


@sync
async def test_anatomy_and_replay(root):
    from mnemos_tui.widgets.anatomy import AnatomyTree, ComponentDetails
    from mnemos_tui.widgets.replay import ReplayView

    app = _app(root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(app, pilot)
        await pilot.press("4")
        tree = screen.query_one(AnatomyTree)
        assert tree.has_focus
        assert tree.root.data.params == screen.ckpt.model_config.num_params()
        await pilot.press("down", "down")
        highlighted = tree.cursor_node.data
        assert highlighted is not None and highlighted.name in ("wte", "wpe")
        assert screen.query_one(ComponentDetails).component is highlighted

        await pilot.press("5")
        replay = screen.query_one(ReplayView)
        assert [f.step for f in replay.frames] == [0, 50, 100]
        assert replay.frame == 2  # opens on the latest
        await pilot.press("left", "left")
        assert replay.frame == 0
        await pilot.press("space")
        assert replay.playing
        await pilot.press("space")
        assert not replay.playing


@sync
async def test_no_checkpoint_says_what_to_do(tmp_path):
    from mnemos_tui.app import MnemosApp

    app = MnemosApp(root=tmp_path, start="inspect")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status = str(app.screen.query_one("#inspect-status").content)
        assert "No checkpoint yet" in status
        await pilot.press("2", "minus", "n", "3", "right", "5", "space")  # nothing to show; nothing breaks


def test_inspect_screen_snapshot(root, snap_compare):
    async def cursor(pilot):
        await _ready(pilot.app, pilot)
        await pilot.press("right", "right", "right", "right")

    assert snap_compare(_app(root), terminal_size=SIZE, run_before=cursor)


@sync
async def test_generate_screen_shows_the_odds_of_each_generated_token(root):
    from mnemos_tui.app import MnemosApp
    from mnemos_tui.widgets.next_token import StepInspector

    app = MnemosApp(root=root, checkpoint=root / "checkpoints" / "run", start="generate")
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(50):
            await pilot.pause(0.05)
            await _workers_done(app)
            if app.screen.loaded is not None:
                break
        await pilot.press("ctrl+o")
        odds = app.screen.query_one(StepInspector)
        assert odds.has_focus
        app.screen.query_one("#prompt").focus()
        await pilot.press(*"To be", "enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if not app.screen.generating:
                break
        await pilot.pause()
        assert odds.steps and odds.index == len(odds.steps) - 1
        odds.focus()
        await pilot.press("left_square_bracket")
        step = odds.steps[-2]
        assert odds.index == len(odds.steps) - 2
        marked = [c for c in odds.panel.view.candidates if c.chosen]
        # the panel starts with the reply's own settings: the drawn token has the
        # probability it was drawn with
        assert [c.id for c in marked] == [step.token_id]
        assert marked[0].prob == pytest.approx(step.prob, rel=1e-6)
        await pilot.press("minus")
        assert odds.panel.temperature == pytest.approx(app.screen.query_one("#sampling").settings().temperature - 0.1)


@sync
async def test_train_screen_opens_the_learning_replay(root):
    from mnemos.inspect import replay_frames
    from mnemos_tui.app import MnemosApp
    from mnemos_tui.widgets.replay import ReplayDialog, ReplayView

    app = MnemosApp(root=root, checkpoint=root / "checkpoints" / "run", start="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert isinstance(app.screen, ReplayDialog)
        view = app.screen.query_one(ReplayView)
        assert [f.step for f in view.frames] == [0, 50, 100] and view.has_focus
        await pilot.press("escape")
        assert not isinstance(app.screen, ReplayDialog)
    rows = [{"event": "eval", "step": 4, "train_loss": 2.5, "val_loss": 2.6},
            {"event": "sample", "step": 4, "prompt": "a", "text": "bc", "val_loss": 2.6},
            {"event": "step", "step": 5, "loss": 2.4}]
    assert [(f.step, f.text, f.train_loss) for f in replay_frames(rows)] == [(4, "bc", 2.5)]


@sync
async def test_the_guide_opens_from_help_and_from_inspect(root):
    from textual.widgets import MarkdownViewer

    from mnemos_tui.screens.guide import GUIDE, GuideScreen

    app = _app(root)
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert isinstance(app.screen, GuideScreen)
        await pilot.press("escape")
        await pilot.press("f1")
        await pilot.pause()
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, GuideScreen)
        if GUIDE.is_file():  # a checkout: the real guide, which names the code of each step
            source = app.screen.query_one(MarkdownViewer).document.source
            assert "AdamW" in source and "mnemos/nn/gpt.py" in source
