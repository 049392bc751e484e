"""nanoGPT's CPU "baby GPT" recipe on Shakespeare: Mnemos' trainer vs PyTorch, same run.

    python benchmarks/shakespeare.py              # the full recipe (2000 steps, several minutes each)
    python benchmarks/shakespeare.py --steps 50   # a quick check that everything runs

The recipe (nanoGPT's ``config/train_shakespeare_char.py`` shrunk for a CPU): n_layer 4,
n_head 4, n_embd 128, block 64, batch 12, AdamW lr 1e-3 with 100 warmup steps and a
cosine decay to 1e-4 over 2000 steps, betas (0.9, 0.99), weight decay 0.1, no dropout,
gradient clipping at 1.0, byte level (vocab 256 + ``<|endoftext|>``) on a 90/10 split of
``../shared/corpora/shakespeare.txt``. PyTorch trains the same model (``_torch_gpt.py``)
from the same initial weights on the same batches, so the two runs differ only in their
arithmetic. Both are scored on the same 200 random validation batches (nanoGPT's
``estimate_loss``). Target: Mnemos' validation loss within 0.02 of PyTorch's (about
1.86) in no more wall time.

A second Mnemos run with a 512-token BPE (same steps, batch and block, so each step sees
more text) reports bits per byte, the measure that compares across vocabularies:
``loss / ln 2 * tokens / bytes`` over the validation split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnemos import data as data_mod  # noqa: E402
from mnemos.config import ModelConfig, TrainConfig, default_workers  # noqa: E402
from mnemos.nn import GPT  # noqa: E402
from mnemos.optim import lr_at  # noqa: E402
from mnemos.trainer import Trainer  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "shakespeare.txt"
MODEL = ModelConfig(vocab_size=257, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
EVAL_BATCHES = 200
SEED = 1337


def recipe(steps: int, vocab_size: int, workers: int) -> TrainConfig:
    return TrainConfig(tokenizer_vocab=vocab_size, batch_size=12, lr=1e-3, min_lr=1e-4,
                       warmup_steps=min(100, steps // 2), max_steps=steps, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0,
                       eval_interval=steps, eval_steps=1, sample_tokens=0, seed=SEED, workers=workers)


def estimate_loss(forward_loss, tokens: np.ndarray) -> float:
    """Mean loss over the same EVAL_BATCHES random validation batches for every model."""
    rng = np.random.default_rng([SEED, 99])
    losses = [forward_loss(*data_mod.get_batch(tokens, 12, MODEL.block_size, rng)) for _ in range(EVAL_BATCHES)]
    return float(np.mean(losses))


def run_mnemos(corpus: Path, steps: int, vocab_size: int, workers: int) -> dict:
    marks = {}

    def on_event(event):
        if event.kind == "error":
            print(f"  mnemos error: {event.message}", flush=True)
        if event.kind == "state" and event.state == "running":
            marks["start"] = time.perf_counter()
        if event.kind == "step" and event.step % max(1, steps // 10) == 0:
            print(f"  mnemos step {event.step:>5}/{steps}  loss {event.loss:.4f}  {event.tokens_per_s:,.0f} tok/s",
                  flush=True)

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        trainer = Trainer.new(MODEL, recipe(steps, vocab_size, workers), corpus, out_dir=Path(out) / "run",
                              callback=on_event)
        done = trainer.run()
        end = time.perf_counter()
    if done.reason != "finished":
        raise SystemExit(f"mnemos run ended with {done.reason}")
    model, val = trainer.model, trainer.val_tokens
    loss = estimate_loss(lambda x, y: float(model.forward(x, y)[1]), val)
    val_bytes = len(trainer.tokenizer.decode_bytes(np.asarray(val)))
    return {"val_loss": loss, "bits_per_byte": loss / math.log(2) * len(val) / val_bytes,
            "train_s": end - marks["start"], "prepare_s": marks["start"] - t0,
            "tokens_per_s": steps * 12 * MODEL.block_size / (end - marks["start"]),
            "vocab": trainer.tokenizer.vocab_size}


def run_torch(corpus: Path, steps: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _torch_gpt import make_adamw, torch_gpt_from_state_dict

    tokens = np.frombuffer(corpus.read_bytes(), dtype=np.uint8)
    train, val = data_mod.split_train_val(tokens)
    cfg = recipe(steps, 256, 1)
    model = torch_gpt_from_state_dict(GPT(MODEL, seed=cfg.seed).state_dict(), MODEL)  # Mnemos' initial weights
    opt = make_adamw(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)  # the trainer's batch stream
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        lr = lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = data_mod.get_batch(train, cfg.batch_size, MODEL.block_size, rng)
        _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if (step + 1) % max(1, steps // 10) == 0:
            print(f"  torch  step {step + 1:>5}/{steps}  loss {loss.item():.4f}", flush=True)
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        loss = estimate_loss(lambda x, y: float(model(torch.from_numpy(x), torch.from_numpy(y))[1]), val)
    return {"val_loss": loss, "bits_per_byte": loss / math.log(2), "train_s": train_s, "prepare_s": 0.0,
            "tokens_per_s": steps * 12 * MODEL.block_size / train_s, "vocab": 257,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps (the recipe: 2000)")
    ap.add_argument("--workers", type=int, default=default_workers(), help="Mnemos data-parallel workers")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch run")
    ap.add_argument("--no-bpe", action="store_true", help="skip the BPE-512 run")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    args = ap.parse_args()
    if not CORPUS.is_file():
        print(f"skipped: {CORPUS} is not here (it lives in the shared folder of the project's machines)")
        return
    print(f"baby GPT recipe, {args.steps} steps, {os.cpu_count()} CPU cores, Mnemos workers {args.workers}, "
          f"corpus {CORPUS.name} "
          f"({CORPUS.stat().st_size:,} bytes, 90/10 split)")
    results = {}
    print("Mnemos, byte level:")
    results["mnemos_bytes"] = run_mnemos(CORPUS, args.steps, 256, args.workers)
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: skipping the peer run")
        else:
            print("PyTorch eager, byte level, same initial weights and batches:")
            results["torch_bytes"] = run_torch(CORPUS, args.steps)
    if not args.no_bpe:
        print("Mnemos, BPE 512:")
        results["mnemos_bpe512"] = run_mnemos(CORPUS, args.steps, 512, args.workers)

    print()
    print(f"{'run':<22} {'val loss':>9} {'bits/byte':>10} {'train s':>9} {'tokens/s':>10} {'prepare s':>10}")
    for name, r in results.items():
        print(f"{name:<22} {r['val_loss']:>9.4f} {r['bits_per_byte']:>10.4f} {r['train_s']:>9.1f} "
              f"{r['tokens_per_s']:>10,.0f} {r['prepare_s']:>10.1f}")
    if "torch_bytes" in results:
        m, t = results["mnemos_bytes"], results["torch_bytes"]
        print(f"\nMnemos vs PyTorch {t['torch']} ({t['threads']} threads): "
              f"val loss {m['val_loss'] - t['val_loss']:+.4f} "
              f"(target within 0.02), wall time ratio {m['train_s'] / t['train_s']:.2f}x (target <= 1.00x), "
              f"speed {m['tokens_per_s'] / t['tokens_per_s']:.2f}x")
    if "mnemos_bpe512" in results:
        b, m = results["mnemos_bpe512"], results["mnemos_bytes"]
        print(f"BPE 512 vs byte level: {b['bits_per_byte']:.4f} vs {m['bits_per_byte']:.4f} bits per byte "
              f"({'better' if b['bits_per_byte'] < m['bits_per_byte'] else 'not better'})")
    if args.json:
        print(json.dumps({"steps": args.steps, **results}))


if __name__ == "__main__":
    main()
