"""The training loop as an object that the CLI and the TUI both drive.

``Trainer.new(...)`` or ``Trainer.from_checkpoint(dir)`` sets a run up (cheap checks only), and
``run()`` does the work, blocking, reporting through events (``mnemos.events``) to a
callback: ``PrepareEvent`` while the tokenizer trains and the text is encoded, then
``StepEvent`` per logged step, ``EvalEvent`` + ``SampleEvent`` + ``CheckpointEvent``
every ``eval_interval`` steps, ``StateEvent`` on pause / resume / stop, and a final
``DoneEvent`` (after an ``ErrorEvent`` if something went wrong). ``pause()``,
``unpause()``, ``stop()`` and ``save_now()`` may be called from any thread; the loop
looks at them between steps, so they act within one step.

One step (nanoGPT's): learning rate from the warmup + cosine schedule, ``grad_accum``
micro-batches of random windows through ``_loss_and_grad`` (forward + backward,
gradients summed), global-norm clipping, one AdamW update.

Exact resume: the checkpoint keeps the weights, AdamW's moments and step, the state of
the batch sampler's generator and of the dropout generator. Evaluation batches and the
sample text use generators of their own, so evaluating never changes the training
stream: 20 steps + resume + 20 steps give the weights of 40 straight steps, bit for bit.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from mnemos import data as data_mod
from mnemos.backend import get_array_module
from mnemos.budget import FINAL_MARGIN, format_duration, steps_that_fit
from mnemos.checkpoint import (is_checkpoint, load_checkpoint, read_config, read_metrics, refuse_inside_run,
                               save_checkpoint)
from mnemos.config import ModelConfig, TrainConfig, init_from_configs, resumed_configs
from mnemos.divergence import DivergenceWatch
from mnemos.errors import CheckpointError, ConfigError, MnemosError, WorkerError
from mnemos.events import (CheckpointEvent, DoneEvent, ErrorEvent, EvalEvent, Event, PrepareEvent, SampleEvent,
                           StateEvent, StepEvent, WarningEvent)
from mnemos.memory import check_fits, training_estimate
from mnemos.paths import RUNS_ROOT
from mnemos.runlock import RunLock

SAMPLE_TEMPERATURE, SAMPLE_TOP_K = 0.8, 200  # the learning-replay sample (nanoGPT's sample.py)


class _Stopped(Exception):
    """Raised inside preparation when ``stop()`` is called before the first step."""


class _Diverged(Exception):
    """The loss or the gradient norm is not finite."""


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _target(path) -> Path:
    """A run folder given through a symbolic link is its target (saves rename the folder:
    they must not replace the link)."""
    return Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)


def default_run_dir(root: str | os.PathLike = RUNS_ROOT) -> Path:
    """Where a new run goes when no folder is named: ``<root>/<date>_<time>``, or
    ``<date>_<time>-2``, ``-3``, ... when that name is taken. The folder is created
    (empty) to claim it, so two runs started in the same second, even by two
    processes, never share one."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for n in itertools.count(1):
        path = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


