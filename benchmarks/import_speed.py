"""A GPT-2 124M brought in from Hugging Face: import time and memory, logits, generation and
one fine-tuning step, Mnemos against ``transformers`` / PyTorch eager on the same machine.

    python benchmarks/import_speed.py                   # build the folder once, then measure
    python benchmarks/import_speed.py --new-tokens 64 --rounds 3 --workers 2

No download: a randomly initialised ``GPT2LMHeadModel`` of GPT-2 small's shape (12 layers,
12 heads, 768 wide, 1024 positions) is saved by ``save_pretrained`` (safetensors) with a
byte-level BPE trained by Hugging Face ``tokenizers`` on the benchmark corpus (GPT-2's own
tokenizer needs the Hub; the vocabulary reached is printed, and the model is sized to it).

Measured, in one run:
- ``mnemos import`` in a child process: wall time and peak resident memory;
- the logits of Mnemos and ``transformers`` on the same text (max abs difference);
- greedy generation with the KV cache: Mnemos ``Generator`` against
  ``model.generate(use_cache=True, do_sample=False)``, alternating rounds, tokens/s;
- one fine-tuning step (forward, backward, clip, AdamW) on ``--batch`` x ``--block`` tokens:
  Mnemos with ``--workers`` data-parallel processes against PyTorch eager, tokens/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"


def corpus_text() -> str:
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8")
    rng = np.random.default_rng(0)
    words = "the of and to a in that is was he for it with as his on be at by i this had not".split()
    return " ".join(rng.choice(words, 400_000))


def build_folder(folder: Path, vocab: int) -> None:
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([corpus_text()], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)


def timed_import(folder: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (GiB) of ``mnemos import`` run as a child process."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnemos", "import", "--from", str(folder), "--out", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib / 2**20


def generation_rates(ckpt, hf, perm, prompt_ids, new_tokens: int, rounds: int) -> tuple[list, list]:
    import torch

    from mnemos.generate import Generator

    gen = Generator(ckpt.model, ckpt.tokenizer)
    hf_prompt = torch.tensor([perm[prompt_ids].tolist()])
    ours, theirs = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = sum(1 for _ in gen.stream(prompt_ids, max_new_tokens=new_tokens, temperature=0))
        ours.append(n / (time.perf_counter() - t0))
        with torch.no_grad():
            t0 = time.perf_counter()
            out = hf.generate(hf_prompt, max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                              pad_token_id=0, eos_token_id=None, min_new_tokens=new_tokens)
            theirs.append((out.shape[1] - hf_prompt.shape[1]) / (time.perf_counter() - t0))
    return ours, theirs


def finetune_rates(ckpt, tokens: np.ndarray, batch: int, block: int, workers: int, rounds: int) -> tuple[list, list]:
    import torch

    from benchmarks._torch_gpt import make_adamw, torch_gpt_from_state_dict
    from mnemos.optim import AdamW, clip_grad_norm
    from mnemos.parallel import DataParallel

    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(tokens) - block - 1, (rounds + 1, batch))
    windows = tokens[starts[..., None] + np.arange(block + 1)]
    data = [(w[:, :-1].astype(np.int64), w[:, 1:].astype(np.int64)) for w in windows]
    model = ckpt.model
    opt = AdamW(model.params, lr=1e-5)
    dp = DataParallel(model, workers, batch) if workers > 1 else None
    torch.set_num_threads(os.cpu_count() or 1)
    tmodel = torch_gpt_from_state_dict(model.state_dict(), model.config)
    topt = make_adamw(tmodel, lr=1e-5)

    def mnemos_step(x, y):
        if dp is None:
            model.forward(x, y, train=True)
            model.backward(accumulate=False)
        else:
            dp.loss_and_grad(x, y, accumulate=False)
        clip_grad_norm(model.params.grad, 1.0)
        opt.step(1e-5)

    def torch_step(x, y):
        topt.zero_grad(set_to_none=True)
        _, loss = tmodel(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 1.0)
        topt.step()

    ours, theirs = [], []
    try:
        mnemos_step(*data[0])
        torch_step(*data[0])
        for x, y in data[1:]:
            for step, rates in ((mnemos_step, ours), (torch_step, theirs)):
                time.sleep(0.3)  # let the other arm's BLAS threads stop spinning
                t0 = time.perf_counter()
                step(x, y)
                rates.append(batch * block / (time.perf_counter() - t0))
    finally:
        if dp is not None:
            dp.close()
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mnemos-import-bench"))
    ap.add_argument("--vocab", type=int, default=50257, help="tokenizer size asked of the BPE trainer")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import torch
    import transformers

    from mnemos.checkpoint import load_checkpoint
    from mnemos.hf_import import hf_tokenizer

    folder, out = args.workdir / "gpt2-random", args.workdir / "imported"
    if not (folder / "model.safetensors").is_file():
        args.workdir.mkdir(parents=True, exist_ok=True)
        build_folder(folder, args.vocab)
    seconds, peak = timed_import(folder, out)
    size = (folder / "model.safetensors").stat().st_size / 2**20
    ckpt = load_checkpoint(out)
    _, perm = hf_tokenizer(folder)
    torch.set_num_threads(os.cpu_count() or 1)
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    text = corpus_text()
    ids = np.asarray([ckpt.tokenizer.encode(text[:4000])[:128]])
    with torch.no_grad():
        theirs = hf(torch.from_numpy(perm[ids])).logits.numpy()[:, :, perm]
    diff = float(np.abs(ckpt.model.forward(ids)[0] - theirs).max())
    print(f"GPT-2 small shape, random weights, vocabulary {ckpt.model_config.vocab_size:,}, "
          f"{ckpt.model.num_params():,} parameters; {os.cpu_count()} cores")
    print(f"  import: {seconds:.1f} s for a {size:,.0f} MiB safetensors file, peak memory {peak:.2f} GiB")
    print(f"  logits vs transformers on 128 tokens: max abs difference {diff:.2e}")
    ours, hfs = generation_rates(ckpt, hf, perm, ids[0, :16].tolist(), args.new_tokens, args.rounds)
    print(f"  greedy generation, {args.new_tokens} new tokens with the KV cache, median of {args.rounds}: "
          f"mnemos {statistics.median(ours):.1f} tokens/s, transformers {statistics.median(hfs):.1f} tokens/s, "
          f"{statistics.median(ours) / statistics.median(hfs):.2f}x")
    del hf
    tokens = ckpt.tokenizer.encode_array(text[:400_000])
    ours, pts = finetune_rates(ckpt, tokens, args.batch, args.block, args.workers, args.rounds)
    print(f"  fine-tuning step, batch {args.batch} x block {args.block}, median of {args.rounds}: mnemos "
          f"({args.workers} workers) {statistics.median(ours):,.0f} tokens/s, pytorch eager "
          f"{statistics.median(pts):,.0f} tokens/s, {statistics.median(ours) / statistics.median(pts):.2f}x")


if __name__ == "__main__":
    main()
