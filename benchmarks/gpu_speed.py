"""GPU training speed: Mnemos on CuPy vs the same model in PyTorch eager CUDA, same run.

    python benchmarks/gpu_speed.py                      # both shapes, 3 alternating rounds
    python benchmarks/gpu_speed.py --shape baby --steps 100

Shapes: nanoGPT's CPU "baby GPT" (4 layers, 4 heads, n_embd 128, block 64, batch 12)
and its GPU Shakespeare shape (6 layers, 6 heads, n_embd 384, block 256, batch 64),
both byte-level (vocab 256) and without dropout. float32 everywhere and no TF32 on
either side (``torch.backends.*.allow_tf32 = False``; CuPy uses TF32 only when
``CUPY_TF32=1``, which this script refuses).

A step is a whole training step on a host batch: copy it to the GPU,
forward, backward, global-norm clipping at 1.0, AdamW, and the step's loss as a Python
float (the trainer reports every step's loss, so both sides synchronise once per step).
PyTorch runs ``benchmarks/_torch_gpt.py`` (``F.scaled_dot_product_attention``, fused
``foreach`` AdamW) from the same initial weights on the same batches; the first losses
are checked to agree. Prints tokens/s of each (median over rounds) and the ratio.
"""

from __future__ import annotations

import argparse
import os
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

SHAPES = {
    "baby": (ModelConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0), 12),
    "nanogpt": (ModelConfig(vocab_size=256, n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.0), 64),
}
LR = 1e-3


def batches(cfg: ModelConfig, B: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    text = rng.integers(0, cfg.vocab_size, 1_000_000)  # timing only: content does not matter
    starts = rng.integers(0, len(text) - cfg.block_size - 1, (n, B))
    windows = text[starts[..., None] + np.arange(cfg.block_size + 1)]
    return [(w[:, :-1], w[:, 1:]) for w in windows]


class MnemosCuda:
    def __init__(self, cfg, state):
        import cupy

        self.cp = cupy
        self.model = GPT(cfg, device="cuda")
        self.model.load_state_dict(state)
        self.opt = AdamW(self.model.params, lr=LR)

    def step(self, x, y) -> float:
        m = self.model
        _, loss = m.forward(x, y, train=True)
        m.backward(accumulate=False)  # as the trainer: the step's gradient written, not added
        clip_grad_norm(m.params.grad, 1.0)
        self.opt.step(LR)
        return loss

    def sync(self):
        self.cp.cuda.Device().synchronize()


class TorchCuda:
    def __init__(self, cfg, state):
        import torch

        from benchmarks._torch_gpt import make_adamw, torch_gpt_from_state_dict

        self.torch = torch
        self.model = torch_gpt_from_state_dict(state, cfg).cuda()
        self.opt = make_adamw(self.model, lr=LR)

    def step(self, x, y) -> float:
        torch = self.torch
        xb, yb = torch.from_numpy(x).cuda(non_blocking=True), torch.from_numpy(y).cuda(non_blocking=True)
        self.opt.zero_grad(set_to_none=True)
        _, loss = self.model(xb, yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.item()

    def sync(self):
        self.torch.cuda.synchronize()


def tokens_per_s(runner, data, steps, tokens_per_step) -> float:
    runner.sync()
    t0 = time.perf_counter()
    for x, y in data[:steps]:
        runner.step(x, y)
    runner.sync()
    return steps * tokens_per_step / (time.perf_counter() - t0)


def bench(shape: str, rounds: int, steps: int, warmup: int) -> dict:
    cfg, B = SHAPES[shape]
    data = batches(cfg, B, max(steps, warmup, 3))
    state = GPT(cfg, seed=0).state_dict()
    runners = {"mnemos cupy": MnemosCuda(cfg, state), "pytorch eager cuda": TorchCuda(cfg, state)}
    first = {name: [r.step(x, y) for x, y in data[:3]] for name, r in runners.items()}
    # the same model on both sides (a wrong one is off by far more; as in parallel_speed.py)
    np.testing.assert_allclose(first["mnemos cupy"], first["pytorch eager cuda"], rtol=1e-3)
    for r in runners.values():
        for x, y in data[:warmup]:
            r.step(x, y)
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, r in runners.items():
            rates[name].append(tokens_per_s(r, data, steps, B * cfg.block_size))
    return {name: statistics.median(v) for name, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    if os.environ.get("CUPY_TF32") == "1":
        sys.exit("unset CUPY_TF32: the comparison is float32 without TF32 on both sides")

    import cupy
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"{name}, CuPy {cupy.__version__}, PyTorch {torch.__version__}; float32, no TF32; "
          f"median tokens/s over {args.rounds} rounds of {args.steps} steps")
    for shape in (SHAPES if args.shape == "all" else [args.shape]):
        cfg, B = SHAPES[shape]
        med = bench(shape, args.rounds, args.steps, args.warmup)
        ratio = med["mnemos cupy"] / med["pytorch eager cuda"]
        print(f"  {shape:<8} ({cfg.n_layer}/{cfg.n_head}/{cfg.n_embd}, block {cfg.block_size}, batch {B}): "
              f"mnemos cupy {med['mnemos cupy']:>10,.0f}   pytorch eager {med['pytorch eager cuda']:>10,.0f}   "
              f"{ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
