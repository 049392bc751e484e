"""Data-parallel training speed: Mnemos with 1 and N worker processes vs PyTorch eager.

    python benchmarks/parallel_speed.py                # 3 alternating rounds of 40 steps
    python benchmarks/parallel_speed.py --workers 2 --rounds 5 --steps 60
    python benchmarks/parallel_speed.py --blas-kernels SkylakeX    # + workers on those kernels

nanoGPT's CPU "baby GPT" shape (n_layer 4, n_head 4, n_embd 128, block 64, batch 12,
byte-level vocab 256, no dropout). A step is a whole training step: forward,
backward, clipping at 1.0 and AdamW, on the same batches for all three:

- Mnemos, one process (NumPy's BLAS on all cores);
- Mnemos with ``--workers N`` (``mnemos.parallel.DataParallel``: N processes with
  single-threaded BLAS share the batch; the parent sums gradients, clips, steps AdamW);
- PyTorch eager (``benchmarks/_torch_gpt.py``, same initial weights) with
  ``torch.set_num_threads(os.cpu_count())`` and its fused (``foreach``) AdamW.

With ``--blas-kernels NAME`` a fourth arm runs the workers with ``OPENBLAS_CORETYPE=NAME``,
to weigh the kernel choice of ``mnemos.parallel.blas_kernel_env`` against OpenBLAS's own
(``SkylakeX`` on an AMD Zen 4).

The arms run in alternating rounds so that load from other processes hits all of them
alike, each round after a short pause and two untimed steps (see ``timed_round``); prints the median tokens/s of each and the ratios, and the median of the per-round
ratios (each Mnemos round against the PyTorch round run right after it), which cancels the
slow drifts of a shared machine better than a ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnemos.config import ModelConfig  # noqa: E402
from mnemos.nn import GPT  # noqa: E402
from mnemos.optim import AdamW, clip_grad_norm  # noqa: E402
from mnemos.parallel import DataParallel, blas_kernel_env  # noqa: E402

CONFIG = ModelConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
BATCH, LR = 12, 1e-3
SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"


def corpus() -> np.ndarray:
    if SHAKESPEARE.exists():
        return np.frombuffer(SHAKESPEARE.read_bytes(), dtype=np.uint8).astype(np.int64)
    rng = np.random.default_rng(0)
    words = "the of and to a in that is was he for it with as his on be at by i this had not".split()
    return np.frombuffer(" ".join(rng.choice(words, 200_000)).encode(), dtype=np.uint8).astype(np.int64)


def batches(data: np.ndarray, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    T = CONFIG.block_size
    starts = rng.integers(0, len(data) - T - 1, (n, BATCH))
    idx = starts[..., None] + np.arange(T + 1)
    windows = data[idx]
    return [(w[:, :-1], w[:, 1:]) for w in windows]


class MnemosRunner:
    """Training steps on a Mnemos model, in one process or with data-parallel workers."""

    def __init__(self, state: dict, workers: int, blas_kernels: str | None = None):
        self.model = GPT(CONFIG)
        self.model.load_state_dict(state)
        self.opt = AdamW(self.model.params, lr=LR)
        self.dp = None
        if workers > 1:  # the workers inherit the environment when they start
            with patch.dict(os.environ, {"OPENBLAS_CORETYPE": blas_kernels} if blas_kernels else {}):
                self.dp = DataParallel(self.model, workers, BATCH)

    def step(self, x, y) -> float:
        m = self.model
        if self.dp is None:
            _, loss = m.forward(x, y, train=True)
            m.backward(accumulate=False)  # as the trainer: the step's gradient written, not added
        else:
            loss = self.dp.loss_and_grad(x, y, accumulate=False)
        clip_grad_norm(m.params.grad, 1.0)
        self.opt.step(LR)
        return loss

    def close(self):
        if self.dp is not None:
            self.dp.close()


class TorchRunner:
    def __init__(self, state: dict):
        import torch

        from benchmarks._torch_gpt import make_adamw, torch_gpt_from_state_dict

        self.torch = torch
        torch.set_num_threads(os.cpu_count() or 1)
        self.model = torch_gpt_from_state_dict(state, CONFIG)
        self.opt = make_adamw(self.model, lr=LR)

    def step(self, x, y) -> float:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        _, loss = self.model(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.item()

    def close(self):
        pass


SETTLE_S = 0.3  # longer than OpenBLAS (~0.1 s) and OpenMP threads spin after their last call


def timed_round(runner, data, steps: int) -> float:
    """Tokens per second over ``steps`` training steps, after a pause that lets the
    previous arm's BLAS / OpenMP threads stop spinning (they would take a core from this
    arm) and two untimed steps that wake this arm up again."""
    time.sleep(SETTLE_S)
    for x, y in data[:2]:
        runner.step(x, y)
    t0 = time.perf_counter()
    for x, y in data[:steps]:
        runner.step(x, y)
    return steps * BATCH * CONFIG.block_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="data-parallel workers (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="steps per round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--blas-kernels", metavar="NAME",
                    help="also time the workers with OPENBLAS_CORETYPE=NAME (e.g. SkylakeX)")
    args = ap.parse_args()

    data = batches(corpus(), args.steps)
    state = GPT(CONFIG, seed=0).state_dict()
    workers = f"mnemos {args.workers} workers"
    runners = {"mnemos 1 process": MnemosRunner(state, 1),
               workers: MnemosRunner(state, args.workers)}
    if args.blas_kernels:
        runners[f"{workers}, {args.blas_kernels}"] = MnemosRunner(state, args.workers, args.blas_kernels)
    torch_name = f"pytorch eager ({os.cpu_count()} threads)"
    runners[torch_name] = TorchRunner(state)
    try:
        first = {name: [r.step(x, y) for x, y in data[:3]] for name, r in runners.items()}
        for name, losses in first.items():  # same weights, same batches: the same losses
            np.testing.assert_allclose(losses, first["mnemos 1 process"], rtol=1e-3, err_msg=name)
        for r in runners.values():
            for x, y in data[:args.warmup]:
                r.step(x, y)
        rates = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, r in runners.items():
                rates[name].append(timed_round(r, data, args.steps))
    finally:
        for r in runners.values():
            r.close()

    med = {name: statistics.median(v) for name, v in rates.items()}
    kernels = blas_kernel_env().get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_CORETYPE") or "OpenBLAS's choice"
    print(f"baby GPT (4/4/128, block {CONFIG.block_size}, batch {BATCH}, vocab {CONFIG.vocab_size}), "
          f"{os.cpu_count()} cores, {args.rounds} rounds x {args.steps} steps, workers' BLAS kernels: "
          f"{kernels}; median tokens/s:")
    for name, rate in med.items():
        spread = f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"
        print(f"  {name:<28} {rate:>9,.0f}   (rounds {spread})   {rate / med[torch_name]:.2f}x pytorch")
    for name in [n for n in runners if n != torch_name]:
        paired = [m / t for m, t in zip(rates[name], rates[torch_name])]
        print(f"  {name}: per-round ratio to pytorch, median {statistics.median(paired):.2f}x "
              f"(rounds {min(paired):.2f}-{max(paired):.2f}x)")
    print(f"  {args.workers} workers / 1 process: {med[workers] / med['mnemos 1 process']:.2f}x")
    if args.blas_kernels:
        other = f"{workers}, {args.blas_kernels}"
        paired = [a / b for a, b in zip(rates[workers], rates[other])]
        print(f"  {workers} / with {args.blas_kernels} kernels: per-round median {statistics.median(paired):.3f}x "
              f"(rounds {min(paired):.2f}-{max(paired):.2f}x)")


if __name__ == "__main__":
    main()
