"""Comparing runs: their loss curves side by side, the hyperparameters that differ, and
each run's best validation bits per byte.

Reads only ``config.json``, ``state.json`` and ``metrics.jsonl`` of each run folder (no
weights, nothing unpickled). A run folder that is missing, not a run, or whose
``config.json`` is corrupt raises a one-line :class:`CompareError`; a ``metrics.jsonl``
cut short by a crash loses only its unreadable lines.

**Curves.** Train loss at every logged step, validation loss at every evaluation, each
against one of three x axes: ``step``, ``tokens`` (tokens seen) or ``time`` (training
wall time in seconds, pauses excluded, continued across resumes). Evaluation rows carry
no token count, so theirs is read off the run's own step rows (exact even when a resumed
run changed its batch size).

**Smoothing** is TensorBoard's: an exponential moving average debiased as in Adam,
``s_n = (1 - w) * sum_k w^(n-k) y_k / (1 - w^(n+1))`` -- the weighted mean of the points
so far with weights ``w^(n-k)``, so the first points are not pulled towards zero.
Non-finite points are kept as they are and skipped by the average. Smoothing applies to
the train curve; validation points (few, and each already a mean over many batches) are
drawn as measured.

**Bits per byte.** Validation loss is in nats per token, which depends on the tokenizer;
bits per byte does not: ``bpb = loss / ln 2 / (bytes per token)``. The bytes per token
are the validation tokens' own (``val_bytes_per_token`` in ``state.json``, recorded by
the trainer); a byte-level run has exactly one byte per token. For a BPE run saved
before that was recorded the ratio is unknown, and the comparison says so instead of
guessing (its best validation loss is still shown, in nats per token).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mnemos.budget import format_duration as duration
from mnemos.errors import CheckpointError, CompareError
from mnemos.fileio import read_jsonl, why_missing

AXES = {"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}
DEFAULT_SMOOTHING = 0.6  # TensorBoard's default
LN2 = math.log(2.0)
MAX_RUNS = 12  # (as many as the text plot has markers) a plot with more curves than this is unreadable


# --------------------------------------------------------------------------- numbers


def ema(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average of ``values`` (``weight`` in
    [0, 1): 0 leaves them as they are). Non-finite values pass through unchanged and do
    not enter the average."""
    check_smoothing(weight)
    y = np.asarray(values, dtype=np.float64)
    out = y.copy()
    last, count = 0.0, 0
    for i, v in enumerate(y):  # a recurrence: each point needs the previous average
        if not math.isfinite(v):
            continue
        last = last * weight + (1.0 - weight) * v
        count += 1
        out[i] = last / (1.0 - weight ** count)
    return out


def check_smoothing(weight: float) -> None:
    if not isinstance(weight, (int, float)) or not 0.0 <= weight < 1.0:
        raise CompareError(f"smoothing must be a number from 0 (none) to below 1, got {weight!r}")


