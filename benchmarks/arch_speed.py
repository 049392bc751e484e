"""Training speed of the two architectures: Mnemos ``--arch llama`` against ``--arch gpt2``.

    python benchmarks/arch_speed.py                # 3 alternating rounds of 40 steps each
    python benchmarks/arch_speed.py --profile      # plus where a Llama step's time goes
    OPENBLAS_NUM_THREADS=1 python benchmarks/arch_speed.py --cpu-time   # on a machine others load

The small preset's shape (n_layer 4, n_head 4, n_embd 128, block 64, batch 12, vocabulary
513 = BPE 512 + <|endoftext|>), no dropout, one process, on the bytes of
``../shared/corpora/shakespeare.txt`` (a generated text if absent). A step is a whole
training step as the trainer runs it: forward, backward, clipping at 1.0 and AdamW. Both
models start from ``seed=0``; the rounds alternate so that a change in the machine's load
hits both. Prints tokens/s of each (median and best), the ratio, and each step's matmul
FLOPs (Llama's SwiGLU at 352 wide has ~2% more than GPT-2's 4x MLP). ``--cpu-time``
times the process's CPU time instead of the wall clock: with one BLAS thread that is the
work a step takes, whatever else the machine runs (the wall clock then measures the load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_speed import BATCH, CONFIG, MnemosRun, batches, corpus, profile, timed_round  # noqa: E402
from mnemos.config import PRESETS, ModelConfig  # noqa: E402

SMALL = PRESETS["small"]
SHAPES = {arch: ModelConfig(vocab_size=SMALL.train["tokenizer_vocab"] + 1, dropout=0.0, arch=arch, **SMALL.model)
          for arch in ("gpt2", "llama")}


def step_flops(c: ModelConfig, B: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward)."""
    N, C, T, F = B * c.block_size, c.n_embd, c.block_size, c.intermediate_size
    mlp = 2 * F if c.arch == "gpt2" else 3 * F  # GPT-2: up and down; Llama: gate, up and down
    linear = 2 * N * C * (3 * C + C + mlp)
    attention = 2 * 2 * B * T * T * C
    return 3 * (c.n_layer * (linear + attention) + 2 * N * C * c.vocab_size)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print where a Llama step's time goes")
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds (use with OPENBLAS_NUM_THREADS=1)")
    args = ap.parse_args(argv)

    data, source = corpus()
    T = SMALL.model["block_size"]
    tokens = BATCH * T
    assert T == CONFIG.block_size  # train_speed's batches are the small preset's windows
    runs = {arch: MnemosRun(cfg) for arch, cfg in SHAPES.items()}
    for arch, cfg in SHAPES.items():
        print(f"{arch:<6} {cfg.n_layer} layers, {cfg.n_head} heads, n_embd {cfg.n_embd}, MLP {cfg.intermediate_size}, "
              f"block {T}, batch {BATCH}, vocab {cfg.vocab_size}: {cfg.num_params():,} params, "
              f"{step_flops(cfg, BATCH) / 1e9:.2f} GFLOP a step")
    print(f"data: {source}")
    warm = batches(data, args.warmup, seed=1)
    for run in runs.values():
        run.steps(warm)
    rates: dict[str, list[float]] = {arch: [] for arch in runs}
    for r in range(args.rounds):
        data_r = batches(data, args.steps, seed=10 + r)
        for arch, run in runs.items():
            clock = time.process_time if args.cpu_time else time.perf_counter
            rates[arch].append(tokens * args.steps / timed_round(run, data_r, clock))
    for arch, values in rates.items():
        print(f"{arch:<6} {statistics.median(values):>8,.0f} tokens/{'CPU ' if args.cpu_time else ''}s median, {max(values):,.0f} best "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    med = statistics.median(rates["llama"]) / statistics.median(rates["gpt2"])
    print(f"ratio llama / gpt2: {med:.2f}x (medians), {max(rates['llama']) / max(rates['gpt2']):.2f}x (bests); "
          "on a busy machine trust the best rounds")
    if args.profile:
        profile(runs["llama"], batches(data, 20, seed=99))


if __name__ == "__main__":
    main()
