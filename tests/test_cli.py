"""The `mnemos` command line end to end: train -> eval -> generate -> export -> resume,
every bad input of issue 4 (exit 2, one line, nothing overwritten), Ctrl+C (exit 130)."""

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnemos import checkpoint as ck
from mnemos.checkpoint import load_checkpoint
from mnemos.cli import build_parser, main, train_configs
from mnemos.config import default_workers

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-steps", "2", "--warmup-steps", "2", "--vocab-size", "256", "--seed", "3", "--workers", "1"]
WORDS = "the king is dead long live the queen and all her men ride to the sea at dawn".split()


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project folder with a small text of our own, as the working directory."""
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(WORDS, size=9)) + "." for _ in range(200)) + "\n"
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    (tmp_path / "test.txt").write_text(text[:2000], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_main(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def folder_digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_end_to_end(proj, capsys):
    rc, out, err = run_main(capsys, "train", "--data", "train.txt", "--out", "run", "--max-steps", "6",
                            "--eval-interval", "3", "--json", *TINY)
    assert rc == 0, err
    events = json_lines(out)
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(steps[0])
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3, 6] and {"train_loss", "val_loss"} <= set(evals[0])
    assert events[-1]["event"] == "done" and events[-1]["reason"] == "finished" and events[-1]["step"] == 6

    rc, out, err = run_main(capsys, "eval", "--checkpoint", "run", "--data", "test.txt", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert {"loss", "perplexity", "bits_per_byte", "tokens", "bytes"} <= set(report)
    assert report["bytes"] == 2000 and report["tokens"] > 0
    assert abs(report["perplexity"] - np.exp(report["loss"])) < 1e-6 * report["perplexity"]
    assert Path(report["report"]).is_file()

    rc, out, err = run_main(capsys, "eval", "--checkpoint", "run", "--data", "test.txt")
    assert rc == 0 and "bits per byte" in out and "unigram" in out

    rc, first, _ = run_main(capsys, "generate", "--checkpoint", "run", "--prompt", "the king", "--seed", "5",
                            "--max-new-tokens", "20")
    rc2, second, _ = run_main(capsys, "generate", "--checkpoint", "run", "--prompt", "the king", "--seed", "5",
                              "--max-new-tokens", "20")
    assert rc == rc2 == 0 and first == second and first.startswith("the king") and len(first) > len("the king")

    rc, out, err = run_main(capsys, "export", "--checkpoint", "run", "--format", "hf", "--out", "hf")
    assert rc == 0, err
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (proj / "hf").iterdir()}

    rc, out, err = run_main(capsys, "train", "--resume", "run", "--max-steps", "8", "--json")
    assert rc == 0, err
    assert [e["step"] for e in json_lines(out) if e["event"] == "step"] == [7, 8]
    assert load_checkpoint(proj / "run").state["step"] == 8
    assert (proj / "run" / "eval-report.md").is_file()  # the evaluation report survived the new saves

    rc, out, _ = run_main(capsys, "list")
    assert rc == 0 and out.startswith("no runs in checkpoints/ yet")
    rc, out, _ = run_main(capsys, "list", "--root", ".")
    assert "run" in out and "step      8/8" in out


def test_human_output_is_periodic_lines_when_not_a_terminal(proj, capsys):
    rc, out, err = run_main(capsys, "train", "--data", "train.txt", "--out", "run", "--max-steps", "20",
                            "--eval-interval", "20", *TINY)
    assert rc == 0, err
    lines = out.splitlines()
    assert any(line.startswith("validation: the last 10% of the training tokens") for line in lines)
    assert [line.split("/")[0] for line in lines if line.startswith("step ")] == ["step     10", "step     20"]
    assert any(line.startswith("eval step 20: train loss") for line in lines)
    assert lines[0] == "run folder: run"
    assert lines[-2].startswith("done (finished) at step 20")
    assert lines[-1] == "next: `mnemos generate --checkpoint run`, `mnemos eval --checkpoint run`"
    assert "\r" not in out


def test_terminal_output_is_one_updating_line():
    import io

    from mnemos.cli import ProgressPrinter
    from mnemos.events import EvalEvent, SampleEvent, StepEvent

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    printer = ProgressPrinter(json_mode=False, stream=term)
    for step in (1, 2, 3):
        printer(StepEvent(step, 3, 2.5, 1e-3, 0.9, 1000.0, 1.0, 0.0, 100))
    printer(EvalEvent(3, 2.4, 2.5, 2.5, True, 1.0))
    printer(SampleEvent(3, "\n", "to be\x07 or not", 2.5))
    out = term.getvalue()
    assert out.startswith("\r\x1b[2Kstep      1/3")
    assert "step      2/3" not in out  # throttled: at most ~10 updates a second
    assert "\r\x1b[2Kstep      3/3" in out  # the last step is always shown
    assert "\neval step 3: train loss 2.4000, val loss 2.5000  (best)\n" in out
    assert "to be\N{MIDDLE DOT} or not" in out and "\x07" not in out


def test_preset_then_explicit_flags():
    args = build_parser().parse_args(["train", "--preset", "tiny", "--n-layer", "3", "--lr", "0.01",
                                      "--sample-prompt", "ROMEO:", "--grad-accum", "2"])
    model, train = train_configs(args)
    assert train.sample_prompt == "ROMEO:" and train.grad_accum == 2
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size) == (3, 2, 64, 32)
    assert train.lr == 0.01 and train.max_steps == 300
    default_model, default_train = train_configs(build_parser().parse_args(["train"]))
    assert (default_model.n_layer, default_model.n_embd) == (4, 128)  # the small preset (baby GPT)
    assert default_train.workers == default_workers()


# --------------------------------------------------------------------------- bad input


def _bad(capsys, argv, *words):
    rc, out, err = run_main(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]
    return lines[0]


def _write_bytes(name, blob):
    Path(name).write_bytes(blob)
    return name


BAD_DATA = [
    (lambda: "missing.txt", ["no such file"]),
    (lambda: (os.mkdir("folder"), "folder")[1], ["is a directory"]),
    (lambda: _write_bytes("empty.txt", b""), ["is empty"]),
    (lambda: _write_bytes("binary.bin", b"\x7fELF\x00\x01" * 100), ["NUL byte"]),
    (lambda: _write_bytes("latin1.txt", "olá mundo".encode("latin-1")), ["not valid UTF-8", "offset 2"]),
    (lambda: _write_bytes("short.txt", b"just a few words\n"), ["shorter than one context window", "--block-size"]),
]


@pytest.mark.parametrize("make, words", BAD_DATA, ids=["missing", "directory", "empty", "binary", "utf8", "short"])
def test_bad_training_files(proj, capsys, make, words):
    path = make()
    _bad(capsys, ["train", "--data", path, "--out", "run", "--max-steps", "2", *TINY], *words)
    assert not (proj / "run").exists()


@pytest.mark.parametrize("make, words", BAD_DATA[:5], ids=["missing", "directory", "empty", "binary", "utf8"])
def test_a_bad_training_file_is_refused_before_a_run_folder_is_claimed(proj, capsys, make, words):
    path = make()
    rc, out, err = run_main(capsys, "train", "--data", path, "--max-steps", "2", *TINY)
    assert rc == 2 and all(w in err for w in words)
    assert out == "" and not (proj / "checkpoints").exists()  # no "run folder:" line for a folder never made


@pytest.mark.parametrize("flags, words", [
    (["--n-embd", "30", "--n-head", "4"], ["n_embd (30) must be divisible by n_head (4)"]),
    (["--n-layer", "0"], ["n_layer must be a positive integer"]),
    (["--batch-size", "-3"], ["batch_size must be a positive integer"]),
    (["--preset", "huge"], ["unknown preset 'huge'", "tiny"]),
    (["--n-layer", "two"], ["invalid int value"]),
    (["--lr", "-1"], ["lr must be"]),
])
def test_bad_settings(proj, capsys, flags, words):
    _bad(capsys, ["train", "--data", "train.txt", "--out", "run", *flags], *words)
    assert not (proj / "run").exists()


@pytest.fixture
def trained(proj, capsys):
    assert run_main(capsys, "train", "--data", "train.txt", "--out", "run", "--max-steps", "3", "--eval-interval",
                    "3", *TINY)[0] == 0
    return proj / "run"


def test_out_holding_a_run_needs_force(trained, capsys):
    before = folder_digest(trained)
    _bad(capsys, ["train", "--data", "train.txt", "--out", "run", "--max-steps", "2", *TINY],
         "already holds a run", "--force")
    assert folder_digest(trained) == before
    rc, _, err = run_main(capsys, "train", "--data", "train.txt", "--out", "run", "--max-steps", "2",
                          "--eval-interval", "2", "--force", *TINY)
    assert rc == 0, err
    assert load_checkpoint(trained).state["step"] == 2


def test_resume_of_a_folder_that_is_not_a_checkpoint(proj, capsys):
    os.mkdir("photos")
    _bad(capsys, ["train", "--resume", "photos"], "not a Mnemos checkpoint")
    _bad(capsys, ["train", "--resume", "nowhere"], "does not exist")


def test_truncated_and_corrupt_model_npz(trained, capsys):
    blob = (trained / "model.npz").read_bytes()
    (trained / "model.npz").write_bytes(blob[:1000])
    _bad(capsys, ["train", "--resume", "run", "--max-steps", "5"], "model.npz", "truncated or corrupt")
    _bad(capsys, ["eval", "--checkpoint", "run", "--data", "test.txt"], "truncated or corrupt")
    _bad(capsys, ["generate", "--checkpoint", "run"], "truncated or corrupt")
    assert (trained / "model.npz").read_bytes() == blob[:1000]  # nothing rewritten


def test_bad_sampling_settings(trained, capsys):
    assert "temperature" in _bad(capsys, ["generate", "--checkpoint", "run", "--temperature", "-1"])
    assert "top-p" in _bad(capsys, ["generate", "--checkpoint", "run", "--top-p", "1.5"])
    assert "--max-new-tokens" in _bad(capsys, ["generate", "--checkpoint", "run", "--max-new-tokens", "-5"])


def test_newer_format_version(trained, capsys):
    config = json.loads((trained / "config.json").read_text())
    config["format_version"] = 99
    (trained / "config.json").write_text(json.dumps(config))
    _bad(capsys, ["train", "--resume", "run", "--max-steps", "5"], "newer Mnemos", "upgrade")
    _bad(capsys, ["eval", "--checkpoint", "run", "--data", "test.txt"], "newer Mnemos")


def test_shape_change_on_resume(trained, capsys):
    _bad(capsys, ["train", "--resume", "run", "--n-embd", "32", "--max-steps", "5"], "cannot change n-embd")
    _bad(capsys, ["train", "--resume", "run", "--out", "elsewhere", "--max-steps", "5"], "--out cannot be used")


def test_disk_full_while_saving(trained, capsys, monkeypatch):
    before = folder_digest(trained)
    real = ck._write_npz

    def full(path, arrays):
        if path.name == "model.npz":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, arrays)

    monkeypatch.setattr(ck, "_write_npz", full)
    _bad(capsys, ["train", "--resume", "run", "--max-steps", "6"], "disk is full", "previous checkpoint is intact")
    assert folder_digest(trained) == before
    assert load_checkpoint(trained).state["step"] == 3


def test_data_sample_refuses_to_overwrite(proj, capsys):
    os.makedirs("data/training")
    Path("data/training/train.txt").write_text("mine")
    _bad(capsys, ["data", "sample"], "already exists", "--force")
    assert Path("data/training/train.txt").read_text() == "mine"


def test_data_sample_offline(proj, capsys, monkeypatch):
    from mnemos import sample

    fail = "import sys; sys.stderr.write('ERROR: network is unreachable'); sys.exit(1)"  # pip, offline
    monkeypatch.setattr(sample, "_pip_download_command", lambda dest: [sys.executable, "-c", fail])
    _bad(capsys, ["data", "sample"], "are you offline", "network is unreachable")
    assert not (proj / "data" / "training" / "train.txt").exists()


# --------------------------------------------------------------------------- real processes


def _mnemos(*argv, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "mnemos", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def test_process_exit_codes(proj):
    proc = _mnemos("train", "--data", "nope.txt", "--out", "run")
    out, err = proc.communicate()
    assert proc.returncode == 2 and err.count("\n") == 1 and "no such file" in err and "Traceback" not in err
    proc = _mnemos("eval", "--checkpoint", "nowhere")
    out, err = proc.communicate()
    assert proc.returncode == 2 and err.startswith("mnemos eval: error:") and err.count("\n") == 1


def test_ctrl_c_saves_and_exits_130(proj):
    proc = _mnemos("train", "--data", "train.txt", "--out", "run", "--max-steps", "100000", "--eval-interval",
                   "100000", "--json", *TINY)
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in out.splitlines()]
    saved = [e for e in events if e["event"] == "checkpoint"]
    assert saved and saved[-1]["reason"] == "interrupt"
    assert events[-1]["event"] == "done" and events[-1]["reason"] == "stopped"
    assert load_checkpoint(proj / "run").state["step"] == saved[-1]["step"] > 0


def test_a_closed_pipe_stops_training_saves_and_exits_141(proj):
    """`mnemos train --json | head`: once the reader has gone, training stops as on
    Ctrl+C (saving a checkpoint), quietly, with the exit status of a SIGPIPE'd program."""
    proc = _mnemos("train", "--data", "train.txt", "--out", "run", "--max-steps", "100000", "--eval-interval",
                   "100000", "--json", *TINY)
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            break
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert load_checkpoint(proj / "run").state["step"] > 0


