"""mnemos.compare: curves aligned by step / tokens / time, TensorBoard's smoothing against
its direct formula, the hyperparameters that differ, best validation bits per byte, the
report and text plot, and one-line errors for folders that are not runs."""

import json
import math
import re

import numpy as np
import pytest

from mnemos.checkpoint import save_checkpoint
from mnemos.compare import (CompareError, compare_runs, draw, ema, load_run, log_ticks, plot_series,
                            plot_text)
from mnemos.config import ModelConfig, TrainConfig
from mnemos.nn import GPT
from mnemos.optim import AdamW
from mnemos.tokenizer import BPETokenizer
from mnemos.trainer import Trainer

LN2 = math.log(2)


def direct_ema(y, w):
    """s_n = sum_k w^(n-k) y_k / sum_k w^(n-k) over the finite points so far."""
    out, kept = [], []
    for v in y:
        if not math.isfinite(v):
            out.append(v)
            continue
        kept.append(v)
        n = len(kept)
        weights = [w ** (n - 1 - k) for k in range(n)]
        out.append(sum(a * b for a, b in zip(weights, kept)) / sum(weights))
    return np.array(out)


def make_run(root, name, rows, state=None, n_layer=1, lr=1e-3, vocab_size=256):
    """A real run folder (tiny weights) whose metrics and state we write by hand."""
    tokenizer = BPETokenizer()
    model_cfg = ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=n_layer, n_head=2, n_embd=16, block_size=16)
    model = GPT(model_cfg, seed=0)
    train_cfg = TrainConfig(tokenizer_vocab=vocab_size, batch_size=2, max_steps=100, lr=lr)
    base = {"step": max([r["step"] for r in rows] or [0]), "best_val_loss": None, "data": "/x/train.txt"}
    path = root / name
    save_checkpoint(path, model, tokenizer, model_cfg, train_cfg, AdamW(model.params), {**base, **(state or {})},
                    metrics=rows)
    return path


def step(s, loss, tokens=None, t=None):
    return {"event": "step", "step": s, "loss": loss, "tokens_seen": s * 64 if tokens is None else tokens,
            "elapsed_s": s * 0.5 if t is None else t}


def evaluation(s, val, t=None):
    return {"event": "eval", "step": s, "train_loss": val, "val_loss": val, "elapsed_s": s * 0.5 if t is None else t}


@pytest.mark.parametrize("w", [0.0, 0.3, 0.6, 0.95, 0.999])
def test_ema_is_tensorboards_debiased_average(w):
    y = np.random.default_rng(1).normal(3.0, 1.0, 60)
    y[[5, 17]] = [np.nan, np.inf]
    got = ema(y, w)
    want = direct_ema(y.tolist(), w)
    assert np.isnan(got[5]) and got[17] == np.inf
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12)
    assert got[0] == y[0]  # debiased: the first point is not pulled towards zero


def test_ema_leaves_its_input_alone_and_refuses_bad_weights():
    y = np.array([3.0, 2.0, 1.0])
    ema(y, 0.9)
    assert y.tolist() == [3.0, 2.0, 1.0]
    for bad in (1.0, -0.1, float("nan"), "0.5"):
        with pytest.raises(CompareError, match="smoothing"):
            ema(y, bad)


def test_curves_by_step_tokens_and_time(tmp_path):
    # resumed at step 20 with a doubled batch: 64 tokens a step, then 128
    rows = [evaluation(0, 5.6), *(step(s, 5.0 - s / 10) for s in range(1, 21)), evaluation(20, 3.5, t=11.0),
            *(step(s, 3.0, tokens=1280 + (s - 20) * 128) for s in range(21, 41)), evaluation(40, 2.9, t=21.0)]
    rows.append({"event": "sample", "step": 40, "prompt": "\n", "text": "x", "val_loss": 2.9})
    run = load_run(make_run(tmp_path, "a", rows, {"tokens_seen": 3840, "elapsed_s": 21.0}))
    assert run.train.step.tolist() == list(range(1, 41))
    assert run.val.step.tolist() == [0, 20, 40]
    assert run.val.x("tokens").tolist() == [0, 1280, 3840]
    assert run.val.x("time").tolist() == [0.0, 11.0, 21.0]
    assert run.train.x("tokens")[-1] == 3840 and run.train.x("time")[0] == 0.5
    assert (run.best_val_loss, run.best_val_step) == (2.9, 40)
    assert run.tokens_seen == 3840 and run.last_train_loss == 3.0
    with pytest.raises(CompareError, match="x axis"):
        run.train.x("epochs")


