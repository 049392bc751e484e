"""Shared by ``auto_sweep.py`` and ``time_budget.py``: corpora split into train / validation
files, one Mnemos run of a given configuration for a given budget, scored in bits per byte.

A run's length is set from a speed model measured once at the start of the benchmark
(``mnemos.calibrate``), not from the clock during the run: every arm then gets the steps
its shape would fit in the budget on this machine *unloaded*, so arms compare fairly even
when other programs slow the machine down mid-run (the wall time is reported beside).
Validation: the same held-out text for every arm (the last 10% of the corpus, its first
``VAL_BYTES`` scored), every token scored once by ``mnemos.evaluate.evaluate``.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from mnemos.autosize import TRAIN_SHARE, recipe_tokens_per_s  # noqa: E402
from mnemos.calibrate import Calibration, SpeedModel  # noqa: E402
from mnemos.config import ModelConfig, TrainConfig  # noqa: E402
from mnemos.evaluate import evaluate  # noqa: E402
from mnemos.trainer import Trainer  # noqa: E402

SHAKESPEARE = HERE.parent.parent / "shared" / "corpora" / "shakespeare.txt"
WORK = HERE / ".cache" / "budget"
VAL_BYTES = 256_000
PROBES = [(ModelConfig(vocab_size=1025, n_layer=2, n_head=2, n_embd=64, block_size=128), 16),
          (ModelConfig(vocab_size=1025, n_layer=4, n_head=4, n_embd=128, block_size=128), 16),
          (ModelConfig(vocab_size=1025, n_layer=6, n_head=8, n_embd=256, block_size=128), 16)]


def corpora(names: list[str]) -> dict[str, Path]:
    """``name -> training file`` (a validation file ``val.txt`` lies beside it), made once."""
    from corpus import french_corpus, man_corpus

    out = {}
    for name in names:
        folder = WORK / name
        train = folder / "train.txt"
        if not train.is_file():
            if name.startswith("shakespeare"):
                text = SHAKESPEARE.read_text("utf-8") if SHAKESPEARE.is_file() else None
            elif name == "man":
                text, _ = man_corpus()
            else:
                text, _ = french_corpus()
            if text is None:
                print(f"skipped corpus {name}: not available")
                continue
            cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1
            body, val = text[:cut], text[cut:]
            if name.endswith("-100k"):  # a small text: its first 100 KB train, validation as for the whole
                body = body[:100_000]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "val.txt").write_text(val[:VAL_BYTES], "utf-8")
            train.write_text(body, "utf-8")
        out[name] = train
    return out


def speed_model(workers: int) -> SpeedModel:
    """This machine's speed, timed now (no cache: the benchmark reports what it measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        return Calibration(tmp, workers=workers).model(PROBES)


