"""Checkpoints: save, load, list, delete; atomic and pickle-free.

A run folder (contract, see ARCHITECTURE)::

    checkpoints/<run>/            the latest checkpoint of the run
      config.json                 {"format_version", "mnemos_version", "model": {...}, "train": {...}}
      tokenizer.json              the BPE
      model.npz                   float32 weights keyed by stable parameter names
      optimizer.npz               the optimizer's state: AdamW "m", "v" (flat float32) and "t"; Muon
                                  also "momentum" (its hidden matrices'); SGD "momentum" and "t"
      state.json                  step, best val loss, RNG states, tokens seen, wall time, fingerprints
      metrics.jsonl               one JSON object per logged step / eval, up to this checkpoint
      best/                       the same files for the checkpoint with the lowest val loss

Atomicity. Every save writes a complete new folder ``.<run>.saving-<pid>`` next to the
run (each file fsynced), then swaps it in with two renames: ``<run>`` ->
``.<run>.previous-<pid>``, ``.<run>.saving-<pid>`` -> ``<run>``. A POSIX rename is
atomic, so a kill at any moment leaves either the old ``<run>``, or no ``<run>`` but a
whole ``.<run>.previous-<pid>`` (between the two renames), which every reader here
renames back once that process is gone (:func:`recover`). ``best/`` and unchanged files
are hard links into the previous folder, so keeping ``best`` costs no copy; checkpoint
files are never modified in place, which is what makes sharing inodes safe. Loading
uses ``np.load(allow_pickle=False)`` only.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import mnemos
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError, ConfigError, MnemosError
from mnemos.fileio import NotRegularFile, link_loop, open_regular, read_jsonl, why_missing
from mnemos.memory import check_fits, inference_estimate
from mnemos.paths import RUNS_ROOT
from mnemos.runlock import RunLock
from mnemos.safeload import check_state, expect_exactly, parse_json, read_npz

FORMAT_VERSION = 1
CHECKPOINT_FILES = ("config.json", "tokenizer.json", "model.npz", "optimizer.npz", "state.json")
BEST = "best"
EVAL_FILES = ("evals.jsonl", "eval-report.md")  # what `mnemos eval` adds to a run folder (mnemos.evaluate)
FORCE_REPLACES = CHECKPOINT_FILES + ("metrics.jsonl", BEST) + EVAL_FILES  # what a new run over an old one replaces
MAX_BYTES = {"config.json": 1 << 20, "state.json": 16 << 20, "tokenizer.json": 256 << 20}  # a sane file is far smaller
_SWAP_LOCK = threading.RLock()  # one swap or recovery at a time in this process (the TUI lists while it trains)


# --------------------------------------------------------------------------- low-level writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform / filesystem
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, write) -> None:
    """Create ``path``, let ``write(f)`` fill it, flush and fsync it."""
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, obj) -> None:
    _write_bytes(path, lambda f: f.write((json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()))


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _write_bytes(path, lambda f: np.savez(f, **arrays))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_extras(src: Path, dst: Path, skip: tuple[str, ...]) -> None:
    """Hard-link (or copy) everything in ``src`` but ``skip`` into ``dst``."""
    for item in src.iterdir() if src.is_dir() else ():
        if item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, dst / item.name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _pid_of(path: Path) -> int | None:
    """The process id at the end of a ``.<run>.saving-<pid>`` / ``.previous-<pid>`` name."""
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _gone(pid: int | None) -> bool:
    """Whether the process that made a temporary folder is no longer saving: dead, or
    this process (whose own swaps hold ``_SWAP_LOCK``, so none is half done)."""
    return pid is not None and (pid == os.getpid() or not _pid_alive(pid))


def recover(run: str | os.PathLike) -> None:
    """Finish the swap of a save that was killed between its two renames: put the
    whole previous checkpoint back in place. A no-op for a healthy folder. If the
    saving process is alive (it is between its two renames, for microseconds), wait
    for it instead."""
    run = Path(run)
    if run.exists():
        return
    with _SWAP_LOCK:
        for old in sorted(run.parent.glob(f".{run.name}.previous-*")):
            if not (old / "config.json").is_file():
                continue
            if not _gone(_pid_of(old)):
                deadline = time.monotonic() + 2.0
                while not run.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            if not run.exists():
                os.rename(old, run)
                _fsync_dir(run.parent)
            return


def _remove_stale_saves(run: Path) -> None:
    """Delete what killed saves left behind: half-written folders, and previous
    checkpoints already replaced (only those whose process is gone)."""
    for pattern in (f".{run.name}.saving-*", f".{run.name}.previous-*"):
        for tmp in run.parent.glob(pattern):
            if _gone(_pid_of(tmp)) and (pattern.endswith("saving-*") or run.exists()):
                shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, run: Path) -> None:
    """``run`` -> ``.run.previous-<pid>``, ``tmp`` -> ``run`` (two atomic renames)."""
    old = run.parent / f".{run.name}.previous-{os.getpid()}"
    with _SWAP_LOCK:
        if run.exists():
            os.rename(run, old)
        os.rename(tmp, run)
        _fsync_dir(run.parent)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- saving


def save_checkpoint(dir: str | os.PathLike, model, tokenizer, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    optimizer, state: dict, metrics: list[dict] | None = None, best: str = "keep",
                    fresh: bool = False) -> Path:
    """Write a checkpoint folder atomically and return its path.

    ``state`` is the JSON-able training state (see the trainer). ``metrics`` replaces
    ``metrics.jsonl`` (``None`` keeps the current file). ``best``: ``"update"`` makes this
    checkpoint ``best/``, ``"keep"`` keeps the existing ``best/``, ``"drop"`` writes none.
    Other files in the folder (evaluation reports ...) are kept; ``fresh`` (the first save
    of a new run replacing an old one, ``--force``) replaces the old run's files
    (:data:`FORCE_REPLACES`) and keeps any other file of the user's. A symlinked folder
    is saved into its target.
    A failed save (e.g. disk full) raises :class:`CheckpointError` and leaves the
    previous checkpoint untouched.
    """
    if best not in ("keep", "update", "drop"):
        raise ValueError(f"best must be 'keep', 'update' or 'drop', got {best!r}")
    run = Path(os.path.realpath(dir)) if Path(dir).is_symlink() else Path(dir)  # a linked folder: its target
    tmp = run.parent / f".{run.name}.saving-{os.getpid()}"
    had_previous = is_checkpoint(run)
    try:
        run.parent.mkdir(parents=True, exist_ok=True)
        recover(run)
        if run.exists() and not run.is_dir():
            raise CheckpointError(f"{run} exists and is not a folder; choose another --out")
        _remove_stale_saves(run)
        tmp.mkdir()
        config = {"format_version": FORMAT_VERSION, "mnemos_version": mnemos.__version__,
                  "model": model_cfg.to_dict(), "train": train_cfg.to_dict()}
        _write_json(tmp / "config.json", config)
        tokenizer.save(tmp / "tokenizer.json")
        _write_npz(tmp / "model.npz", {k: np.asarray(v, dtype=np.float32) for k, v in model.state_dict().items()})
        if optimizer is not None:  # None: a model that was never trained here (an import) has no moments
            shapes = optimizer.state_shapes()  # every optimizer's arrays, in the dtypes a load expects
            _write_npz(tmp / "optimizer.npz", {k: np.asarray(v, dtype=shapes[k][1])
                                               for k, v in optimizer.state_dict().items()})
        _write_json(tmp / "state.json", {"format_version": FORMAT_VERSION, **state,
                                         "model_shape": _model_shape(model_cfg)})
        if metrics is not None:
            lines = "".join(json.dumps(row, allow_nan=False) + "\n" for row in metrics)
            _write_bytes(tmp / "metrics.jsonl", lambda f: f.write(lines.encode()))
        elif not fresh and (run / "metrics.jsonl").is_file():
            _link_or_copy(run / "metrics.jsonl", tmp / "metrics.jsonl")
        # other files of the run (evaluation reports ...) stay with it; a fresh run (--force)
        # replaces the old run's files (FORCE_REPLACES) and keeps the user's own
        _carry_extras(run, tmp, FORCE_REPLACES if fresh else CHECKPOINT_FILES + ("metrics.jsonl", BEST))
        if best == "update":
            (tmp / BEST).mkdir()
            for name in CHECKPOINT_FILES:
                _link_or_copy(tmp / name, tmp / BEST / name)
        elif best == "keep" and not fresh and (run / BEST / "config.json").is_file():
            (tmp / BEST).mkdir()
            _carry_extras(run / BEST, tmp / BEST, ())
        if (tmp / BEST).is_dir():
            _fsync_dir(tmp / BEST)
        _fsync_dir(tmp)
        _swap_in(tmp, run)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        what = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        if had_previous:
            raise CheckpointError(f"could not save the checkpoint to {run} ({what}); the previous checkpoint is "
                                  f"intact; free some space or fix the folder, then resume with --resume {run}"
                                  ) from None
        raise CheckpointError(f"could not save the checkpoint to {run} ({what}); nothing was saved; free some space "
                              f"or choose another --out, then start again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run


# --------------------------------------------------------------------------- loading


@dataclass
class Checkpoint:
    """A loaded checkpoint. The optimizer moments load on demand (generation needs none)."""

    path: Path
    model: object
    tokenizer: object
    model_config: ModelConfig
    train_config: TrainConfig
    state: dict
    mnemos_version: str = ""

    def optimizer_state(self) -> dict:
        """The arrays of ``optimizer.npz``, each checked (before it is read) against what
        the run's optimizer (``train_config.optimizer``) keeps for this model."""
        from mnemos.optim import state_shapes

        name = "optimizer.npz"
        shapes = state_shapes(self.train_config.optimizer, self.model.params)
        n = sum(math.prod(shape) for shape, _ in shapes.values())

        def expect(key):
            return shapes.get(key)
        expect.required = tuple(shapes)
        data = _snapshot(self.path, (name,), {name: 4 * n + (1 << 17) * len(shapes)})[name]
        arrays = read_npz(data, self.path / name, expect)
        if arrays["t"] < 0:
            raise CheckpointError(f"{self.path / name}: the step count t is negative; the file was edited or "
                                  f"damaged, use the run's best/ folder or start a new run")
        return {**arrays, "t": int(arrays["t"])}


