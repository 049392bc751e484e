"""Pilot tests and 80x24 snapshots of the deeper views: the logit lens, the head scores
(and a head's attention map), direct logit attribution (Inspect), text coloured by loss
(Evaluate) and the induction bump under the loss curve (Train) and in the replay. Each
view must show the engine's own numbers for the checkpoint and prompt."""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest

from mnemos.config import ModelConfig, TrainConfig
from mnemos.events import EvalEvent, SampleEvent
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer
from tui_helpers import wait_until

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. ") * 6
SMALL = (80, 24)
PROMPT = "To be, or not to be"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A workspace with one checkpoint (fixed seed, sharpened, no training) whose metrics
    hold three evaluations with the induction bump's numbers, and a test file."""
    from mnemos.checkpoint import save_checkpoint
    from mnemos.optim import AdamW

    root = tmp_path_factory.mktemp("deeper-ws")
    tok = BPETokenizer.train(TEXT, 300)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    model = GPT(cfg, seed=1)
    model.params.data *= 6
    metrics = []
    for step, loss, icl, ind, text in [(0, 5.7, -0.1, 0.02, "x#q"), (50, 3.1, -0.4, 0.05, "to be tho"),
                                       (100, 2.2, -0.9, 0.31, "to be or not")]:
        metrics.append(EvalEvent(step, loss + 0.1, loss, loss, True, 1.0, icl, ind, [2, 1]).to_dict())
        metrics.append(SampleEvent(step, "To be", text, loss).to_dict())
    save_checkpoint(root / "checkpoints" / "run", model, tok, cfg, TrainConfig(tokenizer_vocab=300),
                    AdamW(model.params), {"step": 100, "best_val_loss": 2.2}, metrics=metrics)
    for sub, text in (("training/train.txt", TEXT), ("testing/test.txt", TEXT[:400])):
        (root / "data" / sub).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / sub).write_text(text, encoding="utf-8")
    return root


