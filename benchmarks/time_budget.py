"""Equal time budgets: validation bits per byte of ``--preset small``, ``--preset auto`` and
PyTorch running nanoGPT's baby recipe, in one run, on the sample corpus and a French one.

    python benchmarks/time_budget.py                     # 5 minutes each, Shakespeare and French
    python benchmarks/time_budget.py --budget 60 --corpora shakespeare-100k

- ``small``: the preset (baby GPT shape, BPE 512, batch 12, lr 1e-3), its schedule sized to
  the budget.
- ``auto``: what ``mnemos.autosize.choose`` picks for the text, the budget and the speed
  measured at the start.
- ``torch``: nanoGPT's CPU "baby GPT" recipe (4 layers, 4 heads, n_embd 128, block 64,
  batch 12, byte level, AdamW lr 1e-3 with 100 warmup steps and a cosine to 1e-4, no
  dropout) in PyTorch eager (``_torch_gpt.py``, 2 threads), its steps set from its own
  speed measured at the start, as Mnemos' are.

Each arm's steps come from its speed measured once at the start (``_budget.py``): the
table compares what each would do with the budget on this machine, whatever the load
during the runs (their wall times are printed beside). All three are scored the same way
(``mnemos.evaluate``: every token of the held-out text once, sliding windows).
"""

from __future__ import annotations

import argparse
import math
import os
import time

from _budget import TORCH_MODEL, TORCH_THREADS, TORCH_TRAIN, corpora, run_arm, run_torch, speed_model, torch_tokens_per_s

from mnemos.autosize import TRAIN_SHARE, choose, measure_text
from mnemos.calibrate import SpeedModel
from mnemos.config import PRESETS, default_workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per arm (default 300)")
    ap.add_argument("--corpora", default="shakespeare,french", help="of shakespeare, french, shakespeare-100k")
    ap.add_argument("--arms", default="small,auto,torch")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--gflops", type=float, help="pin Mnemos' speed model (GFLOP/s) instead of measuring it")
    ap.add_argument("--overhead-us", type=float, default=0.0, help="with --gflops: microseconds per token on top")
    ap.add_argument("--torch-tokens-per-s", type=float, help="pin PyTorch's speed instead of measuring it")
    ap.add_argument("--torch-threads", type=int, default=2, help="PyTorch's threads (1 on a loaded machine: "
                                                                  "its thread pool spins when starved)")
    args = ap.parse_args()
    TORCH_THREADS[0] = args.torch_threads
    arms = args.arms.split(",")
    files = corpora(args.corpora.split(","))
    speed = SpeedModel(args.overhead_us * 1e-6, args.gflops * 1e9) if args.gflops else speed_model(args.workers)
    torch_speed = args.torch_tokens_per_s or (torch_tokens_per_s() if "torch" in arms else 0.0)
    print(f"time_budget {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores, Mnemos workers "
          f"{args.workers}, budget {args.budget:.0f} s, load {os.getloadavg()[0]:.1f}; Mnemos "
          f"{speed.flops_per_s / 1e9:.0f} GFLOP/s, PyTorch baby GPT {torch_speed:,.0f} tokens/s", flush=True)
    rows = []
    for name, path in files.items():
        stats = measure_text(path.read_text("utf-8"))
        for arm in arms:
            t0 = time.perf_counter()
            if arm == "small":
                preset = PRESETS["small"]
                result = run_arm(path, {**preset.model, "dropout": 0.0}, dict(preset.train), args.budget, speed,
                                 args.workers)
            elif arm == "auto":
                choice = choose(stats, args.budget, speed)
                result = run_arm(path, choice.model, choice.train, args.budget, speed, args.workers)
            else:
                tokens_per_step = TORCH_TRAIN["batch_size"] * TORCH_MODEL.block_size
                result = run_torch(path, max(2, int(torch_speed * args.budget * TRAIN_SHARE / tokens_per_step)))
            result["wall_s"] = time.perf_counter() - t0
            rows.append((name, arm, result))
            print(f"  {name:<18} {arm:<6} bpb {result['bpb']:.4f}  {result['params'] / 1e6:.2f}M params, "
                  f"{result['steps']} steps, train {result['train_s']:.0f} s (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    print(f"\n{'corpus':<18} {'arm':<6} {'bits/byte':>9} {'vs small':>9} {'params':>7} {'steps':>6}")
    for name, arm, r in rows:
        small = next((x["bpb"] for n, a, x in rows if n == name and a == "small"), math.nan)
        print(f"{name:<18} {arm:<6} {r['bpb']:>9.4f} {100 * (r['bpb'] / small - 1):>+8.1f}% "
              f"{r['params'] / 1e6:>6.2f}M {r['steps']:>6}")


if __name__ == "__main__":
    main()
