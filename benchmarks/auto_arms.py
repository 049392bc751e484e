"""The arms of docs/auto.md's second 5-minute round: the rule's neighbours, one at a time.

    OPENBLAS_NUM_THREADS=1 python benchmarks/auto_arms.py shakespeare A_llama_adamw,Q_v2048_muon_b16_lr4
    SEED=7 OPENBLAS_NUM_THREADS=1 python benchmarks/auto_arms.py shakespeare Q_v2048_muon_b16_lr4

Unlike ``time_budget.py``, whose arms take their steps from one calibrated speed model, each
arm here names the tokens per second its steps come from: whole training steps of that shape,
optimizer and batch timed on the unloaded 2-core machine with 2 workers (2026-12-04 14:27,
load 0.8), so that Muon's Newton-Schulz cost and Llama's speed are what they were measured
to be. Steps = tokens/s x 300 s x 0.92 / tokens a step. An arm trains in one process, one
worker, for exactly those steps (the schedule decays over them), so two can run at once
without changing the result; it prints one JSON line with the validation bits per byte
(``_budget.py``'s corpora and held-out text, scored by ``mnemos.evaluate``).
"""

from __future__ import annotations

import json
import os
import sys
import time

from _budget import corpora, run_arm

BUDGET_S = 300.0


def arm(L, C, B, tokens_per_s, arch="llama", opt="adamw", lr=2e-3, min_frac=0.1, vocab=1024, T=128, dropout=0.0,
        warmup=200, sampling="random", wd=0.1):
    """(model fields, train fields, tokens per second) of one arm."""
    return (dict(n_layer=L, n_head=C // 32, n_embd=C, block_size=T, dropout=dropout, arch=arch),
            dict(tokenizer_vocab=vocab, batch_size=B, lr=lr, min_lr=lr * min_frac, warmup_steps=warmup, optimizer=opt,
                 sampling=sampling, weight_decay=wd),
            tokens_per_s)


# tokens/s: measured (4 x 128 at 8 x 128 and 16 x 128 tokens a step, BPE 1024), or the speed model
# pinned at that machine's (178.45 GFLOP/s + 3.74 us/token) where no shape was timed
ARMS = {
    "A_llama_adamw": arm(4, 128, 8, 26329),
    "B_llama_muon_b8": arm(4, 128, 8, 17199, opt="muon"),
    "C_llama_muon_b16": arm(4, 128, 16, 20962, opt="muon"),
    "D_llama_adamw_lr4": arm(4, 128, 8, 26329, lr=4e-3),
    "F_llama_adamw_min0": arm(4, 128, 8, 26329, min_frac=0.0),
    "G_llama_muon_b16_lr4": arm(4, 128, 16, 20962, opt="muon", lr=4e-3),
    "I_llama_adamw_lr3_min0": arm(4, 128, 8, 26329, lr=3e-3, min_frac=0.0),
    "J_4x160_adamw": arm(4, 160, 8, 18753, lr=0.001789),
    "P_T256": arm(4, 128, 4, 25000, T=256),
    "Q_v2048": arm(4, 128, 8, 23830, vocab=2048),
    "Q_v4096": arm(4, 128, 8, 20000, vocab=4096),
    "Q_v2048_min0": arm(4, 128, 8, 23830, vocab=2048, min_frac=0.0),
    "Q_v2048_muon_b16_lr4": arm(4, 128, 16, 19500, vocab=2048, opt="muon", lr=4e-3),
    "FR_auto": arm(4, 128, 8, 23830, vocab=2048),
    "S_small": arm(4, 128, 12, 29858, arch="gpt2", lr=1e-3, vocab=512, T=64, warmup=100),
    "K_rule_muon": arm(2, 64, 16, 110985, opt="muon", lr=0.005657, vocab=256, dropout=0.2),
    # third round (Newton-Schulz on every core): 16 x 128 at the 2,633 steps of the fastest real run,
    # the others at speeds measured (8 x 128) or scaled by FLOPs (5 x 128); warmup 5% of the steps.
    # Muon's update twice as large was this R_base with mnemos.muon.RMS_MATCH set to 0.4.
    "R_base": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131),
    "R_b8": arm(4, 128, 8, 17000, opt="muon", lr=4e-3, vocab=2048, warmup=229),
    "R_5x128": arm(5, 128, 16, 16200, opt="muon", lr=4e-3, vocab=2048, warmup=109),
    # fourth round: R_base's neighbours in how it trains, not what it is (run with SEED=1337 and SEED=7;
    # R_base was run again at seed 7)
    "T_epoch": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131, sampling="epoch"),
    "T_min0": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131, min_frac=0.0),
    "T_wd03": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131, wd=0.3),
    "T_min0_wd03": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131, min_frac=0.0, wd=0.3),
    "T_all": arm(4, 128, 16, 19545, opt="muon", lr=4e-3, vocab=2048, warmup=131, sampling="epoch", min_frac=0.0,
                 wd=0.3),
}


def main() -> None:
    corpus, names = sys.argv[1], sys.argv[2].split(",")
    path = corpora([corpus])[corpus]
    seed = int(os.environ.get("SEED", 1337))
    for name in names:
        model, train, tokens_per_s = ARMS[name]
        t0 = time.time()
        result = run_arm(path, model, train, BUDGET_S, None, workers=1, seed=seed, tokens_per_s=tokens_per_s)
        print(json.dumps(dict(arm=name, corpus=corpus, seed=seed, wall=time.time() - t0, **result)), flush=True)


if __name__ == "__main__":
    main()