def sync(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def _app(root, start="inspect"):
    from mnemos_tui.app import MnemosApp

    return MnemosApp(root=root, checkpoint=root / "checkpoints" / "run", start=start)


async def _inspect_ready(pilot, prompt=PROMPT):
    """The Inspect screen with ``prompt`` run through the model."""
    from mnemos_tui.widgets.lens_table import LensTable

    screen = pilot.app.screen
    await wait_until(pilot, lambda: getattr(screen, "ckpt", None) is not None, "the checkpoint to load")
    screen.query_one("#inspect-prompt").value = prompt
    ids = screen.ckpt.tokenizer.encode(prompt)
    await wait_until(pilot, lambda: (screen.query_one(LensTable).view is not None
                                     and screen.query_one(LensTable).view.ids == ids), "the forward pass")
    await pilot.pause()
    return screen


@sync
async def test_lens_tab_shows_the_logit_lens_and_enter_explains_a_row(root):
    from mnemos.attribution import direct_logit_attribution
    from mnemos.lens import logit_lens
    from mnemos_tui.widgets.attribution_chart import AttributionChart
    from mnemos_tui.widgets.lens_table import LensTable

    app = _app(root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await _inspect_ready(pilot)
        model, tok = screen.ckpt.model, screen.ckpt.tokenizer
        ids = tok.encode(PROMPT)
        await pilot.press("6")
        table = screen.query_one(LensTable)
        assert table.has_focus
        want = logit_lens(model, tok, ids)
        np.testing.assert_array_equal(table.view.top_ids, want.top_ids)
        assert table.row_count == len(ids) and len(table.columns) == model.config.n_layer + 3
        assert table.get_cell_at((2, 1)).plain.startswith(want.top_labels[0][2][0][:6])
        await pilot.press("home", "down", "down", "enter")  # explain the prediction after token 2
        chart = screen.query_one(AttributionChart)
        assert screen.query_one("#inspect-tabs").active == "attribution" and chart.has_focus
        a = direct_logit_attribution(model, tok, ids, position=2)
        assert (chart.attribution.position, chart.attribution.token) == (2, a.token)
        assert [v for _, v in chart.attribution.parts] == pytest.approx([v for _, v in a.parts], abs=1e-6)
        await pilot.press("right", "down")  # the next position, its second most likely token
        logits = model.forward(np.array([ids]))[0][0, 3]
        assert chart.attribution.position == 3 and chart.attribution.token == int(np.argsort(-logits)[1])
        assert chart.attribution.rank == 1
        await pilot.press("up", "up", "left", "left", "left", "left")  # clamped at rank 0, position 0
        assert (chart.attribution.position, chart.attribution.rank) == (0, 0)


@sync
async def test_heads_tab_scores_every_head_and_opens_its_attention_map(root):
    from mnemos.heads import head_scores
    from mnemos_tui.widgets.attention_map import AttentionMap
    from mnemos_tui.widgets.head_grid import HeadGrid, HeadMapDialog

    app = _app(root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await _inspect_ready(pilot)
        await pilot.press("7")
        grid = screen.query_one(HeadGrid)
        assert grid.has_focus and grid.kind == "induction"
        want = head_scores(screen.ckpt.model, exclude=screen.ckpt.tokenizer.special_tokens.values())
        for kind in ("previous_token", "duplicate_token", "induction"):
            np.testing.assert_array_equal(grid.scores.scores[kind], want.scores[kind])
        assert grid.get_cell_at((1, 2)).plain.strip() == f"{want.scores['induction'][1, 1]:.2f}"
        summary = str(screen.query_one("#head-summary").content)
        layer, head, _ = want.top("induction")
        assert f"induction L{layer + 1} H{head + 1}" in summary
        await pilot.press("o")
        assert grid.kind == "entropy" and "attention entropy" in str(screen.query_one("#head-summary").content)
        assert grid.get_cell_at((0, 1)).plain.strip() == f"{want.entropy[0, 0]:.2f}"
        await pilot.press("down", "right", "enter")  # layer 2, head 2
        await pilot.pause()
        assert isinstance(app.screen, HeadMapDialog)
        amap = app.screen.query_one(AttentionMap)
        assert (amap.layer, amap.head) == (1, 1) and amap.has_focus
        np.testing.assert_array_equal(amap.weights, want.patterns[1, 0, 1])
        await pilot.press("escape")
        assert not isinstance(app.screen, HeadMapDialog)
        await pilot.click(HeadGrid, offset=(18, 1))  # a click picks the head, a second opens it
        await pilot.click(HeadGrid, offset=(18, 1))
        await pilot.pause()
        assert isinstance(app.screen, HeadMapDialog) and app.screen.at == (0, 1)


@sync
async def test_evaluate_colours_the_test_text_by_loss(root):
    from mnemos.checkpoint import load_checkpoint
    from mnemos.token_loss import token_losses
    from mnemos_tui.widgets.loss_text import LossText, LossTextDialog

    app = _app(root, start="evaluate")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: isinstance(app.screen, LossTextDialog), "the dialog")
        view = app.screen.query_one(LossText)
        await wait_until(pilot, lambda: view.view is not None, "the scores")
        ckpt = load_checkpoint(root / "checkpoints" / "run")
        want = token_losses(ckpt.model, ckpt.tokenizer, TEXT[:400])
        np.testing.assert_allclose(view.view.loss, want.loss, rtol=1e-6)
        assert view.body().plain == TEXT[:400]
        worst = want.worst(1)[0]
        rows = view.worst()
        assert rows.row_count == 10 and next(iter(rows.columns[1].cells)) == worst.label[:14]
        app.screen.query_one("#loss-text-input").focus()
        await pilot.press(*"to be", "enter")
        await wait_until(pilot, lambda: view.view.tokens.text == "to be", "the typed text scored")
        await pilot.press("escape")
        assert not isinstance(app.screen, LossTextDialog)


@sync
async def test_train_screen_draws_the_induction_bump_and_the_replay_shows_it(root):
    from mnemos_tui.bridge import EngineEvents
    from mnemos_tui.widgets.induction_strip import InductionStrip
    from mnemos_tui.widgets.replay import ReplayDialog, ReplayView

    app = _app(root, start="train")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        strip = app.screen.query_one(InductionStrip)
        assert "measured at each evaluation" in strip.render().plain
        app.post_message(EngineEvents([EvalEvent(s, 3.0, 3.0, 3.0, True, 1.0, icl, ind, [2, 1])
                                              for s, icl, ind in ((0, -0.1, 0.02), (10, -0.8, 0.4))]))
        await pilot.pause()
        assert strip.icl == [-0.1, -0.8] and strip.induction == [0.02, 0.4]
        text = "\n".join(line.plain for line in strip.render().renderables)
        assert "-0.80 late − early loss" in text and "0.40 best head (L2 H1)" in text
        await pilot.press("ctrl+y")  # the replay of the chosen checkpoint: its recorded bump
        await pilot.pause()
        view = app.screen.query_one(ReplayView)
        assert isinstance(app.screen, ReplayDialog)
        assert [f.induction_score for f in view.frames] == [0.02, 0.05, 0.31]
        shown = "\n".join(r.plain for r in view.render().renderables)
        assert "+0.31 best induction head" in shown and "-0.90 late − early loss" in shown


# --------------------------------------------------------------------------- 80x24 snapshots


def _keys(*keys, prompt=PROMPT):
    async def run(pilot):
        await _inspect_ready(pilot, prompt)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.2)
    return run


def test_lens_tab_80x24(root, snap_compare):
    assert snap_compare(_app(root), terminal_size=SMALL, run_before=_keys("6"))


def test_heads_tab_80x24(root, snap_compare):
    assert snap_compare(_app(root), terminal_size=SMALL, run_before=_keys("7"))


def test_head_attention_map_80x24(root, snap_compare):
    assert snap_compare(_app(root), terminal_size=SMALL, run_before=_keys("7", "down", "enter"))


def test_attribution_tab_80x24(root, snap_compare):
    assert snap_compare(_app(root), terminal_size=SMALL, run_before=_keys("8"))


def test_text_by_loss_80x24(root, snap_compare):
    from mnemos_tui.widgets.loss_text import LossText

    async def open_it(pilot):
        await pilot.pause()
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: pilot.app.screen.query(LossText)
                         and pilot.app.screen.query_one(LossText).view is not None, "the scores")
        await pilot.pause(0.2)

    assert snap_compare(_app(root, start="evaluate"), terminal_size=SMALL, run_before=open_it)


