"""Helpers of the TUI tests: the test text, a deterministic checkpoint, waiting."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\nHowever little known the feelings or views of "
        "such a man may be on his first entering a neighbourhood, this truth is so well fixed "
        "in the minds of the surrounding families.\n") * 12
SIZE = (100, 32)
FIXED_TIME = 1_700_000_000  # mtime given to saved checkpoints so their details never vary

def make_checkpoint(root: Path, name: str = "demo", step: int = 0) -> Path:
    """A small byte-level GPT saved with fixed seeds (no training: same on every machine)."""
    from mnemos.checkpoint import save_checkpoint
    from mnemos.config import ModelConfig, TrainConfig
    from mnemos.nn import GPT
    from mnemos.optim import AdamW
    from mnemos.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.train(TEXT, 256)
    model_cfg = ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=32)
    model = GPT(model_cfg, seed=3)
    train_cfg = TrainConfig(tokenizer_vocab=256, batch_size=4, max_steps=50, eval_interval=10, eval_steps=2)
    path = root / "checkpoints" / name
    save_checkpoint(path, model, tokenizer, model_cfg, train_cfg, AdamW(model.params),
                    {"step": step, "best_val_loss": None,
                     "data": str(root / "data" / "training" / "train.txt")})
    for file in [path, *path.rglob("*")]:
        os.utime(file, (FIXED_TIME, FIXED_TIME))
    return path


async def wait_until(pilot, condition, what: str, limit: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds. ``limit`` only guards against a hang
    (it is far above what any of these waits takes); it asserts nothing about speed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        await pilot.pause(0.05)


async def greedy_reply(pilot, max_new_tokens: int, prompt: str = "It is a truth") -> None:
    """On Generate: ask for a greedy (temperature 0) reply of ``max_new_tokens`` to ``prompt``
    and wait until it has ended."""
    screen = pilot.app.screen
    screen.query_one("#s-temperature").value = "0"
    screen.query_one("#s-max_new_tokens").value = str(max_new_tokens)
    screen.query_one("#prompt").value = prompt
    await pilot.press("enter")
    chat_log = screen.query_one("#chat")
    await wait_until(pilot, lambda: chat_log.turns and chat_log.turns[0].status != "generating", "the reply")


def notices(app) -> str:
    """The text (titles and messages) of the notifications on screen: what a user reads.
    Needs ``app.run_test(notifications=True)`` (Textual's test runs hide them otherwise)."""
    return "\n".join(toast.render().plain for toast in app.screen.query("Toast"))


def text_of(widget) -> str:
    """The plain text a Static / Label shows."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(widget.content)
    return console.export_text()