def bin_means(steps: np.ndarray, values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive points into at most ``bins`` points (x and y alike), so a
    plot costs the same at step 100 and at step 100,000."""
    n = len(steps)
    if n <= bins:
        return steps, values
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    counts = np.diff(edges)
    sums_x = np.add.reduceat(steps, edges[:-1])
    sums_y = np.add.reduceat(values, edges[:-1])
    return sums_x / counts, sums_y / counts


# --------------------------------------------------------------------------- one run


@dataclass
class Curve:
    """One loss curve: the value at each point with its step, tokens seen and time."""

    step: np.ndarray
    tokens: np.ndarray
    time: np.ndarray
    value: np.ndarray

    def x(self, axis: str) -> np.ndarray:
        check_axis(axis)
        return {"step": self.step, "tokens": self.tokens, "time": self.time}[axis]

    def __len__(self) -> int:
        return len(self.value)


def check_axis(axis: str) -> None:
    if axis not in AXES:
        raise CompareError(f"the x axis must be one of {', '.join(AXES)}, got {axis!r}")


@dataclass
class Run:
    """What a comparison needs of one run folder."""

    name: str
    path: str
    hparams: dict  # model and train config (train's vocab_size: the tokenizer target), plus "data"
    train: Curve
    val: Curve
    step: int
    tokens_seen: int
    elapsed_s: float
    bytes_per_token: float | None
    bpb_note: str  # where bytes_per_token came from, or why it is unknown

    @property
    def best_index(self) -> int | None:
        """Index of the lowest finite validation loss after step 0 (the step-0 baseline
        is not a result of training), or None."""
        ok = np.flatnonzero(np.isfinite(self.val.value) & (self.val.step > 0))
        return None if not len(ok) else int(ok[np.argmin(self.val.value[ok])])

    @property
    def best_val_loss(self) -> float | None:
        i = self.best_index
        return None if i is None else float(self.val.value[i])

    @property
    def best_val_step(self) -> int | None:
        i = self.best_index
        return None if i is None else int(self.val.step[i])

    @property
    def best_val_bpb(self) -> float | None:
        loss = self.best_val_loss
        if loss is None or self.bytes_per_token is None:
            return None
        return loss / LN2 / self.bytes_per_token

    @property
    def last_train_loss(self) -> float | None:
        finite = self.train.value[np.isfinite(self.train.value)]
        return float(finite[-1]) if len(finite) else None

    def summary(self) -> dict:
        return {"name": self.name, "path": self.path, "step": self.step, "tokens_seen": self.tokens_seen,
                "elapsed_s": self.elapsed_s, "last_train_loss": self.last_train_loss,
                "best_val_loss": self.best_val_loss, "best_val_step": self.best_val_step,
                "best_val_bpb": self.best_val_bpb, "bytes_per_token": self.bytes_per_token,
                "bpb_note": self.bpb_note}


def _number(row: dict, key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _curves(rows: list[dict]) -> tuple[Curve, Curve]:
    """The train and validation curves of ``metrics.jsonl``'s rows, by step (a later row
    for the same step wins)."""
    steps = {int(r["step"]): r for r in rows if r.get("event") == "step" and isinstance(r.get("step"), int)}
    evals = {int(r["step"]): r for r in rows if r.get("event") == "eval" and isinstance(r.get("step"), int)}
    s = np.array(sorted(steps), dtype=np.int64)
    train = Curve(s, np.array([_number(steps[k], "tokens_seen") for k in s]),
                  np.array([_number(steps[k], "elapsed_s") for k in s]),
                  np.array([_number(steps[k], "loss") for k in s]))
    e = np.array(sorted(evals), dtype=np.int64)
    known = np.isfinite(train.tokens)
    # tokens seen at an evaluation: read off the step rows (step 0 has seen none)
    xs = np.concatenate([[0], train.step[known]]).astype(np.float64)
    ys = np.concatenate([[0], train.tokens[known]])
    tokens = np.interp(e, xs, ys) if len(e) else np.zeros(0)
    val = Curve(e, tokens, np.array([_number(evals[k], "elapsed_s") for k in e]),
                np.array([_number(evals[k], "val_loss") for k in e]))
    return train, val


def _bytes_per_token(state: dict, train_cfg: dict) -> tuple[float | None, str]:
    recorded = state.get("val_bytes_per_token")
    if isinstance(recorded, (int, float)) and recorded > 0:
        return float(recorded), "the validation tokens' own bytes per token"
    if train_cfg.get("vocab_size") == 256:
        return 1.0, "byte level: one byte per token"
    return None, ("bits per byte unknown: the run was saved before Mnemos recorded its validation bytes "
                  "per token (val loss in nats/token shown)")


def load_run(path: str | Path, name: str | None = None) -> Run:
    """One run folder's configs, state and curves (``CompareError``, one line, if it is
    not a run)."""
    from mnemos.checkpoint import read_config, read_state

    run = Path(path)
    if not run.exists():
        raise CompareError(f"{run} {why_missing(run)}; pass run folders (see `mnemos list`)")
    if not run.is_dir():
        raise CompareError(f"{run} is a file, not a run folder; pass run folders (see `mnemos list`)")
    try:
        model_cfg, train_cfg, _ = read_config(run)
    except CheckpointError as exc:
        raise CompareError(str(exc)) from None
    try:
        state = read_state(run)
    except CheckpointError:
        state = {}  # a run without its state still has curves
    rows = read_jsonl(run / "metrics.jsonl")
    train, val = _curves(rows)
    if not len(train) and not len(val):
        raise CompareError(f"{run} has no logged steps (its metrics.jsonl is missing, empty or holds no step or eval rows); train it first")
    train_dict = {("vocab_size" if k == "tokenizer_vocab" else k): v  # named as its flag, --vocab-size
                  for k, v in train_cfg.to_dict().items()}
    hparams = {**{k: v for k, v in model_cfg.to_dict().items() if k != "vocab_size"}, **train_dict,
               "data": Path(state["data"]).name if isinstance(state.get("data"), str) else None}
    bpt, note = _bytes_per_token(state, train_dict)
    last = lambda c, default: float(c[np.isfinite(c)][-1]) if np.isfinite(c).any() else default
    return Run(name=name or run.name, path=str(run), hparams=hparams, train=train, val=val,
               step=int(state.get("step", train.step[-1] if len(train) else 0)),
               tokens_seen=int(state.get("tokens_seen", last(train.tokens, 0))),
               elapsed_s=float(state.get("elapsed_s", last(train.time, 0.0))),
               bytes_per_token=bpt, bpb_note=note)


# --------------------------------------------------------------------------- several runs


def _names(paths: list[Path]) -> list[str]:
    """Folder names, with as many parent folders as it takes to tell them apart."""
    depth = 1
    while True:
        names = ["/".join(Path(os.path.realpath(p)).parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > 64:
            return names
        depth += 1


@dataclass
class Comparison:
    """Several runs, the hyperparameters that differ between them and those that do not."""

    runs: list[Run]
    differing: dict = field(default_factory=dict)  # name -> one value per run (None: not set)
    same: dict = field(default_factory=dict)  # name -> the common value

    def to_dict(self) -> dict:
        return {"runs": [r.summary() for r in self.runs], "differing": self.differing, "same": self.same}

    def table(self) -> list[list[str]]:
        """Rows of the summary table (the first row names the columns: one per run)."""
        rows = [["", *(r.name for r in self.runs)],
                ["best val bpb", *(_fmt(r.best_val_bpb, ".4f") for r in self.runs)],
                ["best val loss", *(_fmt(r.best_val_loss, ".4f") for r in self.runs)],
                ["at step", *(_fmt(r.best_val_step, ",d") for r in self.runs)],
                ["last train loss", *(_fmt(r.last_train_loss, ".4f") for r in self.runs)],
                ["steps", *(f"{r.step:,}" for r in self.runs)],
                ["tokens seen", *(f"{r.tokens_seen:,}" for r in self.runs)],
                ["time", *(duration(r.elapsed_s) for r in self.runs)]]
        rows += [[name, *(_fmt(v) for v in values)] for name, values in self.differing.items()]
        return rows

    def notes(self) -> list[str]:
        return [f"{r.name}: {r.bpb_note}" for r in self.runs if r.bytes_per_token is None]

    def to_text(self) -> str:
        """The summary table as aligned plain text (what ``mnemos compare`` prints)."""
        rows = self.table()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                 for row in rows]
        if not self.differing:
            lines.append("(the runs share every hyperparameter)")
        return "\n".join(lines + self.notes())

    def to_markdown(self, axis: str = "step", smoothing: float = DEFAULT_SMOOTHING, plot: str | None = None) -> str:
        """The comparison as a Markdown report: the summary, the differing and shared
        hyperparameters, the curves as a text plot (``plot``, e.g. from ``plot_text``)."""
        rows = self.table()
        header, body = rows[0], rows[1:]
        when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        lines = [f"# Comparison of {len(self.runs)} runs", "",
                 *(f"- `{r.name}`: `{r.path}`" for r in self.runs),
                 f"- When: {when}", "",
                 "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
                 *("| " + " | ".join(_md(c) for c in row) + " |" for row in body), ""]
        if not self.differing:
            lines += ["The runs share every hyperparameter.", ""]
        if self.same:
            lines += ["Shared: " + ", ".join(f"{k} {_md(_fmt(v))}" for k, v in self.same.items()) + ".", ""]
        lines += [f"Bits per byte = best validation loss / ln 2 / the validation text's bytes per token "
                  f"(comparable across vocabularies). {' '.join(self.notes())}".rstrip(), ""]
        if plot is not None:
            lines += [f"## Loss against {AXES[axis]} (train smoothed {smoothing:g}, as TensorBoard; "
                      f"validation as measured)", "", "```text", plot.rstrip("\n"), "```", ""]
        return "\n".join(lines)


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not spec:
        return f"{value:g}"
    return format(value, spec) if spec else str(value).replace("\n", "\\n")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def compare_runs(paths: Sequence[str | Path]) -> Comparison:
    """Load the runs at ``paths`` (``CompareError`` if one is not a run, or is given
    twice) and find the hyperparameters that differ."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise CompareError("give at least one run folder to compare (see `mnemos list`)")
    if len(paths) > MAX_RUNS:
        raise CompareError(f"compare at most {MAX_RUNS} runs at a time (got {len(paths)})")
    seen: dict[str, Path] = {}
    for p in paths:
        key = os.path.realpath(p)  # (Path.resolve raises on a symlink loop)
        if key in seen:
            raise CompareError(f"{p} is given twice (as {seen[key]}); give each run once")
        seen[key] = p
    runs = [load_run(p, n) for p, n in zip(paths, _names(paths))]
    keys = list(dict.fromkeys(k for r in runs for k in r.hparams))
    differing, same = {}, {}
    for k in keys:
        values = [r.hparams.get(k) for r in runs]
        if all(v == values[0] for v in values):
            same[k] = values[0]
        else:
            differing[k] = values
    return Comparison(runs, differing, same)