def test_sigkill_while_training_leaves_a_resumable_run(proj, capsys):
    """Kill `mnemos train` (saving at every step) at a random moment: the run loads and resumes."""
    proc = _mnemos("train", "--data", "train.txt", "--out", "run", "--max-steps", "100000", "--eval-interval", "1",
                   "--json", *TINY)
    saves = 0
    for line in proc.stdout:
        saves += json.loads(line)["event"] == "checkpoint"
        if saves == 3:
            break
    time.sleep(random.Random(7).uniform(0.0, 0.2))
    proc.kill()
    proc.communicate()
    step = load_checkpoint(proj / "run").state["step"]
    assert step >= 3
    rc, out, err = run_main(capsys, "train", "--resume", "run", "--max-steps", str(step + 2), "--json")
    assert rc == 0, err
    assert [e["step"] for e in json_lines(out) if e["event"] == "step"] == [step + 1, step + 2]


@pytest.fixture
def fast_machine(monkeypatch):
    """Calibration answers at once, as a 100 GFLOP/s machine would (no steps timed)."""
    from mnemos import calibrate

    timed = []

    def timer(cfg, batch, workers, steps=calibrate.STEPS, device="cpu"):
        timed.append(workers)
        return 100e9 / calibrate.flops_per_token(cfg)

    monkeypatch.setattr(calibrate, "time_steps", timer)
    return timed