def test_train_induction_strip_80x24(root, snap_compare, monkeypatch):
    from mnemos_tui.bridge import EngineEvents

    monkeypatch.setattr("mnemos.config.default_workers", lambda: 2)

    async def events(pilot):
        await pilot.pause()  # then auto's choice for the training file (the form's default preset) settles
        await wait_until(pilot, lambda: not [w for w in pilot.app.workers if w.group == "auto-plan" and not w.is_finished],
                         "auto's plan")
        await pilot.pause()
        pilot.app.post_message(EngineEvents([  # through the session, as a run posts them
            EvalEvent(s, 3.0, 3.0, 3.0, True, 1.0, icl, ind, [2, 1])
            for s, icl, ind in ((0, -0.1, 0.02), (10, -0.2, 0.03), (20, -0.7, 0.3), (30, -0.9, 0.42))]))
        await pilot.pause(0.2)

    assert snap_compare(_app(root, start="train"), terminal_size=SMALL, run_before=events)


@sync
async def test_the_inspect_views_on_a_llama_checkpoint(tmp_path):
    """RMSNorm, rotary positions, an untied head: the same tabs, the engine's numbers."""
    from mnemos.attribution import direct_logit_attribution
    from mnemos.checkpoint import save_checkpoint
    from mnemos.heads import head_scores
    from mnemos.lens import logit_lens
    from mnemos.optim import AdamW
    from mnemos_tui.app import MnemosApp
    from mnemos_tui.widgets.attribution_chart import AttributionChart
    from mnemos_tui.widgets.head_grid import HeadGrid
    from mnemos_tui.widgets.lens_table import LensTable

    tok = BPETokenizer.train(TEXT, 280)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32, arch="llama",
                      head="untied")
    model = GPT(cfg, seed=2)
    model.params.data *= 4
    run = tmp_path / "checkpoints" / "llama"
    save_checkpoint(run, model, tok, cfg, TrainConfig(tokenizer_vocab=280), AdamW(model.params), {"step": 1})
    app = MnemosApp(root=tmp_path, checkpoint=run, start="inspect")
    async with app.run_test(size=SMALL) as pilot:
        screen = await _inspect_ready(pilot)
        model, ids = screen.ckpt.model, tok.encode(PROMPT)
        np.testing.assert_array_equal(screen.query_one(LensTable).view.top_ids, logit_lens(model, tok, ids).top_ids)
        np.testing.assert_array_equal(screen.query_one(HeadGrid).scores.scores["induction"],
                                      head_scores(model, exclude=tok.special_tokens.values()).scores["induction"])
        await pilot.press("8")
        chart = screen.query_one(AttributionChart).attribution
        want = direct_logit_attribution(model, tok, ids)
        assert [n for n, _ in chart.parts] == [n for n, _ in want.parts] and chart.bias == 0
        assert chart.total == pytest.approx(chart.logit, abs=1e-4)


def test_replay_with_the_induction_bump_80x24(root, snap_compare):
    from mnemos_tui.widgets.replay import ReplayView

    async def replay(pilot):
        view = pilot.app.screen.query_one(ReplayView)
        await wait_until(pilot, lambda: len(view.frames) == 3, "the replay frames")
        await pilot.press("5")
        await pilot.pause(0.3)

    assert snap_compare(_app(root), terminal_size=SMALL, run_before=replay)


@sync
async def test_a_context_too_short_for_head_scores_says_so(tmp_path):
    from mnemos.checkpoint import save_checkpoint
    from mnemos.optim import AdamW
    from mnemos_tui.app import MnemosApp
    from mnemos_tui.widgets.head_grid import HeadGrid

    tok = BPETokenizer()
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=8, block_size=3)
    model = GPT(cfg)
    save_checkpoint(tmp_path / "checkpoints" / "b3", model, tok, cfg, TrainConfig(tokenizer_vocab=256),
                    AdamW(model.params), {"step": 0})
    app = MnemosApp(root=tmp_path, checkpoint=tmp_path / "checkpoints" / "b3", start="inspect")
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "ckpt", None) is not None, "the checkpoint")
        await pilot.press("7", "k", "enter", "8", "right")  # nothing to open; nothing breaks
        assert app.screen.query_one(HeadGrid).scores is None
        assert "block_size 4 or more" in str(app.screen.query_one("#head-summary").content)