# --------------------------------------------------------------------------- plotting


@dataclass
class Series:
    """One line of the plot: a run's train (raw or smoothed) or validation curve."""

    run: int  # index of the run (its colour)
    name: str  # the run's name
    kind: str  # "train", "train raw", "val"
    label: str | None  # legend entry (None: not in the legend)
    x: np.ndarray
    y: np.ndarray


def plot_series(comparison: Comparison, axis: str = "step", smoothing: float = DEFAULT_SMOOTHING,
                points: int = 200) -> list[Series]:
    """The lines to draw: per run its raw train curve (when smoothed), the smoothed one
    and its validation points, at most ``points`` per line (means of consecutive points),
    non-finite points left out. Fresh arrays every call."""
    check_axis(axis)
    check_smoothing(smoothing)
    out: list[Series] = []
    for i, run in enumerate(comparison.runs):
        x, y = run.train.x(axis), run.train.value
        if len(x):
            ok = np.isfinite(x) & np.isfinite(y)
            if smoothing > 0:
                out.append(Series(i, run.name, "train raw", None, *bin_means(x[ok], y[ok], points)))
            smoothed = ema(y, smoothing) if smoothing > 0 else y
            out.append(Series(i, run.name, "train", f"{run.name} train", *bin_means(x[ok], smoothed[ok], points)))
        x, y = run.val.x(axis), run.val.value
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            out.append(Series(i, run.name, "val", f"{run.name} val", x[ok].astype(np.float64), y[ok].copy()))
    return out