def test_preset_auto_says_why_then_trains_what_it_chose(proj, capsys, fast_machine):
    code, out, err = run_main(capsys, "train", "--preset", "auto", "--data", "train.txt", "--out", "run",
                              "--max-steps", "3", "--workers", "1", "--seed", "5", "--eval-interval", "3")
    assert code == 0, err
    auto = [line for line in out.splitlines() if line.startswith("auto: ")]
    assert len(auto) >= 9 and "5 min" in "\n".join(auto)  # no budget given: planned for five minutes
    assert any("vocabulary 256" in line for line in auto)  # 10 KB of text: bytes
    assert fast_machine == [1, 1, 1]  # the probes, with the user's worker count
    model_cfg, train_cfg, _ = ck.read_config(proj / "run")
    assert (train_cfg.max_steps, train_cfg.seed, train_cfg.workers) == (3, 5, 1)  # flags win
    assert train_cfg.time_budget == 300  # ... and it trains for them, or fewer steps if they come first
    assert (model_cfg.n_layer, model_cfg.n_embd, model_cfg.dropout) == (2, 64, 0.2)
    assert (proj / ".cache" / "calibration-v1.json").is_file()
    code, out, _ = run_main(capsys, "train", "--preset", "auto", "--data", "train.txt", "--out", "run2", "--json",
                            "--max-steps", "1", "--workers", "1", "--n-layer", "3")
    event = json.loads(out.splitlines()[0])
    assert event["event"] == "auto" and event["model"]["n_layer"] == 3 and len(fast_machine) == 3  # cached
    code, _, err = run_main(capsys, "train", "--resume", "run", "--preset", "auto")
    assert code == 2 and "new run" in err
    code, out, err = run_main(capsys, "train", "--data", "train.txt", "--out", "run3", "--time-budget", "90s",
                              "--max-steps", "1", "--workers", "1")
    assert code == 0, err
    assert "auto: 1.5 min at" in out  # a budget without a preset: auto, sized to that budget


@pytest.mark.parametrize("argv", [
    ["train", "--data", "tr\x00ain.txt", "--max-steps", "1"],
    ["train", "--data", "train.txt", "--out", "o\x00ut", "--max-steps", "1"],
    ["eval", "--checkpoint", "ru\x00n"],
    ["compare", "a", "b\x00"],
    ["export", "--checkpoint", "run", "--format", "hf", "--out", "e\x00x"],
    ["import", "--from", "h\x00f", "--out", "x"],
])
def test_a_path_with_a_nul_character_is_one_line(proj, capsys, argv):
    """No file system takes a NUL in a name; os.stat raised ValueError (a traceback)."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "holds a NUL character" in err and err.count("\n") == 1
    assert sorted(p.name for p in proj.iterdir()) == ["test.txt", "train.txt"]
