"""How close a budgeted run ends to its budget: ``mnemos train --time-budget B`` as a real
process, timed from its start to its exit (Python's start, reading, tokenizer, calibration,
training, final evaluation and save all count), for a few budgets.

    python benchmarks/budget_accuracy.py                          # 30 s, 60 s, 2 min on Shakespeare
    python benchmarks/budget_accuracy.py --budgets 30,60 --cold   # tokenizer and measurements not cached
    python benchmarks/budget_accuracy.py --load-at 0.3 --load 2   # 2 busy processes from 30% of each run

Prints, per budget, the wall time over the budget (the target: 95-105%), the steps, and the
last step's learning rate over the peak (a run that ends decayed is near ``min_lr / lr``,
0.1; one cut off is near 1), with the machine's load average at the start and end.
``--load-at F --load N`` starts N processes that spin on the CPU once F of the budget has
passed: the run's speed changes mid-run, and its plan must follow. There is no peer: the
ratio is against the budget itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "shakespeare.txt"
SPIN = "while True: pass"


def run_budget(data: Path, budget: float, out: Path, load_at: float | None, load: int, extra: list[str]) -> dict:
    """One budgeted run: its wall time and what its events say."""
    argv = [sys.executable, "-m", "mnemos", "train", "--data", str(data), "--out", str(out), "--time-budget",
            f"{budget:g}", "--json", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_start, spinners = os.getloadavg()[0], []
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if load_at is not None:
            try:
                proc.wait(timeout=load_at * budget)
            except subprocess.TimeoutExpired:
                spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(load)]
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    steps = [e for e in events if e["event"] == "step"]
    lrs = [e["lr"] for e in steps if isinstance(e.get("lr"), (int, float))]
    done = next((e for e in reversed(events) if e["event"] == "done"), {})
    return {"budget": budget, "wall": wall, "rc": proc.returncode, "steps": done.get("step", 0),
            "lr_end": lrs[-1] / max(lrs) if lrs else float("nan"), "reason": done.get("reason"),
            "load": (load_start, os.getloadavg()[0]), "error": stderr.strip().splitlines()[-1:] if proc.returncode
            else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="30,60,120", help="seconds, comma-separated (default 30,60,120)")
    ap.add_argument("--data", type=Path, default=SHAKESPEARE)
    ap.add_argument("--cold", action="store_true", help="a fresh copy of the text per run: nothing cached")
    ap.add_argument("--load-at", type=float, help="start the extra load at this fraction of each budget")
    ap.add_argument("--load", type=int, default=2, help="with --load-at: processes that spin (default 2)")
    ap.add_argument("extra", nargs="*", help="more `mnemos train` flags, after --")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    print(f"budget_accuracy {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, {args.data.name}, {'cold' if args.cold else 'warm'} cache"
          + (f", {args.load} spinning processes from {args.load_at:.0%} of each run" if args.load_at is not None
             else ""), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "warm" / args.data.name
        data.parent.mkdir()
        shutil.copy(args.data, data)
        if not args.cold:  # tokenizer, tokens and speed measurements cached once per budget (auto's choice), untimed
            for i, budget in enumerate(budgets):
                run_budget(data, budget, tmp / f"warm-up{i}", None, 0, [*args.extra, "--max-steps", "1"])
        rows = []
        for i, budget in enumerate(budgets):
            if args.cold:
                data = tmp / f"cold{i}" / args.data.name
                data.parent.mkdir()
                shutil.copy(args.data, data)
            r = run_budget(data, budget, tmp / f"run{i}", args.load_at, args.load, args.extra)
            rows.append(r)
            print(f"  {budget:>5.0f} s: {r['wall']:6.1f} s = {100 * r['wall'] / budget:5.1f}% of the budget, "
                  f"{r['steps']:>5} steps, last lr {r['lr_end']:.2f} of the peak, {r['reason']} "
                  f"(load {r['load'][0]:.1f} -> {r['load'][1]:.1f}) {' '.join(r['error'])}", flush=True)
    print("\nbudget  wall/budget  steps  lr end/peak")
    for r in rows:
        print(f"{r['budget']:>5.0f} s  {100 * r['wall'] / r['budget']:>9.1f}%  {r['steps']:>5}  {r['lr_end']:>11.2f}")


if __name__ == "__main__":
    main()