def test_differing_hyperparameters_and_best_bits_per_byte(tmp_path):
    a = make_run(tmp_path, "a", [step(1, 3.0), evaluation(0, 1.0), evaluation(1, 2.0)])  # byte level
    b = make_run(tmp_path, "b", [step(1, 3.0), evaluation(1, 2.0)], {"val_bytes_per_token": 2.5},
                 n_layer=2, lr=3e-4, vocab_size=512)
    c = make_run(tmp_path, "c", [step(1, 3.0), evaluation(1, 2.0)], vocab_size=512)  # saved before the ratio
    comp = compare_runs([a, b, c])
    assert comp.differing == {"n_layer": [1, 2, 1], "vocab_size": [256, 512, 512], "lr": [1e-3, 3e-4, 1e-3]}
    assert comp.same["n_embd"] == 16 and "vocab_size" not in comp.same
    ra, rb, rc = comp.runs
    assert ra.best_val_loss == 2.0  # the step-0 baseline is not a training result
    assert ra.best_val_bpb == pytest.approx(2.0 / LN2)
    assert rb.best_val_bpb == pytest.approx(2.0 / LN2 / 2.5)
    assert rc.best_val_bpb is None and "unknown" in rc.bpb_note
    text = comp.to_text()
    assert "best val bpb" in text and f"{2 / LN2:.4f}" in text and "c: bits per byte unknown" in text
    data = json.loads(json.dumps(comp.to_dict()))
    assert data["runs"][1]["best_val_bpb"] == pytest.approx(0.8 / LN2)
    assert data["differing"]["lr"] == [1e-3, 3e-4, 1e-3]


def test_same_folder_names_are_told_apart(tmp_path):
    a = make_run(tmp_path / "x", "run", [step(1, 3.0)])
    b = make_run(tmp_path / "y", "run", [step(1, 2.0)])
    assert [r.name for r in compare_runs([a, b]).runs] == ["x/run", "y/run"]


