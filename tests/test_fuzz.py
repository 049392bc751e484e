"""Property-based hardening tests (issue 13): hostile command lines and damaged run folders.

(a) Command lines are generated from the argparse parser itself (every command, every
flag: a new flag is fuzzed without touching this file) with hostile values: huge,
negative, zero, NaN, inf, non-numeric, empty, Unicode, undecodable bytes.
(b) A mutator damages one file of a run folder (truncate, flip bytes, change JSON types
and shapes, replace npz arrays, swap two files) and every command that reads a run
(eval, generate, inspect and its views, export, compare, train --resume and --init-from)
and the app's loading path (``load_checkpoint``, what ``mnemos-tui --checkpoint`` calls)
must cope; the same mutator damages a Hugging Face folder before ``mnemos import``.

Either way: exit status 0 or 2, no traceback, and a refusal is one line. They run the CLI
in-process (``main(argv)``) with the available memory pinned at 1 GB (so the memory
check, not the machine, bounds what a command may allocate) and a compute budget (a
command still computing after ``BUDGET`` forward passes is a valid command doing long
work: it is stopped and counts as accepted). A small sample runs as real processes under
an address-space limit (RLIMIT_AS), where an allocation that skips the checks would be a
MemoryError traceback; their timeout is generous: it finds hangs, it does not time speed.

The number of examples is kept modest for the suite; ``MNEMOS_FUZZ_EXAMPLES=2000`` (say)
multiplies each test's share for a long local hunt.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemos import calibrate, memory
from mnemos.checkpoint import load_checkpoint
from mnemos.cli import build_parser, main
from mnemos.errors import MnemosError
from mnemos.nn import GPT
from mnemos.parallel import DataParallel

ROOT = Path(__file__).resolve().parents[1]
SCALE = int(os.environ.get("MNEMOS_FUZZ_EXAMPLES", "0")) / 60 or 1  # examples: the suite's, or a long hunt's
BUDGET = 40  # forward passes (or data-parallel steps) one command may run in these tests
SKIP_COMMANDS = {"data"}  # `data sample` downloads; nothing hostile to feed it offline
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-steps", "1", "--warmup-steps", "1", "--vocab-size", "260", "--workers", "1", "--sample-tokens", "4",
        "--max-steps", "2", "--eval-interval", "1"]
HOSTILE = ["0", "-1", "-0", "1", "2", "1e20", "10" * 12, str(2 ** 64), str(-2 ** 63), "nan", "inf", "-inf", "1e-45",
           "0.5", "", " ", "abc", "ünïcödé", "日本語", "\u202e", "\udcff", "../", "/", "-", "--", "0x10", "1_000",
           "٣", "１２"]


class _OverBudget(BaseException):
    """A valid command doing long work: stopped here, and counted as accepted."""


@contextlib.contextmanager
def _bounded():
    """Pin the available memory at 1 GB and stop any command after BUDGET forward passes;
    the machine's speed (``--time-budget``, ``--preset auto``) is taken as measured, not timed."""
    calls = [0]

    def counting(real):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] > BUDGET:
                raise _OverBudget
            return real(*args, **kwargs)
        return wrapper

    with mock.patch.object(memory, "available_bytes", lambda: 1 << 30), \
            mock.patch.object(calibrate, "time_steps", lambda *args, **kwargs: 50_000.0), \
            mock.patch.object(GPT, "forward", counting(GPT.forward)), \
            mock.patch.object(GPT, "forward_cached", counting(GPT.forward_cached)), \
            mock.patch.object(DataParallel, "loss_and_grad", counting(DataParallel.loss_and_grad)):
        yield


def run_cli(argv: list[str]) -> tuple[int | None, str, str]:
    """``main(argv)`` in this process: (status, stdout, stderr); status None if stopped for its budget."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _bounded():
        try:
            rc = main(argv)
        except _OverBudget:
            rc = None
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_well_behaved(argv, rc, err) -> None:
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2, None), (argv, rc, err)
    if rc == 2:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), (argv, err)


# --------------------------------------------------------------------------- the project

def _make_project(root: Path) -> None:
    """train.txt; ``run`` (GPT-2) and ``llama`` (--arch llama, Muon) run folders; ``hf``, ``llama`` exported."""
    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride to the sea".split()
    (root / "train.txt").write_text("\n".join(" ".join(rng.choice(words, 9)) for _ in range(120)) + "\n")
    for argv in (["train", "--data", str(root / "train.txt"), "--out", str(root / "run"), *TINY],
                 ["train", "--data", str(root / "train.txt"), "--out", str(root / "llama"), *TINY, "--arch", "llama",
                  "--optimizer", "muon"],
                 ["export", "--checkpoint", str(root / "llama"), "--format", "hf", "--out", str(root / "hf")]):
        rc, _, err = run_cli(argv)
        assert rc == 0, (argv, err)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    _make_project(root)
    return root


@contextlib.contextmanager
def _workdir(project: Path):
    """A fresh copy of the project as the working directory (a command may write anywhere in it)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(project / "train.txt", tmp / "train.txt")
        for folder in ("run", "llama", "hf"):
            shutil.copytree(project / folder, tmp / folder, symlinks=True)
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(old)


