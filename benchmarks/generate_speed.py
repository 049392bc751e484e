"""Single-stream generation speed: Mnemos with its KV cache, Mnemos recomputing the whole
context at every token, and Hugging Face ``transformers`` ``generate(use_cache=True)`` on
the same model exported with ``mnemos.export``, in one run.

Shape: nanoGPT's baby GPT (4 layers, 4 heads, n_embd 128, block 64, vocabulary 257 =
bytes + ``<|endoftext|>``), float32, greedy decoding, batch 1. GPT-2 cannot go past its
learned positions, so the three-way comparison generates ``block - 1`` tokens from a
one-token prompt (repeated, median of the repeats); a long Mnemos run then shows the
sliding window's amortised cost. The greedy tokens of the three are checked to agree.

    python benchmarks/generate_speed.py [--repeats 7] [--long 2000] [--threads N]

``--threads N`` caps the BLAS / PyTorch threads of both sides (set before NumPy loads). At
batch 1 one thread is as fast as two, and on a machine shared with other jobs it avoids
the long stalls of a BLAS thread waiting for a core.

The weights are random, with ``<|endoftext|>``'s embedding zeroed so that greedy
decoding never stops early (speed does not depend on what the weights say).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rates(fn, n_tokens: int, repeats: int) -> tuple[float, float, list[int]]:
    """(median, best) tokens/s of ``fn()`` over ``repeats`` runs after one warm-up, and
    the tokens it produced. The median is the figure; the best shows what a shared,
    noisy machine hides."""
    tokens = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_tokens / statistics.median(times), n_tokens / min(times), tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--long", type=int, default=2000, help="tokens of the long Mnemos run (window slides)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: their own)")
    args = ap.parse_args()
    if args.threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    from mnemos.config import ModelConfig, TrainConfig
    from mnemos.generate import Generator
    from mnemos.nn import GPT
    from mnemos.tokenizer import BPETokenizer

    tok = BPETokenizer.train("", 256)  # byte level + <|endoftext|>: 257 ids
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=64)
    model = GPT(cfg, seed=0)
    model.params.view("wte")[tok.eot_id] = 0
    gen = Generator(model, tok)
    prompt = tok.encode("\n")
    n = cfg.block_size - len(prompt)

    def mnemos(use_cache: bool):
        return lambda: [s.token_id for s in gen.stream(prompt, n, temperature=0, use_cache=use_cache)]

    rows = []
    cached, cached_best, ref = rates(mnemos(True), n, args.repeats)
    rows.append(("Mnemos, KV cache", cached, cached_best))
    full, full_best, toks = rates(mnemos(False), n, args.repeats)
    assert toks == ref, "cached and recomputed generation disagree"
    rows.append(("Mnemos, full recompute", full, full_best))

    hf_rate = None
    try:
        import torch
        import transformers
    except ImportError as exc:
        print(f"transformers not available ({exc}); skipping the peer")
    else:
        from mnemos.checkpoint import save_checkpoint
        from mnemos.export import export_hf
        from mnemos.optim import AdamW

        transformers.logging.set_verbosity_error()
        if args.threads:
            torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "run", model, tok, cfg, TrainConfig(), AdamW(model.params), {"step": 0})
            hf = transformers.AutoModelForCausalLM.from_pretrained(export_hf(Path(tmp) / "run", Path(tmp) / "hf"))
        hf.eval()
        ids = torch.tensor([prompt])
        mask = torch.ones_like(ids)

        def peer():
            with torch.no_grad():
                out = hf.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, use_cache=True)
            return out[0, len(prompt):].tolist()

        hf_rate, hf_best, toks = rates(peer, n, args.repeats)
        assert toks == ref, "transformers' greedy tokens differ from Mnemos'"
        rows.append((f"transformers {transformers.__version__} generate(use_cache=True), torch {torch.__version__}",
                     hf_rate, hf_best))

    t0 = time.perf_counter()
    long = sum(1 for _ in gen.stream(prompt, args.long, temperature=0))
    long_rate = long / (time.perf_counter() - t0)

    print(f"baby GPT {cfg.n_layer}/{cfg.n_head}/{cfg.n_embd}, block {cfg.block_size}, vocab {cfg.vocab_size}, "
          f"greedy, batch 1, {n} new tokens from a {len(prompt)}-token prompt; tokens/s, median (best) of "
          f"{args.repeats}" + (f", {args.threads} thread(s)" if args.threads else ""))
    for name, rate, best in rows:
        print(f"  {name:<70} {rate:8,.0f} ({best:,.0f})")
    print(f"  {'Mnemos, KV cache, ' + str(long) + ' tokens in one run (' + str(gen.slides) + ' window slides)':<70} "
          f"{long_rate:8,.0f}")
    print(f"KV cache vs full recompute: {cached / full:.2f}x")
    if hf_rate:
        print(f"Mnemos (KV cache) vs transformers: {cached / hf_rate:.2f}x")
    print(f"target >= 2,000 tokens/s with the cache: {'met' if cached >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
