"""The unclear messages, silent acceptances and tracebacks of issue 13 #6-#9, each now
one clear line (or a warning that keeps the result)."""

import json
import os
import warnings

import numpy as np
import pytest

from mnemos import divergence
from mnemos.cli import main
from mnemos.data import read_text
from mnemos.divergence import DivergenceWatch
from mnemos.errors import DataError, MnemosError

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-steps", "1", "--warmup-steps", "2", "--vocab-size", "256", "--seed", "3", "--workers", "1",
        "--sample-tokens", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride to the sea".split()
    (root / "train.txt").write_text("\n".join(" ".join(rng.choice(words, 9)) for _ in range(200)))
    assert main(["train", "--data", str(root / "train.txt"), "--out", str(root / "run"), "--max-steps", "2",
                 "--eval-interval", "2", "--json", *TINY]) == 0
    return root


def one_line(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, (rc, err)
    return out, err


def test_eval_prints_the_numbers_when_the_report_cannot_be_saved(trained, capsys, monkeypatch):
    """A read-only or full run folder: the scores are printed, the report is a warning."""
    import mnemos.evaluate as evaluate

    def refuse(dir, report):
        raise MnemosError(f"could not save the report in {dir} (Read-only file system); check the folder")

    monkeypatch.setattr(evaluate, "save_report", refuse)
    for json_mode in (False, True):
        rc = main(["eval", "--checkpoint", str(trained / "run"), "--data", str(trained / "train.txt")]
                  + ["--json"] * json_mode)
        out, err = capsys.readouterr()
        assert rc == 0 and err.startswith("mnemos eval: warning: could not save the report") and err.count("\n") == 1
        if json_mode:
            report = json.loads(out)
            assert report["report"] is None and report["loss"] > 0
        else:
            assert "perplexity" in out and "not saved" in out


def test_export_where_it_cannot_write_is_one_line(trained, capsys):
    (trained / "a-file").write_text("x")
    _, err = one_line(capsys, "export", "--checkpoint", str(trained / "run"), "--format", "hf",
                      "--out", str(trained / "a-file" / "export"))
    assert "could not write the export" in err


@pytest.mark.parametrize("argv, words", [
    (["generate", "--seed", "-1"], "seed must be an integer >= 0, got -1"),
    (["generate", "--temperature", "inf"], "--temperature must be a finite number, got inf"),
    (["generate", "--top-p", "nan"], "--top-p must be a finite number, got nan"),
    (["inspect", "--top", "0"], "--top must be at least 1"),
    (["inspect", "--temperature=-inf"], "--temperature must be a finite number"),
    (["generate", "--prompt", "ab\udcffcd"], "--prompt is not valid UTF-8 text (U+DCFF"),
    (["inspect", "--prompt", "\udcc3("], "--prompt is not valid UTF-8 text"),
])
def test_bad_sampling_and_view_values_are_one_line(trained, capsys, argv, words):
    out, err = one_line(capsys, argv[0], "--checkpoint", str(trained / "run"), *argv[1:])
    assert words in err and out == ""  # nothing echoed before the error


def test_train_refuses_an_invalid_utf8_sample_prompt_up_front(trained, capsys):
    _, err = one_line(capsys, "train", "--data", str(trained / "train.txt"), "--out", str(trained / "x"),
                      "--sample-prompt", "\udcff")
    assert "--sample-prompt is not valid UTF-8" in err and not (trained / "x").exists()


@pytest.mark.parametrize("encode, name", [
    (lambda t: t.encode("utf-16"), "UTF-16"), (lambda t: t.encode("utf-16-le"), "UTF-16LE"),
    (lambda t: t.encode("utf-16-be"), "UTF-16BE"), (lambda t: t.encode("utf-32"), "UTF-32"),
])
def test_utf16_and_utf32_files_are_named_with_how_to_convert(tmp_path, encode, name):
    path = tmp_path / "notes.txt"
    path.write_bytes(encode("Once upon a time, in a land far away.\n" * 20))
    with pytest.raises(DataError, match=rf"notes.txt is {name} text, not UTF-8; convert it with `iconv -f {name} "
                                        rf"-t UTF-8 .*notes.txt > notes-utf8.txt`"):
        read_text(path)


def test_symlink_loops_and_dangling_links_say_so(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(DataError, match="is a loop of symbolic links"):
        read_text(tmp_path / "a")
    (tmp_path / "c").symlink_to(tmp_path / "gone.txt")
    with pytest.raises(DataError, match=r"is a symbolic link to .*gone.txt, which does not exist"):
        read_text(tmp_path / "c")


def test_a_loop_of_links_as_a_run_or_an_output_folder_is_one_line_before_any_work(trained, capsys):
    """Found trying --out on a link loop: it trained, then failed at the first save with "Not a
    directory ... free some space". Now every command that reads a run or writes a folder says
    what the path is, at once."""
    loop = trained / "loop"
    if not os.path.lexists(loop):
        loop.symlink_to(loop)
    run, text = str(trained / "run"), str(trained / "train.txt")
    for argv in (["train", "--data", text, "--out", str(loop), "--max-steps", "2", *TINY],
                 ["train", "--data", text, "--out", str(loop / "sub"), "--max-steps", "2", *TINY],
                 ["train", "--resume", str(loop)],
                 ["export", "--checkpoint", run, "--format", "hf", "--out", str(loop)],
                 ["import", "--from", run, "--out", str(loop)],
                 ["generate", "--checkpoint", str(loop), "--max-new-tokens", "2"],
                 ["eval", "--checkpoint", str(loop), "--data", text],
                 ["compare", run, str(loop)]):
        out, err = one_line(capsys, *argv)
        assert "is a loop of symbolic links" in err, argv
        assert "step" not in out  # nothing was trained first
    assert not (trained / "sub").exists()


def test_divergence_is_reported_once_and_a_recovering_spike_is_not():
    watch = DivergenceWatch()
    losses = [5.7, 5.5, 5.0, 4.0, 3.0] + [2.5] * 40
    losses[20:25] = [9.0] * 5  # a spike that comes back down
    assert [watch.update(i, x, 1e-3) for i, x in enumerate(losses)] == [None] * len(losses)
    assert watch.diverged is None
    messages = [watch.update(100 + i, 40.0, 10.0) for i in range(30)]
    found = [m for m in messages if m]
    assert len(found) == 1 and "diverged" in found[0] and "--lr (now 10)" in found[0]
    assert watch.diverged == found[0]


def test_a_spike_that_does_not_recover_below_the_start_is_divergence():
    watch = DivergenceWatch()
    for i in range(200):
        watch.update(i, 6.0 - 4.0 * min(i, 40) / 40, 1e-3)  # learns down to 2.0, stays there
    assert watch.diverged is None
    for i in range(divergence.SPIKE_STEPS + 30):
        watch.update(50 + i, 5.0, 1e-3)  # back up to 5.0 (< 1.5 x the start) and stays
    assert watch.diverged and "it had come down to 2.0" in watch.diverged


def test_a_diverging_run_warns_in_an_event_and_the_final_line_and_saves_no_best(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "t.txt").write_text("".join(rng.choice(list("abcdefgh \n"), 4000)))
    rc = main(["train", "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "run"), "--max-steps", "30",
               "--eval-interval", "10", "--lr", "10", "--min-lr", "1", *TINY[:-8], "--workers", "1",
               "--sample-tokens", "0", "--vocab-size", "256", "--json"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    warnings = [e for e in events if e["event"] == "warning"]
    assert rc == 0 and len(warnings) == 1 and "diverged" in warnings[0]["message"]
    assert events[-1]["event"] == "done" and events[-1]["warning"] == warnings[0]["message"]
    assert not any(e["is_best"] for e in events if e["event"] == "eval" and e["step"] > warnings[0]["step"])
    assert not (tmp_path / "run" / "best").exists()


def test_a_run_whose_loss_turns_nan_keeps_its_last_good_checkpoint_and_prints_no_numpy_warnings(tmp_path, capsys):
    """Found by tests/test_fuzz.py: --lr 1e20 overflowed in the first step; NumPy printed its
    RuntimeWarnings, and the next evaluation saved the useless weights as the checkpoint that
    the error then called "the last good" one."""
    rng = np.random.default_rng(1)
    (tmp_path / "t.txt").write_text("".join(rng.choice(list("abcdefgh \n"), 4000)))
    run = tmp_path / "run"
    base = ["train", "--data", str(tmp_path / "t.txt"), "--out", str(run), *TINY[:-8], "--workers", "1",
            "--sample-tokens", "0", "--vocab-size", "256", "--eval-interval", "2"]
    assert main([*base, "--max-steps", "4", "--lr", "1e-3"]) == 0  # a good run, saved at step 4
    good = (run / "model.npz").read_bytes()
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from NumPy would fail the run
        main(["train", "--resume", str(run), "--max-steps", "12", "--lr", "1e20", "--min-lr", "1e20",
              "--eval-interval", "1"])
    out, err = capsys.readouterr()
    assert f"not saved at step 5: the validation loss is nan; {run} keeps step 4" in out
    assert f"the last good checkpoint is {run} (step 4)" in err and "Warning" not in out + err
    assert (run / "model.npz").read_bytes() == good


@pytest.mark.parametrize("argv, words", [
    (["eval", "--checkpoint=--"], "--checkpoint needs a value, got '--'"),
    (["generate", "--checkpoint", "run", "--seed=--"], "--seed needs a value"),
    (["eval", "--checkpoint", "no\nsuch\x85run\x0c"], "no\\nsuch\\x85run\\x0c"),
    (["train", "--n-layer", "x\ny"], "invalid int value: 'x\\ny'"),
])
def test_values_argparse_mangles_or_that_break_lines_are_still_one_line(trained, capsys, monkeypatch, argv, words):
    """Found by tests/test_fuzz.py: `--flag=--` reached the engine as a list (a traceback),
    and a file name holding a line break split the error over several lines."""
    monkeypatch.chdir(trained)
    _, err = one_line(capsys, *argv)
    assert words in err and len(err.splitlines()) == 1


def test_more_workers_than_cores_says_so(trained, capsys, monkeypatch):
    import mnemos.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod.os, "cpu_count", lambda: 1)
    rc = main(["train", "--data", str(trained / "train.txt"), "--out", str(trained / "w"), *TINY, "--workers", "2",
               "--max-steps", "1", "--eval-interval", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "starting 2 data-parallel worker processes (more than the 1 CPU cores here" in out


def test_running_out_of_memory_past_the_estimates_is_one_line(trained, capsys, monkeypatch):
    import mnemos.evaluate as evaluate

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", exhausted)
    _, err = one_line(capsys, "eval", "--checkpoint", str(trained / "run"), "--data", str(trained / "train.txt"))
    assert "out of memory; try smaller settings" in err


def test_export_into_a_folder_named_with_undecodable_bytes(trained, capsys, monkeypatch):
    """Found by tests/test_fuzz.py: the model card quoting the path failed to encode."""
    monkeypatch.chdir(trained)
    assert main(["export", "--checkpoint", "run", "--format", "hf", "--out", "hf-\udcff"]) == 0, capsys.readouterr()
    assert (trained / os.fsdecode(b"hf-\xff") / "README.md").is_file()


def test_nothing_is_written_inside_a_run_folder(trained, capsys):
    """`--out RUN/best --force` replaced RUN's best checkpoint with an unrelated model (exit 0);
    a new run, an import or an export anywhere inside a run folder is refused, RUN untouched."""
    run = trained / "run"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    hf = trained / "hf-out"
    assert main(["export", "--checkpoint", str(run), "--format", "hf", "--out", str(hf)]) == 0
    capsys.readouterr()
    for argv in (["train", "--data", str(trained / "train.txt"), "--out", str(run / "best"), "--force",
                  "--max-steps", "1", *TINY],
                 ["train", "--init-from", str(run), "--data", str(trained / "train.txt"), "--out",
                  str(run / "best" / "x"), "--max-steps", "1"],
                 ["import", "--from", str(hf), "--out", str(run / "imported")],
                 ["export", "--checkpoint", str(run), "--format", "hf", "--out", str(run / "best")]):
        _, err = one_line(capsys, *argv)
        assert f"is inside the run in {run.resolve()}" in err and "choose an --out outside" in err, err
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("flag, value, words", [("--weight-decay", "-inf", "--weight-decay must be a finite number"),
                                                ("--lr", "-NaN", "--lr must be a finite number"),
                                                ("--time-budget", "-5m", "time budget must be more than 0")])
def test_negative_values_reach_their_check_not_argparse(trained, capsys, flag, value, words):
    """argparse read `-inf` after a flag as an unknown option: "expected one argument"."""
    _, err = one_line(capsys, "train", "--data", str(trained / "train.txt"), "--out", str(trained / "neg"),
                      flag, value)
    assert words in err and "expected one argument" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
@pytest.mark.parametrize("name", ["metrics.jsonl", "state.json", "model.npz", "tokenizer.json"])
def test_a_pipe_in_a_run_folder_is_one_line_not_a_hang(trained, capsys, name):
    """A FIFO in place of a run's file blocked `open()` forever (TERM did not end it)."""
    import shutil

    run = trained / f"fifo-{name}"
    shutil.copytree(trained / "run", run)
    (run / name).unlink()
    os.mkfifo(run / name)
    argv = (["compare", str(run), str(trained / "run")] if name == "metrics.jsonl"
            else ["generate", "--checkpoint", str(run), "--prompt", "the", "--max-new-tokens", "1"])
    _, err = one_line(capsys, *argv)
    assert "not a regular file" in err or "cannot be read" in err