def _check_folder(run: Path) -> None:
    """Raise unless ``run`` is a checkpoint folder (looking again while a save swaps it)."""
    with _SWAP_LOCK:
        for _ in range(3):
            recover(run)
            if run.is_dir() and (run / "config.json").is_file():
                return
            if not any(run.parent.glob(f".{run.name}.previous-*")):
                break
    what = why_missing(run) if not run.exists() else "is not a Mnemos checkpoint (no config.json)"
    raise CheckpointError(f"{run} {what}; pass a folder written by `mnemos train` (see `mnemos list`)")


def _snapshot(run: Path, names: tuple[str, ...], limits: dict[str, int] | None = None) -> dict[str, bytes]:
    """The bytes of ``names``, all from one and the same checkpoint: they are read
    through a handle on the folder, so a save that swaps a new folder in meanwhile (in
    another process) cannot mix two checkpoints; if the old folder is deleted under us,
    read the new one. This process's own saves wait (``_SWAP_LOCK``)."""
    opener_ok = os.open in os.supports_dir_fd
    for _ in range(50):
        recover(run)
        with _SWAP_LOCK:
            try:
                dfd = os.open(run, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if opener_ok else None
            except FileNotFoundError:
                time.sleep(0.01)
                continue
            try:
                out = {}
                for name in names:
                    with open_regular(name if dfd is not None else run / name, dfd) as f:
                        _check_size(run / name, os.fstat(f.fileno()).st_size, {**MAX_BYTES, **(limits or {})})
                        out[name] = f.read()
                return out
            except IsADirectoryError:
                raise CheckpointError(f"{run / name} is a folder, not a file; it is not a Mnemos checkpoint file, "
                                      f"use another checkpoint") from None
            except PermissionError:
                raise CheckpointError(f"{run / name} cannot be read (permission denied); fix its permissions"
                                      ) from None
            except NotRegularFile as exc:
                raise CheckpointError(f"{run / name} is {exc.strerror}; it is not a Mnemos checkpoint file, "
                                      f"use another checkpoint") from None
            except FileNotFoundError:
                same = dfd is None or (run.exists() and os.stat(run).st_ino == os.fstat(dfd).st_ino)
                if same:  # really missing, not swapped away
                    raise CheckpointError(f"{run} is not a complete checkpoint ({name} is missing); "
                                          f"pass a folder written by `mnemos train`") from None
            finally:
                if dfd is not None:
                    os.close(dfd)
        time.sleep(0.01)
    raise CheckpointError(f"{run} keeps changing while it is read; try again")


def _check_size(path: Path, size: int, limits: dict[str, int]) -> None:
    limit = limits.get(path.name)
    if limit is not None and size > limit:
        raise CheckpointError(f"{path} is {size:,} bytes, more than a checkpoint of this model can hold "
                              f"({limit:,}); it was replaced or damaged, use another checkpoint")


def _parse_json(data: bytes, run: Path, name: str) -> dict:
    return parse_json(data, run / name)


def _model_npz_limit(cfg: ModelConfig) -> int:
    """The most bytes a model.npz of ``cfg`` takes: its float32 weights plus a zip entry
    and an .npy header per array."""
    return 4 * cfg.num_params() + (1 << 17) * (12 * cfg.n_layer + 4)


def _parse_config(data: bytes, run: Path) -> tuple[ModelConfig, TrainConfig, dict]:
    raw = _parse_json(data, run, "config.json")
    version = raw.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{run}/config.json has no format_version; it was not written by Mnemos")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{run} was written by a newer Mnemos (checkpoint format {version}, this version "
                              f"reads up to {FORMAT_VERSION}); upgrade Mnemos with `pip install -U mnemos`")
    try:
        return ModelConfig.from_dict(raw.get("model")), TrainConfig.from_dict(raw.get("train")), raw
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{run}/config.json is invalid ({exc}); use another checkpoint") from None


