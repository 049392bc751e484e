"""What the terminal app costs training: tokens/s inside ``mnemos-tui`` vs the trainer
alone, and how fast a key press is handled while training runs.

    python benchmarks/tui_overhead.py              # 5 alternating rounds of 150 steps
    python benchmarks/tui_overhead.py --steps 300 --rounds 3

Both sides run the same ``Trainer`` on the same text and settings (nanoGPT's baby GPT:
the ``small`` preset's shape, byte-level vocab 256, as many worker processes as the app's
form starts with, the machine's cores capped at 4, unless ``--workers N``), the app
headless through Textual's ``App.run_test`` with the Train screen driving it exactly as
a user does (form, ctrl+r). Throughput is measured from the run's own step log
(``metrics.jsonl``: tokens seen and elapsed time), skipping the first 10 steps, so the
tokenizer and the untrained-baseline evaluation do not count. Target: the app keeps
>= 90% of the bare trainer's tokens/s.

Key latency: while the app trains, ctrl+l (log-scale toggle of the loss plot) is pressed
30 times, 100 ms apart; the latency is the time from posting the key to the plot having
flipped. Target: < 100 ms. Text: ``../shared/corpora/shakespeare.txt``, or a generated
one if absent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnemos.config import ModelConfig, TrainConfig, default_workers, get_preset  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"
SKIP = 10  # steps left out of the throughput (warm-up)
FORM = {"tokenizer_vocab": "256", "eval_interval": "100000", "eval_steps": "20", "warmup_steps": "10"}


def corpus(folder: Path) -> Path:
    """``data/training/train.txt`` under ``folder``: Shakespeare, or a generated text."""
    path = folder / "data" / "training" / "train.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if SHAKESPEARE.is_file():
        path.write_bytes(SHAKESPEARE.read_bytes()[: 2_000_000])
    else:
        rng = random.Random(0)
        words = "the of and to a in that is was he for it with as his on be at by i".split()
        path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(14)) for _ in range(40_000)))
    return path


def configs(steps: int, workers: int) -> tuple[ModelConfig, TrainConfig]:
    preset = get_preset("small")
    model = ModelConfig(vocab_size=257, **preset.model)
    train = TrainConfig(**{**preset.train, "tokenizer_vocab": 256, "max_steps": steps, "workers": workers,
                           "eval_interval": 100000, "warmup_steps": 10})
    return model, train


def throughput(run: Path) -> float:
    """Tokens per second between step SKIP and the last step, from the run's own log."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("event") == "step"]
    first, last = steps[SKIP - 1], steps[-1]
    return (last["tokens_seen"] - first["tokens_seen"]) / (last["elapsed_s"] - first["elapsed_s"])


def bare_run(root: Path, steps: int, workers: int, name: str) -> float:
    from mnemos.trainer import Trainer

    model, train = configs(steps, workers)
    out = root / "checkpoints" / name
    Trainer.new(model, train, str(root / "data/training/train.txt"), out_dir=str(out)).run()
    return throughput(out)


async def app_run(root: Path, steps: int, workers: int, presses: int = 0) -> tuple[float, list[float]]:
    """Train in the headless app; optionally measure key latency while it trains."""
    from mnemos_tui.app import MnemosApp

    app = MnemosApp(root=root, start="train")
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#preset").value = "small"
        await pilot.pause()
        for field, value in {**FORM, "workers": str(workers), "max_steps": str(steps)}.items():
            screen.query_one(f"#f-{field}").value = value
        await pilot.pause()
        await pilot.press("ctrl+r")
        while screen.trainer is None or screen.trainer.step < SKIP:
            await asyncio.sleep(0.05)
        plot = screen.query_one("#loss-plot")
        for _ in range(presses):
            if screen.trainer.state != "running":
                break
            before = plot.log_scale
            t0 = time.perf_counter()
            app.simulate_key("ctrl+l")  # posted like a terminal key; no waiting for idle
            while plot.log_scale == before:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.1)
        while screen.trainer.state != "done":
            await asyncio.sleep(0.1)
        out = Path(screen.trainer.out_dir)
    return throughput(out), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="data-parallel workers on both sides (default: the app's, the machine's cores up to 4)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mnemos-tui-bench-") as tmp:
        root = Path(tmp)
        corpus(root)
        bare, inside = [], []
        for r in range(args.rounds):
            bare.append(bare_run(root, args.steps, args.workers, f"bare-{r}"))
            tokens_per_s, _ = asyncio.run(app_run(root, args.steps, args.workers))
            inside.append(tokens_per_s)
            print(f"round {r + 1}: trainer alone {bare[-1]:,.0f} tokens/s, in the app {inside[-1]:,.0f} tokens/s")
        _, latencies = asyncio.run(app_run(root, max(args.steps, 400), args.workers, presses=args.presses))

    b, a = statistics.median(bare), statistics.median(inside)
    print(f"\ntraining, baby GPT shape, {args.workers} worker(s), {args.steps} steps, median of {args.rounds} rounds:")
    print(f"  trainer alone   {b:>9,.0f} tokens/s")
    print(f"  inside the app  {a:>9,.0f} tokens/s")
    print(f"  ratio app/alone {a / b:>9.1%}   (target >= 90%)")
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        print(f"key press handled during training ({len(ms)} presses): median {statistics.median(ms):.1f} ms, "
              f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms   (target < 100 ms)")


if __name__ == "__main__":
    main()