def log_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Values for the ticks of a log axis from ``lo`` to ``hi`` (> 0): 1-2-5 steps of each
    decade that fall inside, thinned to at most ``most``; evenly spaced in log when the
    range holds fewer than two of them."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) < 2:
        return [float(v) for v in np.geomspace(lo, hi, min(most, 4))] if hi > lo else [lo]
    return ticks[:: math.ceil(len(ticks) / most)]


def default_style(s: Series) -> dict:
    """plotext keywords of a line: braille lines for train curves, dots for validation."""
    return {"marker": "dot" if s.kind == "val" else "braille"}


def draw(plt, series: list[Series], axis: str, log_y: bool = True,
         style: Callable[[Series], dict] = default_style, title: str = "loss") -> None:
    """Issue the plotext calls that draw ``series`` on ``plt`` (the plotext module or a
    textual-plotext ``Plot``); ``style(series)`` gives each line's plotext keywords
    (marker, color). With ``log_y`` the values are drawn as their log10 and the ticks
    labelled with the values: plotext's own log scale takes the log of its stored data
    in place at every build, so a second build (any repaint) would take it twice."""
    plt.clear_data()
    plt.clear_figure()
    plt.xlabel(AXES[axis])
    ys = []
    for s in series:
        x, y = s.x, s.y
        if log_y:
            keep = y > 0
            x, y = x[keep], np.log10(y[keep])
        if not len(x):
            continue
        ys.append(y)
        kw = {"label": s.label, **style(s)}
        (plt.scatter if kw.pop("scatter", False) else plt.plot)(x.tolist(), y.tolist(), **kw)
    if not ys:
        plt.title(f"{title}: no points yet")
        return
    plt.title(title + (" (log scale)" if log_y else ""))
    if log_y:
        lo, hi = min(float(y.min()) for y in ys), max(float(y.max()) for y in ys)
        ticks = log_ticks(10 ** lo, 10 ** hi)
        plt.yticks([math.log10(t) for t in ticks], [f"{t:.3g}" for t in ticks])


TEXT_MARKERS = "*+x#%@&$=~^o"  # train curve of run i (the text plot has no colours)
TEXT_VAL_MARKERS = "ABCDEFGHIJKL"  # validation points of run i


def _text_style(s: Series) -> dict:
    if s.kind == "train raw":
        return {"marker": "."}
    return {"marker": (TEXT_VAL_MARKERS if s.kind == "val" else TEXT_MARKERS)[s.run % len(TEXT_MARKERS)]}


def plot_text(comparison: Comparison, axis: str = "step", smoothing: float = DEFAULT_SMOOTHING,
              log_y: bool = True, width: int = 100, height: int = 30) -> str:
    """The plot as plain text (no colours: each run its own marker), for a text file or
    a Markdown report. Uses plotext, the app's plotting library, imported here only."""
    import plotext

    if not (20 <= width <= 1000 and 8 <= height <= 500):
        raise CompareError(f"a text plot must be 20-1000 columns by 8-500 rows, got {width}x{height}")
    series = plot_series(comparison, axis, smoothing, points=width)
    draw(plotext, series, axis, log_y, _text_style)
    plotext.plotsize(width, height)
    return plotext.uncolorize(plotext.build())