class Trainer:
    """One training run: set up by :meth:`new` or :meth:`from_checkpoint`, executed by :meth:`run`."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: str, val_data: str | None,
                 out_dir: str, callback=None, resume_from=None):
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.data = Path(data)
        self.val_data = Path(val_data) if val_data else None
        self.out_dir = Path(out_dir)
        self.callback = callback or (lambda event: None)
        self.state = "idle"
        self._resume_from = resume_from
        self._init_from: Path | None = None  # a saved model to start from (Trainer.init_from)
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._stop = threading.Event()
        self._save = threading.Event()
        self._stop_reason = "final"
        self._stop_save = True
        # filled by _prepare()
        self.model = self.tokenizer = self.optimizer = None
        self.parallel = None  # mnemos.parallel.DataParallel when workers > 1
        self.train_tokens = self.val_tokens = None
        self.batch_rng = np.random.default_rng(train_cfg.seed)
        self.sampler: data_mod.EpochSampler | None = None  # --sampling epoch; set up by _prepare()
        self.step = 0
        self.best_val_loss: float | None = None
        self.tokens_seen = 0
        self.metrics: list[dict] = []
        self.last_good: str | None = None
        self._clock = time.perf_counter  # tests replace it to check the time budget without waiting
        self._elapsed_before = 0.0
        self._t_start = self._clock()
        # the time budget's books (see mnemos.budget): seconds used before this session, paused, per step ...
        self._budget_before = self._paused_s = 0.0
        self._spent_before_run = 0.0  # preparation done for this run before run() (count_preparation)
        self._step_times = collections.deque(maxlen=21)  # seconds of the last training steps
        self._step_s: float | None = None  # seconds per step before any was measured (a resumed run's)
        self._eval_steps = collections.deque(maxlen=3)  # the last evaluations' forward passes, in steps' time
        self._sample_times = collections.deque(maxlen=3)  # and their samples' seconds
        self._forward_s = 0.0  # seconds of one forward pass of a batch (timed in evaluations)
        self._eval_deadline: float | None = None  # when a budgeted run's evaluation under way must end
        self._save_times = collections.deque(maxlen=5)  # and of the last saves
        self._save_guess = 0.0  # a save's seconds until one is timed
        self._seen = None  # ids of the training tokens (the induction probe's random tokens draw from them)
        self._horizon = train_cfg.max_steps  # the step the run ends at (with a budget: re-estimated)
        self._saved_step = -1
        self._saved_once = False
        self._fingerprints: dict = {}
        self._claimed_dir = False
        self._lock: RunLock | None = None
        self._divergence = DivergenceWatch()

    # ------------------------------------------------------------------ construction

    @classmethod
    def new(cls, model_cfg: ModelConfig, train_cfg: TrainConfig, data, val_data=None, out_dir=None,
            callback=None, force: bool = False, runs_root=RUNS_ROOT) -> "Trainer":
        """A fresh run on ``data`` into ``out_dir`` (default: a new dated folder in
        ``runs_root``, see :func:`default_run_dir`). Refuses an ``out_dir`` holding another
        run unless ``force``, and any other non-empty folder (it will not delete it)."""
        check_fits(training_estimate(model_cfg, train_cfg))  # before a byte of it is allocated
        for path in (data, val_data):
            if path is not None:
                data_mod.check_text_head(path)
                data_mod.check_length(os.path.getsize(path), model_cfg.block_size, path)  # a token is >= 1 byte
        get_array_module(train_cfg.device)  # --device cuda without CuPy or a GPU: fail now, not after tokenizing
        claimed = out_dir is None  # a dated folder of our own, claimed once all else is checked
        if not claimed:
            refuse_inside_run(out_dir)  # e.g. --out RUN/best --force would replace RUN's best checkpoint
        out = default_run_dir(runs_root) if claimed else _target(out_dir)
        lock = RunLock(out)
        try:
            if not claimed and is_checkpoint(out):
                if not force:
                    raise CheckpointError(f"{out_dir} already holds a run; resume it with --resume {out_dir}, "
                                          f"choose another --out, or pass --force to replace its checkpoint files")
            elif not claimed and out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise CheckpointError(f"{out_dir} exists and is not a Mnemos run; choose another --out (it will not "
                                      f"be overwritten)")
        except BaseException:
            lock.release()
            raise
        trainer = cls(model_cfg, train_cfg, str(data), val_data, str(out), callback)
        trainer._claimed_dir = claimed  # removed again if the run saves nothing
        trainer._hold(lock)
        return trainer

    @classmethod
    def init_from(cls, source, data, val_data=None, out_dir=None, preset: str | None = None,
                  overrides: dict | None = None, callback=None, force: bool = False,
                  runs_root="checkpoints") -> "Trainer":
        """A new run that starts from the model saved in ``source`` (a run or an import):
        its weights and tokenizer, no tokenizer training, a fresh optimizer at step 0, and
        the fine-tuning settings of :func:`mnemos.config.init_from_configs`."""
        model_cfg, train_cfg, _ = read_config(source)
        model_cfg, train_cfg = init_from_configs(model_cfg, train_cfg, preset, overrides)
        trainer = cls.new(model_cfg, train_cfg, data, val_data, out_dir, callback, force, runs_root)
        trainer._init_from = Path(source)
        return trainer

    @classmethod
    def from_checkpoint(cls, dir, callback=None, **overrides) -> "Trainer":
        """Continue the run saved in ``dir`` (its folder is read once). ``overrides`` are
        settings (``max_steps``, learning rates, ``dropout`` ...; see ``mnemos.config.SETTINGS``)
        and ``data`` / ``val_data``; one that changes the model's shape raises ``ConfigError``."""
        if Path(dir).name == "best" and is_checkpoint(Path(dir).parent):
            raise ConfigError(f"{dir} is the best checkpoint inside the run {Path(dir).parent}; resume the run "
                              f"itself, or copy {dir} to a new folder to branch off from it")
        dir = _target(dir)
        lock = RunLock(dir)
        try:
            trainer = cls._load(dir, callback, overrides)
        except BaseException:
            lock.release()
            raise
        trainer._hold(lock)
        return trainer

    @classmethod
    def _load(cls, dir: Path, callback, overrides: dict) -> "Trainer":
        ckpt = load_checkpoint(dir)
        if ckpt.state.get("imported_from"):
            raise ConfigError(f"{dir} is an imported model, not a run to resume; fine-tune it into a new run "
                              f"with `mnemos train --init-from {dir} --data FILE`")
        data = overrides.pop("data", None) or ckpt.state.get("data")
        val_data = overrides.pop("val_data", None) or ckpt.state.get("val_data")
        model_cfg, train_cfg = resumed_configs(ckpt.model_config, ckpt.train_config, overrides)
        check_fits(training_estimate(model_cfg, train_cfg))
        if train_cfg.optimizer != ckpt.train_config.optimizer:
            raise ConfigError(f"cannot change the optimizer on resume (the run has {ckpt.train_config.optimizer}, "
                              f"asked {train_cfg.optimizer}); start a new run, e.g. with --init-from {dir}",
                              field="optimizer")
        step = int(ckpt.state.get("step", 0))
        if train_cfg.max_steps is not None and step >= train_cfg.max_steps:
            raise ConfigError(f"the run in {dir} is already at step {step} of {train_cfg.max_steps}; pass a larger "
                              f"--max-steps to continue it")
        s, used = ckpt.state, float(ckpt.state.get("budget_used_s", 0.0))
        if train_cfg.time_budget is not None and step >= steps_that_fit(
                step, used, train_cfg.time_budget, s.get("step_time_s") or 0.0, s.get("eval_time_s", 0.0),
                s.get("save_time_s", 0.0), train_cfg.eval_interval):
            raise ConfigError(f"the run in {dir} has used its time budget ({format_duration(used)} of "
                              f"{format_duration(train_cfg.time_budget)}); pass a larger --time-budget to continue it")
        for path in (data, val_data):
            if path is not None:
                data_mod.check_text_head(path)
        get_array_module(train_cfg.device)
        return cls(model_cfg, train_cfg, data, val_data, str(dir), callback, resume_from=ckpt)

    # ------------------------------------------------------------------ control (any thread)

    def _hold(self, lock: RunLock) -> None:
        """Keep the run folder's lock until the run ends (or this object is collected)."""
        self._lock = lock
        weakref.finalize(self, lock.release)

    def pause(self) -> None:
        """Pause after the current step (the loop waits; save_now and stop still work)."""
        self._unpaused.clear()

    def unpause(self) -> None:
        """Continue a paused run."""
        self._unpaused.set()

    def stop(self, reason: str = "final", save: bool = True) -> None:
        """Stop after the current step, saving a checkpoint unless ``save`` is False.
        ``reason`` ("final" or "interrupt") is reported in the CheckpointEvent."""
        self._stop_reason, self._stop_save = reason, save  # set before the flag the loop reads
        self._stop.set()
        self._unpaused.set()

    def save_now(self) -> None:
        """Save a checkpoint after the current step (also while paused)."""
        self._save.set()

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if isinstance(event, (StepEvent, EvalEvent, SampleEvent)):
            self.metrics.append({k: _finite_or_none(v) if isinstance(v, float) else v
                                 for k, v in event.to_dict().items()})
        self.callback(event)

    def _set_state(self, state: str) -> None:
        self.state = state
        if state in ("preparing", "running", "paused", "stopping"):
            self.callback(StateEvent(state, self.step))

    def _prepare_progress(self, phase: str):
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Stopped
            self._check_budget_left(phase)
            now = time.monotonic()
            if done >= total or now - last[0] > 0.1:
                last[0] = now
                self.callback(PrepareEvent(phase, int(done), int(total)))
        return progress

    def _say(self, phase: str, message: str) -> None:
        self.callback(PrepareEvent(phase, 1, 1, message))

    @property
    def elapsed_s(self) -> float:
        """Wall time of the run, all sessions, preparation and pauses included."""
        return self._elapsed_before + self._spent_before_run + self._clock() - self._t_start

    @property
    def budget_used_s(self) -> float:
        """Time counted against ``time_budget``: the run's wall time less its pauses."""
        return self._budget_before + self._spent_before_run + self._clock() - self._t_start - self._paused_s

    def count_preparation(self, seconds: float) -> None:
        """Count ``seconds`` of preparation done for this run before :meth:`run` (the
        CLI's ``--preset auto`` measuring the text and the machine) against its time
        budget, as the preparation inside ``run`` is."""
        self._spent_before_run += max(0.0, float(seconds))

    def _check_budget_left(self, phase: str) -> None:
        """With a time budget: refuse (one line) as soon as preparation has spent all of it,
        rather than finish preparing for a run that cannot train a step."""
        budget = self.train_cfg.time_budget
        if budget is not None and self.budget_used_s >= budget:
            raise ConfigError(f"a time budget of {budget:g} s is too short: {self.budget_used_s:.1f} s went on "
                              f"preparation ({phase}) before one step could be trained; give a longer "
                              f"--time-budget (a second run reuses the cached tokenizer, tokens and measurements)")

    # ------------------------------------------------------------------ preparation

    def _prepare(self) -> None:
        from mnemos.nn import GPT
        from mnemos.optim import make_optimizer

        cfg = self.train_cfg
        self._say("read", f"reading {self.data}")
        text = data_mod.read_text(self.data)
        val_text = data_mod.read_text(self.val_data) if self.val_data else None
        cut = len(text) if val_text is not None else int(len(text) * (1 - data_mod.VAL_FRACTION))
        if self._init_from is not None:
            self._load_initial_model()
        elif self._resume_from is None:
            target = cfg.tokenizer_vocab
            if target == 256:
                self._say("tokenizer", "tokenizer: byte level, one token per byte (no merges to learn)")
            else:
                self._say("tokenizer", f"tokenizer: learning {target} tokens from {self.data} "
                                       f"({cut:,} characters; reused from the cache if trained before)")
            self.tokenizer = data_mod.train_tokenizer(text[:cut], target, data_mod.default_cache_dir(self.data),
                                                      self.data.stem, self._prepare_progress("tokenizer"))
            learned = self.tokenizer.vocab_size - len(self.tokenizer.special_tokens)
            if learned < target:
                self._say("tokenizer", f"tokenizer: {learned} of the {target} tokens asked for: the text has "
                                       f"no more pairs to merge; the model's vocabulary is {self.tokenizer.vocab_size}")
            self.model_cfg = dataclasses.replace(self.model_cfg, vocab_size=self.tokenizer.vocab_size)
            self.model = GPT(self.model_cfg, seed=cfg.seed, device=cfg.device)
        else:
            ckpt = self._resume_from
            self.tokenizer, self.model = ckpt.tokenizer, ckpt.model
            if self.model_cfg.dropout != ckpt.model_config.dropout or cfg.device != "cpu":
                self.model = GPT(self.model_cfg, seed=cfg.seed, device=cfg.device)
                self.model.load_state_dict(ckpt.model.state_dict())
        self._say("encode", f"encoding {self.data} (cached in {data_mod.default_cache_dir(self.data)})")
        tokens = data_mod.load_tokens(self.data, self.tokenizer, text=text, progress=self._prepare_progress("encode"))
        if val_text is None:
            self.train_tokens, self.val_tokens = data_mod.split_train_val(tokens)
            self._say("split", f"validation: the last 10% of the training tokens ({len(self.val_tokens):,} of "
                               f"{len(tokens):,}); pass --val-data FILE to validate on another file")
        else:
            self.train_tokens = tokens
            self.val_tokens = data_mod.load_tokens(self.val_data, self.tokenizer, text=val_text,
                                                   progress=self._prepare_progress("encode"))
            self._say("split", f"validation: {self.val_data} ({len(self.val_tokens):,} tokens)")
        block = self.model_cfg.block_size
        data_mod.check_length(len(self.train_tokens), block, self.data, "training part of the text")
        data_mod.check_length(len(self.val_tokens), block, self.val_data or self.data, "validation part of the text")
        self._fingerprints = {"data": str(self.data.resolve()),
                              "val_data": str(self.val_data.resolve()) if self.val_data else None,
                              "data_hash": data_mod.content_hash(text),
                              "val_hash": data_mod.content_hash(val_text) if val_text is not None else None,
                              "tokenizer": self.tokenizer.fingerprint(),
                              "val_bytes_per_token": self._bytes_per_token(self.val_tokens)}
        if self._init_from is not None:  # where the weights came from, kept through resumes
            self._fingerprints["init_from"] = str(self._init_from.resolve())
        self.optimizer = make_optimizer(cfg, self.model.params)  # AdamW, Muon or SGD
        if cfg.sampling == "epoch":
            self.sampler = data_mod.EpochSampler(self.train_tokens, block, cfg.seed)
        # until the first save is timed: the weights and two moments written at ~100 MB/s, fsync included
        self._save_guess = 0.05 + 12 * self.model.num_params() / 1e8
        if self._resume_from is not None:
            self._restore(ckpt)
        self._start_workers()
        self._say("model", f"model: {self.model_cfg.n_layer} layers, {self.model_cfg.n_head} heads, "
                           f"n_embd {self.model_cfg.n_embd}, block {block}, vocab {self.model_cfg.vocab_size}: "
                           f"{self.model.num_params():,} parameters")

    def _load_initial_model(self) -> None:
        """Tokenizer and weights of ``--init-from``; the position table cropped to the block."""
        from mnemos.nn import GPT

        self._say("init", f"starting from the model in {self._init_from} (its tokenizer and weights)")
        ckpt = load_checkpoint(self._init_from)
        self.tokenizer = ckpt.tokenizer
        state = ckpt.model.state_dict()
        del ckpt
        if "wpe" in state:
            state["wpe"] = state["wpe"][: self.model_cfg.block_size]
        self.model = GPT(self.model_cfg, seed=self.train_cfg.seed, device=self.train_cfg.device)
        self.model.load_state_dict(state)

    def _start_workers(self) -> None:
        """``workers > 1`` on the CPU: start the data-parallel worker processes."""
        from mnemos.parallel import DataParallel

        cfg = self.train_cfg
        if cfg.workers > 1 and cfg.device != "cpu":
            self._say("setup", f"--workers {cfg.workers} applies to --device cpu; one process drives the GPU")
        elif cfg.workers > 1:
            cores = os.cpu_count() or 1
            more = (f" (more than the {cores} CPU cores here: they take turns, each step is slower than with "
                    f"--workers {cores})" if cfg.workers > cores else "")
            self._say("setup", f"starting {cfg.workers} data-parallel worker processes{more}")
            self.parallel = DataParallel(self.model, cfg.workers, cfg.batch_size, seed=cfg.seed)

    def _restore(self, ckpt) -> None:
        s = ckpt.state
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        try:
            self.batch_rng.bit_generator.state = s["batch_rng"]
            self.model.rng.bit_generator.state = s["dropout_rng"]
            self.step = int(s["step"])
            if self.sampler is not None:
                self.sampler.drawn = int(s.get("windows_drawn") or 0)  # 0: the run drew at random before
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # e.g. an edited generator state
            raise CheckpointError(f"{ckpt.path}/state.json is incomplete ({str(exc)[:80]}); it cannot be resumed exactly, "
                                  f"start a new run") from None
        self.best_val_loss = s.get("best_val_loss")
        self.tokens_seen = int(s.get("tokens_seen", 0))
        self._elapsed_before = float(s.get("elapsed_s", 0.0))
        self._budget_before = float(s.get("budget_used_s", self._elapsed_before))
        self._step_s = s.get("step_time_s") or self._elapsed_before / max(1, self.step)  # (an upper bound)
        if s.get("eval_time_s"):  # (as forward passes: the sample's share is not known)
            self._eval_steps.append(float(s["eval_time_s"]) / self._seconds_per_step())
        if s.get("save_time_s"):
            self._save_times.append(float(s["save_time_s"]))
        self.metrics = [row for row in read_metrics(ckpt.path)  # rows of another shape (edited) are dropped
                        if isinstance(row.get("step", 0), int) and row.get("step", 0) <= self.step]
        self.last_good = str(ckpt.path)
        self._saved_step, self._saved_once = self.step, True
        self._say("resume", f"resuming {ckpt.path} at step {self.step}"
                            + (f" of {self.train_cfg.max_steps}" if self.train_cfg.max_steps is not None else ""))
        for key, what in (("data_hash", self.data), ("val_hash", self.val_data)):
            if s.get(key) and self._fingerprints.get(key) and s[key] != self._fingerprints[key]:
                self._say("data", f"note: {what} changed since this run started; training goes on with its new "
                                  f"content (the run is no longer reproducible from scratch)")

    # ------------------------------------------------------------------ the loop

    def _loss_and_grad(self, x: np.ndarray, y: np.ndarray, micro: int) -> float:
        """Forward and backward on micro-batch number ``micro`` of the step: puts
        d(mean loss over x / grad_accum)/d(params) into ``model.params.grad`` (written
        by the first micro-batch, added by the others) and returns that mean loss. With
        ``workers > 1`` the worker processes share the batch (``mnemos.parallel``); the
        step and ``micro`` seed their dropout masks."""
        scale, accumulate = 1.0 / self.train_cfg.grad_accum, micro > 0
        if self.parallel is not None:
            return self.parallel.loss_and_grad(x, y, key=(self.step, micro), scale=scale, accumulate=accumulate)
        _, loss = self.model.forward(x, y, train=True)
        self.model.backward(scale=scale, accumulate=accumulate)
        return float(loss)

    def _train_step(self) -> tuple[float, float, float]:
        cfg, grad = self.train_cfg, self.model.params.grad
        lr = self._lr()
        loss = 0.0
        for micro in range(cfg.grad_accum):
            x, y = (self.sampler.batch(cfg.batch_size) if self.sampler is not None else
                    data_mod.get_batch(self.train_tokens, cfg.batch_size, self.model_cfg.block_size, self.batch_rng))
            loss += self._loss_and_grad(x, y, micro)
        loss /= cfg.grad_accum
        from mnemos.optim import clip_grad_norm

        norm = clip_grad_norm(grad, cfg.grad_clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise _Diverged(f"the loss became {loss} (gradient norm {norm}) at step {self.step + 1}")
        self.optimizer.step(lr)
        self.step += 1
        self.tokens_seen += cfg.grad_accum * cfg.batch_size * self.model_cfg.block_size
        return loss, lr, norm

    def _lr(self) -> float:
        """The schedule's learning rate for the coming step, over the current horizon (a
        budgeted run's warmup is at most a tenth of it, so that a short budget decays too)."""
        from mnemos.optim import lr_at

        cfg = self.train_cfg
        warmup = cfg.warmup_steps if cfg.time_budget is None else min(cfg.warmup_steps, self._horizon // 10)
        return lr_at(self.step, cfg.lr, cfg.min_lr, warmup, self._horizon)

    @property
    def _eval_s(self) -> float:
        """Seconds an evaluation takes now, from the last three: their forward passes
        (losses, induction probe) counted in steps and times the seconds per step now, so
        that they follow a machine that slows down as the steps do; their sample (one token
        at a time: latency, not arithmetic) in seconds. Medians: on a busy machine one
        evaluation can take ten times another."""
        if not self._eval_steps:
            return 0.0
        sample = float(np.median(self._sample_times)) if self._sample_times else 0.0
        return float(np.median(self._eval_steps)) * self._seconds_per_step() + sample

    @property
    def _save_s(self) -> float:
        return float(np.median(self._save_times)) if self._save_times else self._save_guess

    def _seconds_per_step(self) -> float:
        """Measured: the higher of the medians of the last 21 and the last 3 steps (it
        follows a machine that slows down within two steps, one that speeds up within ten,
        and ignores a single step held up by something else: a budget errs on the side of
        not overrunning); else a resumed run's saved figure, else three forward passes of
        the baseline evaluation's (a step is a forward and a backward)."""
        if self._step_times:
            return float(max(np.median(self._step_times), np.median(list(self._step_times)[-3:])))
        if self._step_s:
            return float(self._step_s)
        return 3.0 * self.train_cfg.grad_accum * self._forward_s

    def _plan(self) -> int:
        """The step the run ends at: ``max_steps`` or, with a time budget, the last step
        that fits in it (:func:`mnemos.budget.steps_that_fit`), whichever comes first."""
        cfg = self.train_cfg
        if cfg.time_budget is None:
            return cfg.max_steps
        fit = steps_that_fit(self.step, self.budget_used_s, cfg.time_budget, self._seconds_per_step(),
                             self._eval_s, self._save_s, cfg.eval_interval)
        return fit if cfg.max_steps is None else min(cfg.max_steps, fit)

    def _budget_message(self) -> str:
        cfg = self.train_cfg
        budget = format_duration(cfg.time_budget)
        if cfg.max_steps is None:
            return (f"time budget {budget}, preparation included: the learning rate warms up and decays over the "
                    f"steps that fit in it, re-estimated as the steps are timed")
        return (f"time budget {budget} (preparation included) or {cfg.max_steps:,} steps, whichever ends first: "
                f"the learning rate decays over the steps that fit")

    def _estimate_loss(self, tokens: np.ndarray, seed_offset: int) -> float:
        """Mean loss over ``eval_steps`` batches drawn by a generator of their own (the
        same batches at every evaluation, so the curve compares like with like)."""
        cfg = self.train_cfg
        rng = np.random.default_rng([cfg.seed, 2, seed_offset])
        losses = []
        t0 = self._clock()
        for i in range(cfg.eval_steps):
            if i and self._past_deadline():  # a budgeted run's last seconds: fewer batches, not an overrun
                break
            x, y = data_mod.get_batch(tokens, cfg.batch_size, self.model_cfg.block_size, rng)
            losses.append(self.parallel.loss(x, y) if self.parallel is not None
                          else float(self.model.forward(x, y, train=False)[1]))
        self._forward_s = (self._clock() - t0) / len(losses)
        return float(np.mean(losses))

    def _past_deadline(self) -> bool:
        """With a time budget: whether what is left of it is only the save's time, or an
        evaluation before the final one has taken twice its estimate. The evaluation then
        stops taking batches and sampling: on a busy machine one can take ten times its
        estimate, and it must not spend the steps the schedule still needs to decay, nor
        the budget."""
        budget = self.train_cfg.time_budget
        if budget is None:
            return False
        over = self._eval_deadline is not None and self._clock() >= self._eval_deadline
        return over or self.budget_used_s + self._save_s >= budget

    def _sample(self) -> str:
        from mnemos.generate import Generator

        cfg = self.train_cfg
        if cfg.sample_tokens <= 0:
            return ""
        return Generator(self.model, self.tokenizer).generate(
            cfg.sample_prompt, max_new_tokens=cfg.sample_tokens, temperature=SAMPLE_TEMPERATURE,
            top_k=SAMPLE_TOP_K, seed=cfg.seed, should_stop=self._past_deadline)

    def _induction_probe(self) -> dict:
        """The in-context-learning score and the best induction head (``mnemos.heads``), on
        a small batch fixed for the run: ``ICL_WINDOWS`` validation windows and
        ``SEQ_BATCH`` repeated random sequences, about one evaluation batch's work."""
        from mnemos.heads import ICL_WINDOWS, induction_probe

        cfg = self.train_cfg
        x, y = data_mod.get_batch(self.val_tokens, ICL_WINDOWS, self.model_cfg.block_size,
                                  np.random.default_rng([cfg.seed, 3]))
        if self._seen is None:  # the ids the model trains on: the random sequences draw from these
            self._seen = np.flatnonzero(np.bincount(self.train_tokens, minlength=self.model_cfg.vocab_size))
        return induction_probe(self.model, x, y, exclude=self.tokenizer.special_tokens.values(), seed=cfg.seed,
                               seen=self._seen)

    def _evaluate(self, save: bool, final: bool = False) -> None:
        t0 = self._clock()
        estimate = self._eval_s  # (0 before the first evaluation: no cap on that one)
        self._eval_deadline = t0 + 2 * estimate if estimate and not final else None
        train_loss = self._estimate_loss(self.train_tokens, 0)
        val_loss = self._estimate_loss(self.val_tokens, 1)
        is_best = (save and math.isfinite(val_loss) and self._divergence.diverged is None
                   and (self.best_val_loss is None or val_loss < self.best_val_loss))
        if is_best:
            self.best_val_loss = val_loss
        best = self.best_val_loss if self.best_val_loss is not None else math.inf
        probe = {} if self._past_deadline() else self._induction_probe()
        self._emit(EvalEvent(self.step, train_loss, val_loss, best, is_best, self.elapsed_s, **probe))
        t1 = self._clock()
        self._emit(SampleEvent(self.step, self.train_cfg.sample_prompt, self._sample(), val_loss))
        # for the ETA and the time budget: the forward passes in steps' time, the sample in seconds
        self._eval_steps.append((t1 - t0) / self._seconds_per_step())
        self._sample_times.append(self._clock() - t1)
        if save:
            self._save_checkpoint("best" if is_best else "latest", is_best, val_loss)

    def _bytes_per_token(self, tokens: np.ndarray) -> float:
        """UTF-8 bytes per token of ``tokens``: what turns their loss in nats per token
        into bits per byte (``mnemos.compare``), a number that does not depend on the vocabulary."""
        lengths = np.array([len(self.tokenizer.token_bytes(i)) for i in range(self.tokenizer.vocab_size)])
        return float(lengths[np.asarray(tokens)].sum() / max(1, len(tokens)))

    def _state_dict(self) -> dict:
        return {"step": self.step, "best_val_loss": _finite_or_none(self.best_val_loss),
                "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed_s, "budget_used_s": self.budget_used_s,
                "step_time_s": self._seconds_per_step() if self._step_times or self._step_s else None,
                "eval_time_s": self._eval_s, "save_time_s": self._save_s,
                "batch_rng": self.batch_rng.bit_generator.state, "dropout_rng": self.model.rng.bit_generator.state,
                "windows_drawn": self.sampler.drawn if self.sampler is not None else None,
                **self._fingerprints}

    def _save_checkpoint(self, reason: str, is_best: bool = False, val_loss: float | None = None) -> None:
        """Save the run, unless it has diverged (weights or the validation loss ``val_loss`` no
        longer finite): then the last checkpoint stays the good one it is, and the run says so."""
        xp = getattr(self.model, "xp", np)
        why = ("the weights are no longer finite" if not bool(xp.isfinite(self.model.params.data).all()) else
               f"the validation loss is {val_loss}" if val_loss is not None and not math.isfinite(val_loss) else None)
        if why:
            kept = f"{self.last_good} keeps step {self._saved_step}" if self.last_good else "nothing was saved yet"
            self._say("save", f"not saved at step {self.step}: {why}; {kept}")
            return
        t0 = self._clock()
        path = save_checkpoint(self.out_dir, self.model, self.tokenizer, self.model_cfg, self.train_cfg,
                               self.optimizer, self._state_dict(), metrics=self.metrics,
                               best="update" if is_best else "keep", fresh=not self._saved_once)
        self._saved_step, self._saved_once, self.last_good = self.step, True, str(path)
        self._save.clear()
        self._save_times.append(self._clock() - t0)
        self.callback(CheckpointEvent(self.step, str(path), reason))

    def _wait_while_paused(self) -> None:
        if self._unpaused.is_set():
            return
        self._set_state("paused")
        t0 = self._clock()
        while not self._unpaused.wait(0.05):
            if self._save.is_set() and self._saved_step != self.step:
                self._save_checkpoint("manual")
            self._save.clear()
        self._paused_s += self._clock() - t0  # a pause does not spend the time budget
        if not self._stop.is_set():
            self._set_state("running")

    def run(self) -> DoneEvent:
        """Prepare, then train until ``max_steps`` or ``stop()``; returns the DoneEvent
        (also sent to the callback). User errors become an ErrorEvent, not an exception.
        NumPy's overflow warnings are silenced: a loss or gradient that stops being finite is
        caught and explained by the divergence check (``mnemos.divergence``), and a warning
        printed mid-run would only garble the terminal (the app's screen)."""
        if self.state != "idle":
            raise RuntimeError("a Trainer runs once; make a new one (Trainer.from_checkpoint) to continue")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._run()

    def _run(self) -> DoneEvent:
        self._t_start = self._clock()
        reason, loss = "finished", None
        try:
            self._set_state("preparing")
            if self.train_cfg.time_budget is not None:
                self._say("budget", self._budget_message())
                self._check_budget_left("measuring")
            if self.train_cfg.optimizer == "sgd" and self.train_cfg.lr < 0.01:
                self._say("setup", f"note: plain SGD with --lr {self.train_cfg.lr:g} moves slowly; gradient descent "
                                   f"usually wants --lr around 0.1")
            self._prepare()
            self._check_budget_left("reading, tokenizer, encoding, model")
            self._set_state("running")
            if self.step == 0:
                self._evaluate(save=False)  # the untrained baseline: the first point of the curves
            loss = self._loop()
            if self._stop.is_set():
                reason = "stopped"
                if self._stop_save and self._saved_step != self.step and self.step > 0:
                    self._save_checkpoint(self._stop_reason)
        except _Stopped:
            reason = "stopped"
        except _Diverged as exc:
            reason = "error"
            where = (f"the last good checkpoint is {self.last_good} (step {self._saved_step}); resume it"
                     if self.last_good else "no checkpoint was saved yet; start again")
            self.callback(ErrorEvent(f"{exc}; training stopped, {where} with a lower --lr "
                                     f"(now {self.train_cfg.lr:g}) or a smaller --grad-clip", self.last_good))
        except WorkerError as exc:  # the weights are those of the last whole step: keep them
            reason = "error"
            if self.parallel is not None:
                self.parallel.close()
            try:
                if self.step > 0 and self._saved_step != self.step:
                    self._save_checkpoint("interrupt")
            except MnemosError:
                pass  # the error below names the last checkpoint that was saved
            saved = f"step {self._saved_step} is saved in {self.last_good}" if self.last_good else "nothing was saved"
            self.callback(ErrorEvent(f"{exc} ({saved})", self.last_good))
        except MnemosError as exc:
            reason = "error"
            self.callback(ErrorEvent(str(exc), self.last_good))
        finally:
            if self.parallel is not None:
                self.parallel.close()
            if self._claimed_dir:
                try:
                    self.out_dir.rmdir()  # only if empty: stopped before its first save, leave no trace
                except OSError:
                    pass  # it holds the run (or is gone already)
            if self._lock is not None:
                self._lock.release()
            self.state = "done"
        done = DoneEvent(self.step, reason, loss, _finite_or_none(self.best_val_loss), self.elapsed_s,
                         self.last_good, self._divergence.diverged)
        self.callback(done)
        return done

    def _loop(self) -> float | None:
        cfg = self.train_cfg
        loss = None
        self._horizon = self._plan()
        if self._horizon <= self.step:  # only a time budget can leave no room for one step
            raise ConfigError(self._too_short())
        while self.step < self._horizon:
            self._wait_while_paused()
            if self._stop.is_set():
                self._set_state("stopping")
                break
            t0 = self._clock()
            loss, lr, norm = self._train_step()
            self._step_times.append(self._clock() - t0)
            warning = self._divergence.update(self.step, loss, cfg.lr)
            if warning:
                self.callback(WarningEvent(self.step, warning))
            self._horizon = self._plan()
            end = self.step >= self._horizon
            t1 = self._clock()
            if self.step % cfg.log_interval == 0 or end:
                self._emit(self._step_event(loss, lr, norm))
            self._step_times[-1] += self._clock() - t1  # a step's time includes reporting it (the budget's plan)
            if end or (self.step % cfg.eval_interval == 0 and self._eval_fits()):
                self._evaluate(save=True, final=end)
                if cfg.time_budget is not None and not end:  # if no step fits after it, it was the final one
                    self._horizon = self._plan()
            if self._save.is_set() and self._saved_step != self.step:
                self._save_checkpoint("manual")
        return loss

    def _step_event(self, loss: float, lr: float, norm: float) -> StepEvent:
        cfg, horizon = self.train_cfg, self._horizon
        rate = self._seconds_per_step()
        evals_left = horizon // cfg.eval_interval - self.step // cfg.eval_interval + (horizon % cfg.eval_interval != 0)
        eta = rate * (horizon - self.step) + evals_left * (self._eval_s + self._save_s)
        tokens = cfg.grad_accum * cfg.batch_size * self.model_cfg.block_size
        budget = cfg.time_budget
        return StepEvent(self.step, horizon, loss, lr, norm, tokens / rate, self.elapsed_s, eta, self.tokens_seen,
                         time_budget_s=budget, budget_left_s=None if budget is None else budget - self.budget_used_s)

    def _eval_fits(self) -> bool:
        """Whether an evaluation and save now still leave time for the final ones."""
        budget = self.train_cfg.time_budget
        return budget is None or self.budget_used_s + 2 * (self._eval_s + self._save_s) < budget

    def _too_short(self) -> str:
        budget, used = self.train_cfg.time_budget, self.budget_used_s
        need = self._seconds_per_step() + FINAL_MARGIN * (self._eval_s + self._save_s)  # as steps_that_fit sets aside
        return (f"a time budget of {budget:g} s is too short: {used:.1f} s went on preparation and one step with "
                f"the final evaluation and save needs about {need:.1f} s more; give at least "
                f"{math.ceil(used + need) + 1}s")
