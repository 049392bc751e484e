"""Training speed: Mnemos vs an identical PyTorch eager model, in the same run.

    python benchmarks/train_speed.py                 # 3 alternating rounds of 40 steps each
    python benchmarks/train_speed.py --profile       # plus where a Mnemos step's time goes

nanoGPT's CPU "baby GPT" shape: n_layer 4, n_head 4, n_embd 128, block 64, batch 12,
byte-level vocab 256, no dropout, on ``../shared/corpora/shakespeare.txt`` (a generated
text if absent). A step is a whole training step: batch, forward, backward,
gradient clipping at 1.0 and AdamW. PyTorch runs ``benchmarks/_torch_gpt.py`` from the
same initial weights on the same batches with ``torch.set_num_threads(2)``, its fused
(``foreach``) AdamW and ``F.scaled_dot_product_attention``.

Prints tokens/s of each (median over rounds, after warm-up), the ratio, the share of
the machine's float32 matmul peak (timed on a big ``np.matmul``) that Mnemos reaches,
and Mnemos' peak RSS (measured before PyTorch is imported).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnemos.config import ModelConfig  # noqa: E402
from mnemos.nn import GPT  # noqa: E402
from mnemos.optim import AdamW, clip_grad_norm  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"
CONFIG = ModelConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
BATCH = 12
LR = 1e-3


def corpus() -> tuple[np.ndarray, str]:
    if SHAKESPEARE.exists():
        return np.frombuffer(SHAKESPEARE.read_bytes(), dtype=np.uint8), str(SHAKESPEARE)
    rng = np.random.default_rng(0)
    words = "the of and to a in that is was he for it with as his on be at by i this had not".split()
    text = " ".join(rng.choice(words, 400_000))
    return np.frombuffer(text.encode(), dtype=np.uint8), "generated text"


def batches(data, n, seed):
    rng = np.random.default_rng(seed)
    T = CONFIG.block_size
    out = []
    for _ in range(n):
        starts = rng.integers(0, len(data) - T - 1, BATCH)
        x = np.stack([data[s:s + T] for s in starts]).astype(np.int64)
        y = np.stack([data[s + 1:s + T + 1] for s in starts]).astype(np.int64)
        out.append((x, y))
    return out


def step_flops(c: ModelConfig, B: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward)."""
    N, C, T = B * c.block_size, c.n_embd, c.block_size
    linear = 2 * N * C * (3 * C + C + 4 * C + 4 * C)
    attention = 2 * 2 * B * T * T * C  # q k^T and P v, all heads
    return 3 * (c.n_layer * (linear + attention) + 2 * N * C * c.vocab_size)


def matmul_peak() -> float:
    """Best float32 GFLOP/s of a 2048^3 np.matmul."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = min(_timed(lambda: np.matmul(a, a, out=out)) for _ in range(5))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(fn, clock=time.perf_counter) -> float:
    t = clock()
    fn()
    return clock() - t


SETTLE_S = 0.3  # longer than OpenBLAS (~0.1 s) and OpenMP threads spin after their last call


def timed_round(run, data, clock=time.perf_counter) -> float:
    """Seconds (of ``clock``) for ``run.steps(data)``, after a pause that lets the other
    side's BLAS / OpenMP threads stop spinning (they would take a core) and two untimed steps."""
    time.sleep(SETTLE_S)
    run.steps(data[:2])
    return _timed(lambda: run.steps(data), clock)


class MnemosRun:
    def __init__(self, config: ModelConfig = CONFIG):
        self.model = GPT(config, seed=0)
        self.opt = AdamW(self.model.params, lr=LR, betas=(0.9, 0.99), weight_decay=0.1)

    def steps(self, data):
        model, opt = self.model, self.opt
        for x, y in data:
            _, loss = model.forward(x, y, train=True)
            model.backward(accumulate=False)  # as the trainer: the step's gradient written, not added
            clip_grad_norm(model.params.grad, 1.0)
            opt.step(LR)
        return loss