def read_config(dir: str | os.PathLike) -> tuple[ModelConfig, TrainConfig, dict]:
    """The configs of a checkpoint folder (cheap: no weights), checking the format."""
    run = Path(dir)
    _check_folder(run)
    return _parse_config(_snapshot(run, ("config.json",))["config.json"], run)


def read_state(dir: str | os.PathLike) -> dict:
    """The ``state.json`` of a checkpoint folder (cheap: no weights)."""
    run = Path(dir)
    _check_folder(run)
    state = _parse_json(_snapshot(run, ("state.json",))["state.json"], run, "state.json")
    check_state(state, run / "state.json")
    return state


def load_checkpoint(dir: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint folder (the run's latest, or its ``best/``) into a model.

    Raises :class:`CheckpointError` with one line for a folder that is not a
    checkpoint, a truncated or corrupt file, a newer format, or mismatched shapes.
    """
    from mnemos.nn import GPT
    from mnemos.nn.gpt import param_specs
    from mnemos.nn.params import ParamStore
    from mnemos.tokenizer import BPETokenizer

    run = Path(dir)
    model_cfg, _, _ = read_config(run)  # first the config alone: what may be allocated, and read
    check_fits(inference_estimate(model_cfg), f"the model in {run}")
    files = _snapshot(run, ("config.json", "state.json", "tokenizer.json", "model.npz"),
                      {"model.npz": _model_npz_limit(model_cfg)})
    model_cfg, train_cfg, raw = _parse_config(files["config.json"], run)
    state = _parse_json(files["state.json"], run, "state.json")
    check_state(state, run / "state.json")
    _check_shape(state, model_cfg, run)
    try:
        tokenizer = BPETokenizer.from_dict(_parse_json(files["tokenizer.json"], run, "tokenizer.json"),
                                           source=str(run / "tokenizer.json"))
    except MnemosError as exc:
        raise CheckpointError(str(exc)) from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{run}/tokenizer.json is not a Mnemos tokenizer ({type(exc).__name__}); use "
                              f"another checkpoint") from None
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise CheckpointError(f"{run}: tokenizer.json has {tokenizer.vocab_size} tokens but the model expects "
                              f"{model_cfg.vocab_size}; the folder mixes two runs, use another checkpoint")
    if state.get("tokenizer") and state["tokenizer"] != tokenizer.fingerprint():
        raise CheckpointError(f"{run}/tokenizer.json is not the tokenizer this model was trained with (its "
                              f"fingerprint differs from state.json's); restore it, or use the run's best/ folder")
    specs = param_specs(model_cfg)
    weights = read_npz(files["model.npz"], run / "model.npz",
                       expect_exactly({name: (shape, np.float32) for name, shape, _ in specs}))
    model = GPT(model_cfg, params=ParamStore(specs))  # no random init: the weights follow
    try:
        model.load_state_dict(weights)
    except CheckpointError as exc:
        raise CheckpointError(f"{run}/model.npz does not fit its config.json ({exc})") from None
    return Checkpoint(run, model, tokenizer, model_cfg, train_cfg, state, str(raw.get("mnemos_version", "")))


def _model_shape(cfg: ModelConfig) -> dict:
    """The shape settings saved in state.json too, so an edited config.json is caught
    (``n_head`` changes no array's shape)."""
    return {k: getattr(cfg, k) for k in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size")}


def _check_shape(state: dict, cfg: ModelConfig, run: Path) -> None:
    saved = state.get("model_shape")
    if saved is None:
        return  # saved before model_shape was recorded
    for key, have in _model_shape(cfg).items():
        if key in saved and saved[key] != have:
            raise CheckpointError(f"{run}/config.json says {key} {have} but the model was saved with {key} "
                                  f"{saved[key]!r}; config.json was edited: restore {key} {saved[key]!r}, or "
                                  f"start a new run to change the shape")


def is_checkpoint(dir: str | os.PathLike) -> bool:
    """Whether ``dir`` looks like a checkpoint folder (has a config.json)."""
    run = Path(dir)
    recover(run)
    return (run / "config.json").is_file()


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The run folder that ``path`` lies inside (its ``best/`` or any folder below the
    run), or None. A new run, import or export written there would replace that run's best
    checkpoint, or be replaced by the run's next save."""
    found = None
    for parent in Path(os.path.realpath(path)).parents:  # the outermost run: RUN, not RUN/best
        if (parent / "config.json").is_file() and (parent / "model.npz").exists():
            found = parent
    return found


def refuse_inside_run(path: str | os.PathLike, flag: str = "--out") -> None:
    """:class:`CheckpointError` (one line) if ``path`` (given as ``flag``) lies inside a run folder,
    or is a loop of symbolic links (found now, not when the first file is written there)."""
    if link_loop(path):
        raise CheckpointError(f"{path} {why_missing(path)}; choose another {flag} or fix the link")
    run = enclosing_run(path)
    if run is not None:
        raise CheckpointError(f"{path} is inside the run in {run} (its {BEST}/ is that run's best checkpoint): writing "
                              f"there would replace or lose that run's files; choose a{'n' * (flag[2] in 'aeiou')} {flag} outside {run}")


# --------------------------------------------------------------------------- browsing


@dataclass
class CheckpointInfo:
    """One run as the checkpoint lists show it; ``problem`` says why it cannot load."""

    path: str
    name: str
    step: int = 0
    max_steps: int | None = 0  # None: a time-budgeted run without a step limit
    best_val_loss: float | None = None
    num_params: int = 0
    model_config: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    data: str | None = None
    modified: float = 0.0
    has_best: bool = False
    size_bytes: int = 0
    problem: str | None = None
    imported_from: str | None = None  # the Hugging Face folder of an imported model (mnemos import)
    imported_model_type: str | None = None  # its model_type: gpt2, llama
    init_from: str | None = None  # the run a fine-tuning run started from (train --init-from)


def _folder_size(path: Path) -> int:
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:  # hard-linked best/ files count once
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def checkpoint_info(dir: str | os.PathLike) -> CheckpointInfo:
    run = Path(dir)
    info = CheckpointInfo(path=str(run), name=run.name)
    with _SWAP_LOCK:  # one consistent look (this process's saves wait)
        _fill_info(info, run)
    return info


def _fill_info(info: CheckpointInfo, run: Path) -> None:
    try:
        info.modified = (run / "config.json").stat().st_mtime
        info.size_bytes = _folder_size(run)
        info.has_best = (run / BEST / "config.json").is_file()
        model_cfg, train_cfg, _ = read_config(run)
        info.model_config, info.train_config = model_cfg.to_dict(), train_cfg.to_dict()
        info.num_params, info.max_steps = model_cfg.num_params(), train_cfg.max_steps
        state = read_state(run)
        info.step = int(state.get("step", 0))
        info.best_val_loss = state.get("best_val_loss")
        info.data = state.get("data")
        text = {k: v for k, v in state.items() if isinstance(v, str)}  # shown as they are, if they are text
        info.imported_from, info.imported_model_type = text.get("imported_from"), text.get("imported_model_type")
        info.init_from = text.get("init_from")
    except (MnemosError, OSError, ValueError, TypeError) as exc:
        info.problem = str(exc)


def list_checkpoints(root: str | os.PathLike = RUNS_ROOT) -> list[CheckpointInfo]:
    """The runs under ``root`` (folders holding a config.json), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    with _SWAP_LOCK:  # this process's saves wait while the folder is scanned
        for old in root.glob(".*.previous-*"):
            recover(root / old.name[1:].rsplit(".previous-", 1)[0])
        runs = [p for p in root.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()]
        infos = [checkpoint_info(p) for p in runs]
    return sorted(infos, key=lambda i: i.modified, reverse=True)


def delete_checkpoint(dir: str | os.PathLike) -> None:
    """Delete a run folder. Refuses anything that is not a checkpoint folder, and a folder
    a live run holds (naming it); holding the lock meanwhile, no run can start in it, and a
    dead run's stale lock file goes too."""
    run = Path(dir)
    if not is_checkpoint(run):
        raise CheckpointError(f"{run} is not a Mnemos checkpoint; refusing to delete it")
    with RunLock(run):
        doomed = run.parent / f".{run.name}.deleting-{time.time_ns()}"
        os.rename(run, doomed)
        shutil.rmtree(doomed)


def read_metrics(dir: str | os.PathLike) -> list[dict]:
    """The rows of ``metrics.jsonl`` (an unreadable line, e.g. cut by a crash, is skipped)."""
    recover(Path(dir))
    return read_jsonl(Path(dir) / "metrics.jsonl")