def run_arm(train_file: Path, model: dict, train: dict, budget_s: float, speed: SpeedModel | None, workers: int,
            seed: int = 1337, tokens_per_s: float | None = None) -> dict:
    """Train ``model`` / ``train`` (dicts of config fields) for the steps ``speed`` predicts fit
    in ``budget_s`` (less the share auto leaves for evaluations; Muon's per-step Newton-Schulz
    FLOPs counted), or that ``tokens_per_s`` (a speed measured for this very recipe) fits,
    then score the validation file.
    The learning rate decays over exactly those steps (what ``--time-budget`` does)."""
    shape = ModelConfig(vocab_size=train["tokenizer_vocab"] + 1, **model)
    batch = train["batch_size"]
    if tokens_per_s is None:
        tokens_per_s = recipe_tokens_per_s(speed, shape, batch * shape.block_size, train.get("optimizer", "adamw"))
    steps = max(2, int(tokens_per_s * budget_s * TRAIN_SHARE / (batch * shape.block_size)))
    cfg = TrainConfig(**{**train, "max_steps": steps, "time_budget": None, "eval_interval": steps, "eval_steps": 2,
                         "sample_tokens": 0, "workers": workers, "seed": seed,
                         "warmup_steps": min(train.get("warmup_steps", 100), steps // 2)})
    marks = {}

    def on_event(event):
        if event.kind == "state" and event.state == "running":
            marks["start"] = time.perf_counter()
        if event.kind == "error":
            print(f"    error: {event.message}", flush=True)

    val_file = train_file.parent / "val.txt"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        trainer = Trainer.new(shape, cfg, train_file, val_data=val_file, out_dir=Path(out) / "run", callback=on_event)
        done = trainer.run()
        end = time.perf_counter()
    report = evaluate(trainer.model, trainer.tokenizer, val_file.read_text("utf-8"))
    return {"bpb": report.bits_per_byte, "steps": done.step, "reason": done.reason,
            "params": trainer.model.num_params(), "train_s": end - marks.get("start", end),
            "prepare_s": marks.get("start", end) - t0, "tokens": done.step * batch * shape.block_size,
            "model": dataclasses.asdict(dataclasses.replace(shape, vocab_size=trainer.tokenizer.vocab_size)),
            "train": {k: getattr(cfg, k)
                      for k in ("tokenizer_vocab", "batch_size", "lr", "warmup_steps", "max_steps")}}


# nanoGPT's CPU "baby GPT" recipe, byte level, for the PyTorch peer
TORCH_MODEL = ModelConfig(vocab_size=257, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
TORCH_TRAIN = dict(batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, betas=(0.9, 0.99), weight_decay=0.1)


class _TorchScorer:
    """The PyTorch model seen through the one call ``mnemos.evaluate.evaluate`` makes."""

    def __init__(self, model):
        self.model, self.config = model, TORCH_MODEL

    def forward(self, x):
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy(), None


TORCH_THREADS = [2]  # PyTorch's threads (time_budget.py --torch-threads)


def _torch_setup(seed: int):
    import torch
    from _torch_gpt import make_adamw, torch_gpt_from_state_dict

    from mnemos.nn import GPT

    torch.set_num_threads(TORCH_THREADS[0])
    model = torch_gpt_from_state_dict(GPT(TORCH_MODEL, seed=seed).state_dict(), TORCH_MODEL)
    t = TORCH_TRAIN
    return model, make_adamw(model, lr=t["lr"], betas=t["betas"], weight_decay=t["weight_decay"])


def _torch_step(model, opt, x, y, lr):
    import torch

    for group in opt.param_groups:
        group["lr"] = lr
    _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def torch_tokens_per_s(steps: int = 5) -> float:
    """PyTorch's speed on the recipe: the fastest of ``steps`` steps after one warm-up."""
    model, opt = _torch_setup(0)
    rng = np.random.default_rng(0)
    fastest = float("inf")
    for step in range(steps + 1):
        x = rng.integers(0, 256, (12, TORCH_MODEL.block_size))
        t0 = time.perf_counter()
        _torch_step(model, opt, x, x, 1e-4)
        if step:
            fastest = min(fastest, time.perf_counter() - t0)
    return 12 * TORCH_MODEL.block_size / fastest


def run_torch(train_file: Path, steps: int, seed: int = 1337) -> dict:
    """nanoGPT's baby recipe in PyTorch for ``steps`` steps on the file's bytes, scored on the
    validation file like the Mnemos arms."""
    from mnemos import data as data_mod
    from mnemos.optim import lr_at
    from mnemos.tokenizer import BPETokenizer

    train = np.frombuffer(train_file.read_bytes(), dtype=np.uint8)
    model, opt = _torch_setup(seed)
    rng = np.random.default_rng(seed)
    warmup = min(TORCH_TRAIN["warmup_steps"], steps // 2)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = data_mod.get_batch(train, TORCH_TRAIN["batch_size"], TORCH_MODEL.block_size, rng)
        _torch_step(model, opt, x, y, lr_at(step, TORCH_TRAIN["lr"], TORCH_TRAIN["min_lr"], warmup, steps))
    train_s = time.perf_counter() - t0
    model.eval()
    report = evaluate(_TorchScorer(model), BPETokenizer(), (train_file.parent / "val.txt").read_text("utf-8"))
    return {"bpb": report.bits_per_byte, "steps": steps, "reason": "finished",
            "params": sum(p.numel() for p in model.parameters()), "train_s": train_s, "prepare_s": 0.0,
            "tokens": steps * TORCH_TRAIN["batch_size"] * TORCH_MODEL.block_size,
            "model": dataclasses.asdict(TORCH_MODEL), "train": {"tokenizer_vocab": 256, **TORCH_TRAIN}}
