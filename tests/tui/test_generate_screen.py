"""Generate screen: a reply streams in, Esc stops it and keeps the partial reply, the
sampling settings are used and checked, token boundaries, Markdown export."""

from __future__ import annotations

import re

import pytest

from mnemos.checkpoint import load_checkpoint
from mnemos.generate import Generator
from mnemos_tui.app import MnemosApp
from tui_helpers import SIZE, notices, text_of, wait_until

pytestmark = pytest.mark.anyio


async def open_generate(pilot, app, **settings) -> None:
    await wait_until(pilot, lambda: app.screen.loaded is not None, "the checkpoint to load")
    for name, value in settings.items():
        app.screen.query_one(f"#s-{name}").value = value
    await pilot.pause()


async def ask(pilot, app, prompt: str) -> None:
    app.screen.query_one("#prompt").value = prompt
    app.screen.query_one("#prompt").focus()
    await pilot.press("enter")


async def test_reply_is_what_the_generator_samples_with_these_settings(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(size=SIZE) as pilot:
        await open_generate(pilot, app, temperature="0.9", top_k="20", max_new_tokens="30", seed="7")
        await ask(pilot, app, "It is a truth")
        chat = app.screen.query_one("#chat")
        await wait_until(pilot, lambda: chat.turns and chat.turns[0].status != "generating", "the reply")
        ckpt = load_checkpoint(checkpoint)
        expected = Generator(ckpt.model, ckpt.tokenizer).generate(
            "It is a truth", max_new_tokens=30, temperature=0.9, top_k=20, seed=7)
        turn = chat.turns[0]
        assert turn.reply == expected
        assert len(turn.ids) == 30 and turn.status == "max_tokens"
        assert "temperature 0.9" in turn.settings and "top-k 20" in turn.settings
        assert app.screen.query_one("#prompt").value == ""


async def test_escape_stops_generation_and_keeps_the_partial_reply(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(size=SIZE) as pilot:
        # Greedy: this checkpoint never picks <|endoftext|> that way, so only Esc ends it.
        await open_generate(pilot, app, max_new_tokens="1000000", temperature="0")
        await ask(pilot, app, "However")
        chat = app.screen.query_one("#chat")
        await wait_until(pilot, lambda: chat.turns and len(chat.turns[0].ids) > 5, "the first tokens")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.screen.generating, "generation to stop")
        turn = chat.turns[0]
        assert turn.status == "stopped"
        assert 5 < len(turn.ids) < 1000000
        kept = list(turn.ids)
        await pilot.pause(0.2)
        assert turn.ids == kept  # nothing arrives after the stop
        # The chat carries on: another prompt gets its own reply.
        app.screen.query_one("#s-max_new_tokens").value = "5"
        await ask(pilot, app, "again")
        await wait_until(pilot, lambda: len(chat.turns) == 2 and chat.turns[1].status != "generating",
                         "the second reply")
        assert len(chat.turns[1].ids) == 5


async def test_bad_sampling_settings_are_refused_with_the_reason(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await open_generate(pilot, app, top_p="1.5")
        assert app.screen.query_one("#sampling").has_class("-invalid")
        await ask(pilot, app, "x")
        await pilot.pause()
        assert app.screen.query_one("#chat").turns == []
        await wait_until(pilot, lambda: "top-p" in notices(app), "the notification")


async def test_token_boundaries_use_the_tokenizer_and_export_writes_markdown(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(size=SIZE) as pilot:
        await open_generate(pilot, app, max_new_tokens="8", seed="1")
        await ask(pilot, app, "a good fortune")
        chat = app.screen.query_one("#chat")
        await wait_until(pilot, lambda: chat.turns and chat.turns[0].status != "generating", "the reply")
        await pilot.press("ctrl+t")
        assert chat.show_tokens
        await pilot.pause()
        shown = chat.query_one(".chat-turn").content.renderables  # you, prompt, mnemos, reply, blank
        prompt, reply = shown[1], shown[3]
        assert len(reply.spans) == 8  # one coloured span per token
        styles = [str(span.style) for span in reply.spans]
        assert styles[0] != styles[1] and styles[0] == styles[2]  # alternating
        assert prompt.plain == "a good fortune" and len(prompt.spans) > 1  # the prompt's tokens coloured too
        await pilot.press("ctrl+s")
        await pilot.pause()
        exported = list((workspace / "transcripts").glob("chat-*.md"))
        assert len(exported) == 1
        body = exported[0].read_text(encoding="utf-8")
        assert "a good fortune" in body and chat.turns[0].reply in body and "demo" in body


async def test_without_a_checkpoint_the_screen_says_what_to_do(workspace):
    app = MnemosApp(root=workspace, start="generate")
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        await pilot.pause()
        await ask(pilot, app, "hello")
        await pilot.pause()
        await wait_until(pilot, lambda: "checkpoint" in notices(app), "the notification")
        assert type(app.screen).__name__ == "GenerateScreen"


async def test_a_checkpoint_outside_the_checkpoints_folder_is_listed_and_chosen(workspace, tmp_path):
    from mnemos_tui.widgets.checkpoint_select import CheckpointSelect
    from tui_helpers import make_checkpoint

    make_checkpoint(workspace)  # one run under the workspace's checkpoints/
    elsewhere = make_checkpoint(tmp_path / "elsewhere", name="mine")  # and one outside it
    app = MnemosApp(root=workspace, checkpoint=elsewhere)
    async with app.run_test(size=SIZE) as pilot:
        await open_generate(pilot, app)
        select = app.screen.query_one(CheckpointSelect)
        assert select.value == str(elsewhere.resolve())
        labels = [label for label, _ in select.choices]
        assert any(str(elsewhere) in label for label in labels)  # shown under its path
        assert any(label.startswith("demo ") for label in labels)  # the workspace's run is still there


async def test_closing_the_odds_pane_and_ctrl_e_bring_typing_back_to_the_prompt(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint=checkpoint)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = app.screen.query_one("#prompt")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.focused is not prompt  # the odds pane has the focus while open
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.focused is prompt
        app.screen.query_one("#chat").focus()
        await pilot.press("ctrl+e", "h", "i")
        await pilot.pause()
        assert app.focused is prompt and prompt.value.endswith("hi")


async def test_the_odds_pane_records_a_reply_made_while_it_was_closed(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint=checkpoint)
    async with app.run_test(size=SIZE) as pilot:
        await open_generate(pilot, app, max_new_tokens="5")
        await ask(pilot, app, "It is")
        await wait_until(pilot, lambda: not app.screen.generating, "the reply")
        await pilot.press("ctrl+o")
        await pilot.pause()
        title = text_of(app.screen.query_one("#step-title"))
        assert re.search(r"step (\d+)/\1: drew", title) and "No reply yet" not in title  # the reply's last step


async def test_a_new_chat_clears_this_one_only_after_asking(workspace, checkpoint):
    app = MnemosApp(root=workspace, checkpoint="checkpoints/demo")
    async with app.run_test(size=SIZE) as pilot:
        await open_generate(pilot, app, max_new_tokens="5")
        await ask(pilot, app, "It is")
        chat = app.screen.query_one("#chat")
        await wait_until(pilot, lambda: chat.turns and chat.turns[0].status != "generating", "the reply")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause()
        assert len(chat.turns) == 1 and chat.query(".chat-turn")  # kept
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert chat.turns == [] and not chat.query(".chat-turn")
        assert "press Enter" in text_of(chat.query_one(".chat-hint"))  # it reads as a new chat does
