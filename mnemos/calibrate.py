"""How fast this machine trains a model of a given shape: the measurement behind ``--preset auto``.

A few training steps (forward, backward, clipping, AdamW, with the user's worker count)
at a couple of shapes give seconds per step; :func:`speed_model` fits them to

    seconds per token = overhead + flops per token / flop rate

so that tokens per second can be predicted for any candidate shape (the rule in
``mnemos.autosize`` weighs many). Results are cached per machine, shape and worker
count in a JSON file in the cache folder (the token cache's), so a second run on the
same machine measures nothing. The whole calibration is bounded in time
(:data:`LIMIT_S`, and a share of a time budget): on a loaded machine a step of the largest
shape can take seconds, so shapes are measured cheapest first and one whose predicted time
would pass the limit is not measured; the fit then rests on the shapes that were.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnemos.config import ModelConfig
from mnemos.fileio import parse_json

CACHE_NAME = "calibration-v1.json"
STEPS = 2  # timed steps per shape, after one untimed warm-up step
LIMIT_S = 8.0  # the most seconds a calibration spends measuring
BUDGET_SHARE = 0.05  # and at most this share of a time budget (which it counts against)


def limit_for(budget_s: float | None) -> float:
    """Seconds a calibration may spend: :data:`LIMIT_S`, or less for a short time budget."""
    return LIMIT_S if budget_s is None else min(LIMIT_S, BUDGET_SHARE * budget_s)


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), Kaplan et al. 2020:
    2 per weight of the blocks and the head, plus attention's 2 * n_layer * T * C."""
    C, L = cfg.n_embd, cfg.n_layer
    weights = L * 12 * C * C + cfg.vocab_size * C
    return 3.0 * (2.0 * weights + 2.0 * L * cfg.block_size * C)


@dataclass(frozen=True)
class SpeedModel:
    """Predicted training speed: ``seconds/token = overhead_s + flops/token / flops_per_s``."""

    overhead_s: float
    flops_per_s: float

    def tokens_per_s(self, cfg: ModelConfig) -> float:
        return 1.0 / (self.overhead_s + flops_per_token(cfg) / self.flops_per_s)


def speed_model(points: list[tuple[ModelConfig, float]]) -> SpeedModel:
    """Least-squares fit of seconds per token against flops per token over measured
    ``(shape, tokens_per_s)`` points (one point: no overhead term)."""
    if not points:
        raise ValueError("speed_model needs at least one measurement")
    f = np.array([flops_per_token(cfg) for cfg, _ in points])
    s = np.array([1.0 / tps for _, tps in points])
    if len(points) == 1 or np.ptp(f) == 0:
        return SpeedModel(0.0, float(f.mean() / s.mean()))
    slope, intercept = np.polyfit(f, s, 1)
    if slope <= 0:  # noisier than the effect: every shape as fast per flop as the mean
        return SpeedModel(0.0, float(f.mean() / s.mean()))
    return SpeedModel(max(0.0, float(intercept)), float(1.0 / slope))


def machine_key(workers: int, device: str = "cpu") -> str:
    """What the speed depends on besides the shape: this machine and how it is used."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    parts = [platform.node(), cpu, str(os.cpu_count()), np.__version__, device, f"w{workers}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def shape_key(cfg: ModelConfig, batch: int) -> str:
    return f"L{cfg.n_layer}-H{cfg.n_head}-C{cfg.n_embd}-T{cfg.block_size}-V{cfg.vocab_size}-B{batch}"


def time_steps(cfg: ModelConfig, batch: int, workers: int = 1, steps: int = STEPS, device: str = "cpu") -> float:
    """Tokens per second of whole training steps of a freshly initialised model on random
    tokens (the speed does not depend on the values): one warm-up step, then ``steps`` timed,
    the fastest counted (the one least disturbed by other programs on the machine)."""
    from mnemos.nn import GPT
    from mnemos.optim import AdamW, clip_grad_norm
    from mnemos.parallel import DataParallel

    model = GPT(cfg, seed=0, device=device)
    optimizer = AdamW(model.params, lr=1e-4)
    parallel = DataParallel(model, workers, batch) if workers > 1 and device == "cpu" else None
    rng = np.random.default_rng(0)
    try:
        fastest = float("inf")
        for step in range(steps + 1):
            x = rng.integers(0, cfg.vocab_size, (batch, cfg.block_size))
            y = rng.integers(0, cfg.vocab_size, (batch, cfg.block_size))
            t0 = time.perf_counter()
            if parallel is not None:
                parallel.loss_and_grad(x, y, key=(step, 0), accumulate=False)
            else:
                model.forward(x, y, train=True)
                model.backward(accumulate=False)
            clip_grad_norm(model.params.grad, 1.0)
            optimizer.step(1e-4)
            if step:
                fastest = min(fastest, time.perf_counter() - t0)
    finally:
        if parallel is not None:
            parallel.close()
    return batch * cfg.block_size / fastest


class Calibration:
    """Measured speeds of this machine, cached in ``cache_dir/calibration-v1.json``."""

    def __init__(self, cache_dir: str | os.PathLike | None, workers: int = 1, device: str = "cpu", timer=None,
                 clock=time.perf_counter):
        self.clock = clock  # tests pass a fake one
        self.path = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
        self.workers, self.device = workers, device
        self.timer = timer or (lambda *args, **kwargs: time_steps(*args, **kwargs))  # looked up when called
        self.key = machine_key(workers, device)
        self.measured = 0  # shapes timed (not found in the cache) by this object

    def _load(self) -> dict:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = parse_json(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, data: dict) -> None:
        if self.path is None:
            return
        from mnemos.fileio import write_atomic

        try:
            write_atomic(self.path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True).encode()))
        except OSError:
            pass  # a read-only cache only costs measuring again next time

    def cached(self, cfg: ModelConfig, batch: int) -> float | None:
        """The speed at ``cfg`` and ``batch`` measured before (None if never)."""
        table = self._load().get(self.key)
        value = table.get(shape_key(cfg, batch)) if isinstance(table, dict) else None
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def tokens_per_s(self, cfg: ModelConfig, batch: int) -> float:
        """This machine's training speed at ``cfg`` and ``batch``, from the cache or timed now."""
        value = self.cached(cfg, batch)
        if value is None:
            value = float(self.timer(cfg, batch, self.workers, device=self.device))
            self.measured += 1
            data = self._load()
            if not isinstance(data.get(self.key), dict):  # never measured here, or an edited cache
                data[self.key] = {}
            data[self.key][shape_key(cfg, batch)] = value
            self._store(data)
        return value

    def model(self, shapes: list[tuple[ModelConfig, int]], limit_s: float | None = None) -> SpeedModel:
        """The speed model fitted to these ``(shape, batch)`` measurements, taken cheapest
        first. With ``limit_s``, a shape not in the cache whose measurement (warm-up and
        timed steps at the speed predicted from the shapes measured so far) would end past
        ``limit_s`` seconds from now is left out; the cheapest is always measured."""
        t0 = self.clock()
        points: list[tuple[ModelConfig, float]] = []
        for cfg, batch in sorted(shapes, key=lambda s: flops_per_token(s[0]) * s[1]):
            if limit_s is not None and points and self.cached(cfg, batch) is None:
                predicted = (STEPS + 1) * batch * cfg.block_size / speed_model(points).tokens_per_s(cfg)
                if self.clock() - t0 + predicted > limit_s:
                    continue
            points.append((cfg, self.tokens_per_s(cfg, batch)))
        return speed_model(points)