def test_folders_that_are_not_runs_are_one_line_errors(tmp_path):
    good = make_run(tmp_path, "good", [step(1, 3.0)])
    (tmp_path / "file.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    bad_config = make_run(tmp_path, "badcfg", [step(1, 3.0)])
    (bad_config / "config.json").write_text("{not json")
    no_metrics = make_run(tmp_path, "nometrics", [])
    cases = {tmp_path / "missing": "does not exist", tmp_path / "file.txt": "is a file",
             tmp_path / "empty": "not a Mnemos checkpoint", bad_config: "corrupt", no_metrics: "no logged steps"}
    for path, words in cases.items():
        with pytest.raises(CompareError, match=words) as err:
            compare_runs([good, path])
        assert "\n" not in str(err.value)
    with pytest.raises(CompareError, match="given twice"):
        compare_runs([good, tmp_path / "." / "good"])
    with pytest.raises(CompareError, match="at least one"):
        compare_runs([])


def test_a_metrics_file_cut_by_a_crash_keeps_its_good_rows(tmp_path):
    path = make_run(tmp_path, "a", [step(1, 3.0), step(2, 2.5)])
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"event": "step", "step": 3, "lo')
    (path / "state.json").unlink()
    run = load_run(path)
    assert run.train.step.tolist() == [1, 2] and run.step == 2


def test_plot_series_and_text_plot(tmp_path):
    rows = [*(step(s, 4.0 * 0.97 ** s) for s in range(1, 301)), *(evaluation(s, 4.0 * 0.97 ** s) for s in (0, 150, 300))]
    a = make_run(tmp_path, "alpha", rows)
    b = make_run(tmp_path, "beta", [step(s, 3.0) for s in range(1, 11)], lr=1e-2)
    comp = compare_runs([a, b])
    series = plot_series(comp, "tokens", smoothing=0.6, points=50)
    kinds = [(s.run, s.kind) for s in series]
    assert kinds == [(0, "train raw"), (0, "train"), (0, "val"), (1, "train raw"), (1, "train")]
    assert all(len(s.x) <= 50 for s in series) and series[2].x.tolist() == [0, 150 * 64, 300 * 64]
    assert plot_series(comp, smoothing=0)[0].kind == "train"  # unsmoothed: one train line
    before = [s.y.copy() for s in series]
    text = plot_text(comp, "step", 0.6, width=80, height=20)
    assert "\x1b[" not in text and "alpha train" in text and "beta val" not in text
    assert len(text.splitlines()) == 20
    assert all(np.array_equal(s.y, b) for s, b in zip(series, before))
    report = comp.to_markdown("step", 0.6, plot=text)
    assert report.startswith("# Comparison of 2 runs") and "| lr | 0.001 | 0.01 |" in report
    assert "```text" in report and "alpha train" in report


class FakePlot:
    """Records what draw() asks of plotext, and builds twice like a repainting widget."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a, k))


def test_draw_takes_the_log_itself_so_repaints_cannot_take_it_twice(tmp_path):
    import plotext

    a = make_run(tmp_path, "a", [step(s, 10.0 / s) for s in range(1, 101)])
    comp = compare_runs([a])
    fake = FakePlot()
    draw(fake, plot_series(comp, smoothing=0), "step", log_y=True)
    (x, y), = [c[1] for c in fake.calls if c[0] == "plot"]
    assert y[0] == pytest.approx(1.0) and y[-1] == pytest.approx(-1.0)  # log10 of 10 .. 0.1
    ticks, labels = [c[1] for c in fake.calls if c[0] == "yticks"][0]
    assert labels == ["0.1", "0.5", "2", "10"] and ticks[0] == pytest.approx(-1)
    assert not [c for c in fake.calls if c[0] == "yscale"]
    draw(plotext, plot_series(comp, smoothing=0), "step", log_y=True)
    plotext.plotsize(60, 15)
    assert plotext.build() == plotext.build()  # a second build (a repaint) draws the same


def test_log_ticks():
    assert log_ticks(0.9, 1.1) == pytest.approx(np.geomspace(0.9, 1.1, 4).tolist())
    assert log_ticks(1.5, 60) == [2, 5, 10, 20, 50]
    assert len(log_ticks(1e-3, 1e6)) <= 6


def test_the_trainer_records_the_validation_bytes_per_token(tmp_path):
    words = "the king is dead long live the queen and all her men ride to the sea".split()
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(words, 8)) + "." for _ in range(200)) + "\n"
    data = tmp_path / "train.txt"
    data.write_text(text)
    model_cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)
    train_cfg = TrainConfig(tokenizer_vocab=300, batch_size=2, max_steps=2, eval_interval=2, eval_steps=1,
                            sample_tokens=0, workers=1)
    trainer = Trainer.new(model_cfg, train_cfg, data, out_dir=tmp_path / "run")
    trainer.run()
    val = np.asarray(trainer.val_tokens)
    want = len(trainer.tokenizer.decode_bytes(val.tolist())) / len(val)
    assert want > 1.5  # BPE: several bytes per token
    run = load_run(tmp_path / "run")
    assert run.bytes_per_token == pytest.approx(want)
    assert run.best_val_bpb == pytest.approx(run.best_val_loss / LN2 / want)
    assert re.search("validation tokens", run.bpb_note)


def test_cli_prints_the_table_json_report_and_plot(tmp_path, capsys):
    from mnemos.cli import main

    a = make_run(tmp_path, "a", [step(1, 3.0), step(2, 2.0), evaluation(2, 2.2)])
    b = make_run(tmp_path, "b", [step(1, 3.0), step(2, 2.5), evaluation(2, 2.4)], lr=3e-4)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["a", "b"]
    assert out[1].split() == ["best", "val", "bpb", f"{2.2 / LN2:.4f}", f"{2.4 / LN2:.4f}"]
    assert out[-1].split() == ["lr", "0.001", "0.0003"]
    assert main(["compare", str(a), str(b), "--json", "--x", "time", "--smooth", "0",
                 "--report", str(tmp_path / "c.md"), "--plot", str(tmp_path / "c.txt")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["best_val_loss"] for r in data["runs"]] == [2.2, 2.4] and data["report"] == str(tmp_path / "c.md")
    assert "wall time (s)" in (tmp_path / "c.txt").read_text()
    assert (tmp_path / "c.md").read_text().startswith("# Comparison of 2 runs")


@pytest.mark.parametrize("extra, words", [
    (["--smooth", "1"], "smoothing must be"),
    (["--smooth", "nan"], "--smooth must be a finite number"),
    (["--x", "epochs"], "invalid choice"),
    (["--report", "."], "is a folder"),
    (["--plot", "no/such/dir/p.txt"], "does not exist"),
    (["missing"], "does not exist"),
    (["loop1"], "is a loop of symbolic links"),
    (["--report", "a/metrics.jsonl"], "is inside the run"),
    (["--plot", "a/notes.txt"], "choose a --plot outside"),
    (["--report", "train.txt"], "exists and is not an earlier comparison"),
    (["--report", "x.md", "--plot", "./x.md"], "name the same file"),
])
def test_cli_refuses_hostile_input_in_one_line(tmp_path, capsys, monkeypatch, extra, words):
    from mnemos.cli import main

    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path, "a", [step(1, 3.0)])
    (tmp_path / "train.txt").write_text("the user's text")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    files = {p: p.read_bytes() for p in [*run.rglob("*"), tmp_path / "train.txt"] if p.is_file()}
    assert main(["compare", "a", *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("*.md")) and not (run / "notes.txt").exists()
    assert {p: p.read_bytes() for p in files} == files  # nothing of the user's replaced


def test_cli_replaces_its_own_earlier_report_and_plot(tmp_path, capsys):
    from mnemos.cli import main

    a = make_run(tmp_path, "a", [step(1, 3.0), evaluation(1, 2.9)])
    outputs = ["--report", str(tmp_path / "c.md"), "--plot", str(tmp_path / "c.txt")]
    (tmp_path / "c.md").write_text("old")
    assert main(["compare", str(a), *outputs]) == 2  # not a report: kept
    assert (tmp_path / "c.md").read_text() == "old"
    (tmp_path / "c.md").unlink()
    assert main(["compare", str(a), *outputs]) == 0
    assert main(["compare", str(a), *outputs, "--x", "time"]) == 0
    assert "wall time (s)" in (tmp_path / "c.txt").read_text() and "wall time" in (tmp_path / "c.md").read_text()