# --------------------------------------------------------------------------- (a) command lines

def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if name not in SKIP_COMMANDS}


def _flags(parser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _required(parser) -> list[str]:
    """Plausible values for what a command requires, so that its other flags are reached."""
    argv = []
    for a in parser._actions:
        if a.dest == "data" and not a.required and parser.prog != "mnemos train":
            argv += ["--data", "train.txt"]  # eval's default test file is not in the project: score ours
        if isinstance(a, argparse._HelpAction) or not (a.required or not a.option_strings):
            continue
        value = ("hf" if a.dest == "src" else "run" if a.dest in ("checkpoint", "resume", "runs") else "train.txt" if "data" in a.dest
                 else "out-dir" if a.dest == "out" else a.choices and next(iter(a.choices)) or "run")
        argv += [value, value] if not a.option_strings else [a.option_strings[-1], value]
    return argv


def _value(action: argparse.Action):
    hostile = st.one_of(st.sampled_from(HOSTILE), st.integers(-2 ** 70, 2 ** 70).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.text(max_size=12))
    if action.choices:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), hostile)
    return hostile


@st.composite
def command_lines(draw) -> list[str]:
    commands = _commands()
    name = draw(st.sampled_from(sorted(commands)))
    parser = commands[name]
    argv = [name, *_required(parser)]
    if name == "train":
        argv += ["--data", "train.txt", "--out", "new-run", *TINY]  # a valid small run, then the hostile flags
    for action in draw(st.lists(st.sampled_from(_flags(parser)), min_size=1, max_size=3)):
        flag = action.option_strings[-1]
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv.append(f"{flag}={draw(_value(action))}")
    return argv