class TorchRun:
    def __init__(self, state):
        import torch

        from benchmarks._torch_gpt import make_adamw, torch_gpt_from_state_dict

        torch.set_num_threads(2)
        self.torch = torch
        self.model = torch_gpt_from_state_dict(state, CONFIG)
        self.opt = make_adamw(self.model, lr=LR, betas=(0.9, 0.99), weight_decay=0.1)

    def steps(self, data):
        torch, model, opt = self.torch, self.model, self.opt
        for x, y in data:
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            opt.zero_grad(set_to_none=True)
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return loss.item()


def _qualname(path: str, line: int, func: str) -> str:
    """``Class.method`` for a profiled function (the class found by reading its source)."""
    if not path.endswith(".py"):
        return func
    lines = Path(path).read_text().splitlines()[:line]
    for text in reversed(lines):
        if text.startswith("class "):
            return f"{text[6:].split('(')[0].split(':')[0]}.{func}"
        if text.startswith("def "):
            break
    return f"{Path(path).stem}.{func}"


def profile(run: MnemosRun, data) -> None:
    """Exclusive time per layer method (NumPy work is counted in the method calling it).
    With ``OPENBLAS_NUM_THREADS=1`` it counts CPU time, steadier on a busy machine."""
    prof = cProfile.Profile(time.process_time if os.environ.get("OPENBLAS_NUM_THREADS") == "1" else time.perf_counter)
    prof.runcall(run.steps, data)
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    rows = sorted(((v[2], v[0], _qualname(*k)) for k, v in stats.stats.items()), reverse=True)
    print(f"\nwhere a Mnemos step goes ({len(data)} steps, {1000 * total / len(data):.1f} ms/step under cProfile):")
    print(f"{'function':<32}{'ms/step':>9}{'share':>8}{'calls/step':>12}")
    for t, calls, name in rows[:16]:
        print(f"{name:<32}{1000 * t / len(data):>9.2f}{100 * t / total:>7.1f}%{calls / len(data):>12.0f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print where a Mnemos step's time goes")
    ap.add_argument("--no-torch", action="store_true", help="time Mnemos only")
    args = ap.parse_args(argv)

    data, source = corpus()
    tokens = BATCH * CONFIG.block_size
    print(f"baby GPT: {CONFIG.n_layer} layers, {CONFIG.n_head} heads, n_embd {CONFIG.n_embd}, block "
          f"{CONFIG.block_size}, batch {BATCH}, vocab {CONFIG.vocab_size}, {CONFIG.num_params():,} params; "
          f"data: {source}")
    peak = matmul_peak()
    flops = step_flops(CONFIG, BATCH)
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s; one step: {flops / 1e9:.2f} GFLOP")

    warm = batches(data, args.warmup, seed=1)
    rounds = [batches(data, args.steps, seed=10 + r) for r in range(args.rounds)]
    mnemos = MnemosRun()
    mnemos.steps(warm)
    m_rates, t_rates = [], []
    m_rates.append(tokens * args.steps / timed_round(mnemos, rounds[0]))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch_run = None
    if not args.no_torch:
        torch_run = TorchRun(GPT(CONFIG, seed=0).state_dict())
        torch_run.steps(warm)
        t_rates.append(tokens * args.steps / timed_round(torch_run, rounds[0]))
    for r in range(1, args.rounds):
        m_rates.append(tokens * args.steps / timed_round(mnemos, rounds[r]))
        if torch_run is not None:
            t_rates.append(tokens * args.steps / timed_round(torch_run, rounds[r]))

    def report(name, rates):
        med = statistics.median(rates)
        share = med * flops / tokens / 1e9 / peak
        print(f"{name:<8} {med:>8,.0f} tokens/s median, {max(rates):,.0f} best ({1000 * tokens / med:.1f} ms/step; "
              f"rounds: {', '.join(f'{v:,.0f}' for v in rates)}); {100 * share:.0f}% of the matmul peak")
        return med

    m = report("Mnemos:", m_rates)
    if t_rates:
        t = report("PyTorch:", t_rates)
        print(f"ratio Mnemos / PyTorch: {m / t:.2f}x (medians), {max(m_rates) / max(t_rates):.2f}x (bests); "
              "on a busy machine trust the best rounds")
    print(f"Mnemos peak RSS: {rss_mb:.0f} MB (before PyTorch is imported)")
    if args.profile:
        profile(mnemos, batches(data, 20, seed=99))


if __name__ == "__main__":
    main()
