"""The grid ``--preset auto``'s rule is fitted on: for each corpus and budget, auto's choice
and its neighbours (one rung smaller and larger on the shape ladder, another vocabulary,
half and double the learning rate, Muon instead of AdamW, the Llama architecture), and the
``small`` preset, in validation bits per byte.

    python benchmarks/auto_sweep.py                  # reduced grid: 1 and 2 minutes, 2 corpora
    python benchmarks/auto_sweep.py --full           # 2, 5 and 15 minutes, 3 corpora, every arm (hours)
    python benchmarks/auto_sweep.py --budgets 60 --corpora shakespeare --arms auto,bigger

Corpora: ``shakespeare`` (5 MB English, ``../shared/corpora``), ``french`` (10 MB of Debian's
French documentation, ``benchmarks/corpus.py``), ``shakespeare-100k`` (its first 100 KB: the
overfitting case). Every arm's length comes from one speed calibration at the start (see
``_budget.py``), so the table does not depend on the machine's load during the runs; arms of
one corpus and budget run back to back, cycling through the arms, so load hits them alike.
Prints one line per run as it ends and the table at the end; ``--out FILE`` appends the runs
as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _budget import corpora, run_arm, speed_model

from mnemos.autosize import LADDER, choose, measure_text
from mnemos.calibrate import SpeedModel
from mnemos.config import PRESETS, default_workers

ARMS = ("auto", "smaller", "bigger", "bigger2", "vocab-", "vocab+", "lr/2", "lr*2", "muon", "llama", "small")
REDUCED_ARMS = ("auto", "smaller", "bigger", "bigger2", "vocab-", "lr*2", "small")


def _rung(model: dict, delta: int) -> dict | None:
    here = LADDER.index((model["n_layer"], model["n_embd"])) if (model["n_layer"], model["n_embd"]) in LADDER else None
    if here is None or not 0 <= here + delta < len(LADDER):
        return None
    n_layer, n_embd = LADDER[here + delta]
    return {**model, "n_layer": n_layer, "n_embd": n_embd, "n_head": max(1, n_embd // 32)}


def arm_config(arm: str, auto_model: dict, auto_train: dict) -> tuple[dict, dict] | None:
    """(model, train) of one arm, or None where it does not exist (the ladder's ends)."""
    if arm == "small":
        preset = PRESETS["small"]
        return {**preset.model, "dropout": 0.0}, dict(preset.train)
    model, train = dict(auto_model), dict(auto_train)
    if arm in ("smaller", "bigger", "bigger2"):
        model = _rung(model, {"smaller": -1, "bigger": 1, "bigger2": 2}[arm])
        if model is None:
            return None
        train["lr"] = round(train["lr"] * (auto_model["n_embd"] / model["n_embd"]) ** 0.5, 6)
    elif arm in ("vocab-", "vocab+"):
        train["tokenizer_vocab"] = train["tokenizer_vocab"] // 2 if arm == "vocab-" else train["tokenizer_vocab"] * 2
        if not 256 <= train["tokenizer_vocab"] <= 4096:
            return None
    elif arm in ("lr/2", "lr*2"):
        train["lr"] = train["lr"] / 2 if arm == "lr/2" else train["lr"] * 2
    elif arm == "muon":
        train["optimizer"] = "muon"
    elif arm == "llama":
        model["arch"] = "llama"
    train["min_lr"] = train["lr"] / 10
    return model, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="budgets 120, 300, 900 s, three corpora, every arm")
    ap.add_argument("--budgets", help="comma-separated seconds (default 60,120; --full: 120,300,900)")
    ap.add_argument("--corpora", help="comma-separated: shakespeare, french, shakespeare-100k")
    ap.add_argument("--arms", help=f"comma-separated, of {', '.join(ARMS)}")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--gflops", type=float, help="pin the speed model at this many GFLOP/s instead of measuring it "
                                                 "(a loaded machine measures low; the runs' lengths follow this)")
    ap.add_argument("--overhead-us", type=float, default=0.0, help="with --gflops: microseconds per token on top")
    ap.add_argument("--out", help="append each run as a JSON line to this file")
    ap.add_argument("--table", metavar="JSONL", nargs="+", help="print the table of runs saved with --out, and stop")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for path in args.table for line in open(path) if line.strip()]))
        return
    budgets = [float(b) for b in (args.budgets or ("120,300,900" if args.full else "60,120")).split(",")]
    names = (args.corpora or ("shakespeare,french,shakespeare-100k" if args.full else "shakespeare,french")).split(",")
    arms = (args.arms or ",".join(ARMS if args.full else REDUCED_ARMS)).split(",")
    files = corpora(names)
    load = os.getloadavg()[0]
    speed = SpeedModel(args.overhead_us * 1e-6, args.gflops * 1e9) if args.gflops else speed_model(args.workers)
    print(f"auto_sweep {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores, workers {args.workers}, "
          f"load {load:.1f}; speed model {speed.flops_per_s / 1e9:.0f} GFLOP/s + {speed.overhead_s * 1e6:.2f} us/token",
          flush=True)
    rows = []
    for name, path in files.items():
        stats = measure_text(path.read_text("utf-8"))
        for budget in budgets:
            choice = choose(stats, budget, speed)
            print(f"\n{name} ({stats.n_bytes / 1e6:.2f} MB), budget {budget:.0f} s: auto = {choice.model} "
                  f"{choice.train}", flush=True)
            for arm in arms:
                config = arm_config(arm, choice.model, choice.train)
                if config is None:
                    continue
                t0 = time.perf_counter()
                result = run_arm(path, *config, budget, speed, args.workers)
                row = {"corpus": name, "budget_s": budget, "arm": arm, "load": os.getloadavg()[0],
                       "wall_s": time.perf_counter() - t0, **result}
                rows.append(row)
                m = result["model"]
                print(f"  {arm:<8} bpb {result['bpb']:.4f}  L{m['n_layer']} C{m['n_embd']} T{m['block_size']} "
                      f"V{result['train']['tokenizer_vocab']} drop {m['dropout']:g} lr {result['train']['lr']:g}  "
                      f"{result['params'] / 1e6:.2f}M params, {result['steps']} steps, {result['tokens'] / 1e6:.1f}M "
                      f"tokens, train {result['train_s']:.0f} s (load {row['load']:.1f})", flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print()
    print(table(rows))


def table(rows: list[dict]) -> str:
    """The runs as a Markdown table, each against the small preset's run of the same corpus and budget."""
    lines = ["| corpus | budget | arm | layers x width | vocab | dropout | lr | parameters | tokens seen | "
             "val bits/byte | vs small |", "|" + "---|" * 11]
    for row in rows:
        small = next((r["bpb"] for r in rows if (r["corpus"], r["budget_s"], r["arm"]) ==
                      (row["corpus"], row["budget_s"], "small")), None)
        m, t = row["model"], row["train"]
        versus = "" if small is None else f"{100 * (row['bpb'] / small - 1):+.1f}%"
        lines.append(f"| {row['corpus']} | {row['budget_s']:.0f} s | {row['arm']} | {m['n_layer']} x {m['n_embd']} | "
                     f"{t.get('tokenizer_vocab', t.get('vocab_size'))} | {m['dropout']:g} | {t['lr']:.3g} | {row['params'] / 1e6:.2f}M | "
                     f"{row['tokens'] / 1e6:.1f}M | {row['bpb']:.4f} | {versus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