@settings(max_examples=int(60 * SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=command_lines())
def test_hostile_command_lines_exit_0_or_2_with_one_line(project, argv):
    with _workdir(project):
        rc, out, err = run_cli(argv)
    assert_well_behaved(argv, rc, err)


def test_the_generator_reaches_every_command_and_flag():
    """New commands and flags are fuzzed without editing this file."""
    commands = _commands()
    assert {"train", "eval", "generate", "export", "import", "inspect", "compare"} <= set(commands)
    assert {"--block-size", "--grad-clip", "--workers", "--init-from", "--time-budget", "--arch", "--optimizer"} <= {
        a.option_strings[-1] for a in _flags(commands["train"])}
    assert "--view" in {a.option_strings[-1] for a in _flags(commands["inspect"])}


# the allocation paths, as real processes under an address-space limit (a MemoryError
# traceback, or the kernel's OOM killer, would fail them)
SUBPROCESS_SAMPLE = [
    ["train", "--data", "train.txt", "--out", "a", *TINY, "--block-size", "150000"],
    ["train", "--data", "train.txt", "--out", "b", *TINY, "--n-embd", "65536", "--n-head", "1"],
    ["train", "--data", "train.txt", "--out", "c", *TINY, "--batch-size", "1000000"],
    ["train", "--data", "train.txt", "--out", "d", *TINY, "--n-layer", "1000", "--n-embd", "1024"],
    ["generate", "--checkpoint", "run", "--max-new-tokens", "5", "--prompt", "x" * 5000],
]


@pytest.mark.parametrize("argv", SUBPROCESS_SAMPLE, ids=lambda a: " ".join(a[:1] + a[-2:])[:40])
def test_a_sample_as_real_processes_under_a_memory_limit(project, argv):
    limit = 3 << 30

    def limit_memory():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with _workdir(project) as cwd:
        proc = subprocess.run([sys.executable, "-m", "mnemos", *argv], capture_output=True, text=True, cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit_memory, timeout=300)
    assert_well_behaved(argv, proc.returncode, proc.stderr)


# --------------------------------------------------------------------------- (b) damaged run folders

def _json_mutation(obj, rng: random.Random):
    """``obj`` with one value somewhere replaced by one of another type or size."""
    replacements = [None, True, -1, 0, 10 ** 30, 1e308, "x", "", [], [1, 2], {}, {"a": [[[]]]}, 2 ** 63, -2 ** 63]
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(sorted(obj))
        return {**obj, key: _json_mutation(obj[key], rng)}
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        return obj[:i] + [_json_mutation(obj[i], rng)] + obj[i + 1:]
    return rng.choice(replacements)


def _npz_mutation(path: Path, rng: random.Random) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = rng.choice(sorted(members))
    arr = np.load(io.BytesIO(members[name]))
    choice = rng.randrange(5)
    if choice == 0:
        arr = arr.reshape(-1)[: max(0, arr.size - 1)]  # a shape one short
    elif choice == 1:
        arr = arr.astype(rng.choice([np.float64, np.float16, np.int32, np.int64]))
    elif choice == 2:
        arr = np.asarray(arr, dtype=np.float32).copy()
        arr.reshape(-1)[: 1] = rng.choice([np.nan, np.inf, 1e38])
    elif choice == 3:
        arr = np.zeros((2, 3, 4), dtype=np.float32)
    else:
        members.pop(name)
        arr = None
    if arr is not None:
        buf = io.BytesIO()
        np.save(buf, arr)
        members[name] = buf.getvalue()
    path.unlink()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def mutate(run: Path, seed: int, file: str, files: list[str] | None = None) -> str:
    """Damage ``file`` of ``run`` in one of several ways (chosen by ``seed``); returns how."""
    rng = random.Random(seed)
    path = run / file
    data = path.read_bytes()
    how = rng.choice(["truncate", "flip", "structure", "swap", "empty", "folder"])
    if how == "truncate":
        path.write_bytes(data[: rng.randrange(len(data) + 1)])
    elif how == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if raw:
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
    elif how == "structure" and file.endswith(".npz"):
        _npz_mutation(path, rng)
    elif how == "structure" and file.endswith(".json"):
        path.write_text(json.dumps(_json_mutation(json.loads(data), rng)))
    elif how == "structure" and file.endswith(".safetensors"):  # a header that lies about shapes and offsets
        (n,) = np.frombuffer(data[:8], dtype="<u8")
        header = _json_mutation(json.loads(data[8:8 + int(n)]), rng)
        raw = json.dumps(header).encode()
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + int(n):])
    elif how == "structure" and file == "merges.txt":
        path.write_bytes(data + b"\n" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    elif how == "structure":  # metrics.jsonl: a row of another shape
        path.write_text(json.dumps(_json_mutation({"step": 1, "loss": 2.0}, rng)) + "\n", encoding="utf-8")
    elif how == "swap":
        other = run / rng.choice([f for f in (files or RUN_FILES) if f != file])
        tmp = run / ".swap"
        path.rename(tmp)
        other.rename(path)
        tmp.rename(other)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    return how


RUN_FILES = ["config.json", "tokenizer.json", "model.npz", "optimizer.npz", "state.json", "metrics.jsonl"]
READERS = [
    ["eval", "--checkpoint", "run", "--data", "train.txt", "--json"],
    ["generate", "--checkpoint", "run", "--max-new-tokens", "5", "--seed", "1"],
    ["inspect", "--checkpoint", "run", "--prompt", "the king"],
    *[["inspect", "--checkpoint", "run", "--prompt", "the king", "--view", view]
      for view in ("lens", "heads", "loss", "attribution")],
    ["export", "--checkpoint", "run", "--format", "hf", "--out", "out-hf"],
    ["compare", "run", "llama", "--report", "c.md"],
    ["train", "--resume", "run", "--max-steps", "4", "--json"],
    ["train", "--data", "train.txt", "--init-from", "run", "--out", "ft", "--max-steps", "1", "--eval-interval", "1",
     "--eval-steps", "1", "--batch-size", "2", "--workers", "1", "--sample-tokens", "2"],
]
HF_FILES = ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "generation_config.json"]


@settings(max_examples=int(25 * SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(file=st.sampled_from(RUN_FILES), seed=st.integers(0, 2 ** 32))
def test_a_damaged_run_folder_is_refused_in_one_line_by_every_reader(project, file, seed):
    with _workdir(project) as cwd:
        how = mutate(cwd / "run", seed, file)
        for argv in READERS:
            rc, out, err = run_cli(argv)
            assert_well_behaved([*argv, f"({file}: {how})"], rc, err)
            shutil.rmtree(cwd / "out-hf", ignore_errors=True)
            shutil.rmtree(cwd / "ft", ignore_errors=True)
        with _bounded():  # the app's path: mnemos-tui --checkpoint loads with load_checkpoint
            try:
                load_checkpoint(cwd / "run")
            except MnemosError as exc:
                assert "\n" not in str(exc)


@settings(max_examples=int(20 * SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(file=st.sampled_from(HF_FILES), seed=st.integers(0, 2 ** 32))
def test_a_damaged_hugging_face_folder_is_refused_in_one_line_by_import(project, file, seed):
    with _workdir(project) as cwd:
        how = mutate(cwd / "hf", seed, file, HF_FILES)
        rc, out, err = run_cli(["import", "--from", "hf", "--out", "imported"])
        assert_well_behaved(["import", f"({file}: {how})"], rc, err)
        if rc == 2:  # refused: nothing half-written is left behind
            assert not (cwd / "imported").exists() or not any((cwd / "imported").iterdir())
