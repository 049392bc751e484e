"""Train and encode 20 MB of real text with Mnemos' BPE and with Hugging Face ``tokenizers``.

    python benchmarks/tokenizer_speed.py [--vocab-size 4096] [--megabytes 20] [--corpus FILE] [--parity]

Both tokenizers learn ``vocab_size - 256`` merges over the 256 byte alphabet (plus
``<|endoftext|>``) from the same text, then encode the whole text. Each side runs in
its own child process so that its peak memory (max RSS) is its own. Prints the times,
bytes per token, ratios and peak memory. ``--parity`` also encodes the whole text with
Hugging Face loading Mnemos' exported ``tokenizer.json`` and checks the ids are identical.

The corpus (``benchmarks/corpus.py``) is French and English documentation from Debian
packages plus ``../shared/corpora/shakespeare.txt``; without them the benchmark skips.
Targets (issue 3): train <= 15 s, encode <= 15 s, bytes/token within 1% of HF, < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

EOT = "<|endoftext|>"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mnemos(corpus: Path, vocab_size: int, out: Path) -> dict:
    from mnemos.export import write_tokenizer_json
    from mnemos.tokenizer import BPETokenizer

    text = corpus.read_text("utf-8")
    t0, c0 = time.perf_counter(), time.process_time()
    tok = BPETokenizer.train(text, vocab_size)
    t1, c1 = time.perf_counter(), time.process_time()
    ids = tok.encode_array(text)
    t2, c2 = time.perf_counter(), time.process_time()
    write_tokenizer_json(tok, out / "tokenizer.json")
    ids.tofile(out / "mnemos_ids.bin")
    return {
        "train_s": t1 - t0,
        "encode_s": t2 - t1,
        "train_cpu_s": c1 - c0,  # one thread: on a busy machine, CPU time is the quiet wall time
        "encode_cpu_s": c2 - c1,
        "tokens": int(ids.size),
        "vocab": tok.vocab_size,
    }


def run_hf(corpus: Path, vocab_size: int, out: Path) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from mnemos.tokenizer import text_blocks

    text = corpus.read_text("utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + 1,  # HF counts the special token in vocab_size
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # ~1 MB blocks cut where the chunks do not change, so HF can use both cores
    blocks = list(text_blocks(text))
    t0 = time.perf_counter()
    tok.train_from_iterator(blocks, trainer)
    t1 = time.perf_counter()
    n_one = len(tok.encode(text).ids)
    t2 = time.perf_counter()
    n_batch = sum(len(e.ids) for e in tok.encode_batch(blocks))
    t3 = time.perf_counter()
    tok.save(str(out / "hf_tokenizer.json"))
    return {
        "train_s": t1 - t0,
        "encode_s": t2 - t1,
        "encode_batch_s": t3 - t2,
        "tokens": n_one,
        "tokens_batch": n_batch,
        "vocab": tok.get_vocab_size(),
    }


def run_parity(corpus: Path, vocab_size: int, out: Path) -> dict:
    import numpy as np
    from tokenizers import Tokenizer

    text = corpus.read_text("utf-8")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    t0 = time.perf_counter()
    hf_ids = np.asarray(tok.encode(text).ids, dtype=np.int32)
    t1 = time.perf_counter()
    ours = np.fromfile(out / "mnemos_ids.bin", dtype=np.int32)
    same = hf_ids.shape == ours.shape and bool((hf_ids == ours).all())
    first = None
    if not same:
        n = min(hf_ids.size, ours.size)
        diff = np.flatnonzero(hf_ids[:n] != ours[:n])
        first = int(diff[0]) if diff.size else n
    return {"identical": same, "first_difference": first, "encode_s": t1 - t0}


WORKERS = {"mnemos": run_mnemos, "hf": run_hf, "parity": run_parity}


def child(name: str, corpus: Path, vocab_size: int, out: Path) -> dict:
    """Run one worker in a fresh Python process and return its JSON result."""
    got = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--corpus", str(corpus), "--vocab-size", str(vocab_size), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{got.stderr}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--megabytes", type=float, default=20.0)
    ap.add_argument("--corpus", type=Path, help="use this UTF-8 text instead of the Debian + Shakespeare corpus")
    ap.add_argument("--parity", action="store_true", help="also check HF encodes the whole text to Mnemos' ids")
    ap.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args.corpus, args.vocab_size, args.out)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    try:
        import tokenizers
    except ImportError:
        tokenizers = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.corpus:
            corpus, what = args.corpus, str(args.corpus)
        else:
            from corpus import build_corpus

            text, what = build_corpus(args.megabytes)
            if text is None:
                print(f"SKIPPED: {what}")
                return
            corpus = out / "corpus.txt"
            corpus.write_text(text, "utf-8")
        n_bytes = corpus.stat().st_size
        print(f"corpus: {what}: {n_bytes / 1e6:.1f} MB; vocab_size {args.vocab_size} (+ {EOT})")

        ours = child("mnemos", corpus, args.vocab_size, out)
        print(
            f"mnemos:       train {ours['train_s']:6.2f} s (cpu {ours['train_cpu_s']:.2f})   "
            f"encode {ours['encode_s']:6.2f} s (cpu {ours['encode_cpu_s']:.2f})   "
            f"{n_bytes / ours['tokens']:.3f} bytes/token   peak RSS {ours['peak_rss_mb']:.0f} MB"
        )
        if tokenizers is None:
            print("hf tokenizers: not installed (pip install tokenizers) -- no comparison")
            return
        hf = child("hf", corpus, args.vocab_size, out)
        print(
            f"hf tokenizers {tokenizers.__version__}: train {hf['train_s']:6.2f} s   encode {hf['encode_s']:6.2f} s "
            f"(one string; {hf['encode_batch_s']:.2f} s as a batch of 1 MB blocks)   "
            f"{n_bytes / hf['tokens']:.3f} bytes/token   peak RSS {hf['peak_rss_mb']:.0f} MB"
        )
        print(
            f"ratios mnemos/hf: train {ours['train_s'] / hf['train_s']:.2f}x   "
            f"encode {ours['encode_s'] / hf['encode_s']:.2f}x (vs batch {ours['encode_s'] / hf['encode_batch_s']:.2f}x)   "
            f"bytes/token {hf['tokens'] / ours['tokens']:.4f} ({(hf['tokens'] / ours['tokens'] - 1) * 100:+.2f}%)"
        )
        vocabs = [set(json.loads((out / name).read_text("utf-8"))["model"]["vocab"]) for name in ("tokenizer.json", "hf_tokenizer.json")]
        print(f"learned vocabulary: {len(vocabs[0] & vocabs[1])} of {len(vocabs[0])} tokens the same as HF's")
        print(
            "targets: "
            + "   ".join(
                f"{name} {'ok' if ok else 'MISSED'}"
                for name, ok in [
                    ("train <= 15 s", ours["train_s"] <= 15),
                    ("encode <= 15 s", ours["encode_s"] <= 15),
                    ("bytes/token within 1% of HF", abs(hf["tokens"] / ours["tokens"] - 1) <= 0.01),
                    ("peak RSS < 2 GB", ours["peak_rss_mb"] < 2048),
                ]
            )
        )
        if args.parity:
            par = child("parity", corpus, args.vocab_size, out)
            verdict = "identical ids" if par["identical"] else f"DIFFERENT ids from token {par['first_difference']}"
            print(f"parity: HF tokenizers on mnemos' exported tokenizer.json: {verdict} ({ours['tokens']} tokens)")


if __name__ == "__main__":
    main()
