"""Scoring a text: loss, perplexity, bits per byte, and the unigram baseline beside them.

**Method (deterministic and complete).** The text's tokens are preceded by
``<|endoftext|>`` (the document boundary GPT-2 and Mnemos use), so even the first token
is predicted, from the boundary alone. Every token is then scored exactly once by
*sliding windows with a stride* (the method of Hugging Face's perplexity guide):

- a window is ``W = min(block_size, tokens)`` positions; the first starts at the
  boundary and scores all ``W`` of its predictions (token ``j`` sees the ``j`` tokens
  before it);
- each next window starts ``stride`` tokens later (``stride = W // 2`` by default) and
  scores only the predictions no earlier window made: its last ``stride`` positions, each
  of which sees at least ``W - stride`` tokens of context;
- the last window is aligned to the end of the text, so no token is left out and none
  is scored twice.

A smaller stride gives more context per token at a cost of ``W / stride`` forward
positions per scored token; ``stride = 1`` is the exact sliding window, ``stride = W``
disjoint windows (the cheapest, and the least context). All windows have the same
length, so they go through the model in batches of full ``(B, W)`` arrays.

**Numbers.** ``loss`` is the mean cross-entropy in nats per token, ``perplexity =
exp(loss)``, and ``bits_per_byte = total nats / ln 2 / UTF-8 bytes of the text``: the
number that compares models with different vocabularies (and compressors: gzip scores
about 2.5-3 bits per byte on English).

**Unigram baseline.** What a model that knows only token frequencies would score on the
same tokens, so a user sees what the network learned beyond them. From a checkpoint
whose training text is still there, the unigram distribution is that of the training
tokens with add-one (Laplace) smoothing (an honest held-out baseline: the test text's
frequencies are not peeked at). Otherwise it is the test tokens' own frequencies
(their empirical entropy: the best any unigram model can do on this text, so the
baseline is optimistic). ``unigram_method`` says which one was used.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mnemos.backend import to_numpy
from mnemos.checkpoint import EVAL_FILES
from mnemos.errors import ConfigError, DataError, EvalCancelled, MnemosError
from mnemos.fileio import read_jsonl
from mnemos.paths import TEST_DATA

HISTORY_FILE, REPORT_FILE = EVAL_FILES
BATCH_TOKENS = 4096  # positions per forward pass (bounded further by the logits' size)
LOGITS_BUDGET = 1 << 23  # floats of logits per batch (32 MB)
LN2 = math.log(2.0)


# --------------------------------------------------------------------------- the report


@dataclass
class EvalReport:
    """The scores of one text. Contract keys of ``to_dict()``: ``loss``,
    ``perplexity``, ``bits_per_byte``, ``tokens``, ``bytes`` (plus everything else here)."""

    loss: float  # nats per token
    perplexity: float
    bits_per_byte: float
    tokens: int  # tokens scored (every token of the text)
    bytes: int  # UTF-8 bytes of the text
    seconds: float
    unigram_loss: float
    unigram_bits_per_byte: float
    method: str
    unigram_method: str
    block_size: int
    stride: int
    min_context: int  # context (tokens seen) of the worst-placed token after the first window
    checkpoint: str | None = None
    data: str | None = None
    step: int | None = None
    timestamp: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(measure, value) rows: the one layout of a report, which the CLI prints, the
        app's table shows and ``to_markdown`` writes, each with the ``method`` (a sentence)
        after it. The unigram baseline is what a model that ignores context scores."""
        return [
            ("loss (nats/token)", f"{self.loss:.4f}"),
            ("perplexity", f"{self.perplexity:,.2f}"),
            ("bits per byte", f"{self.bits_per_byte:.4f}"),
            ("unigram baseline loss", f"{self.unigram_loss:.4f}"),
            ("unigram bits per byte", f"{self.unigram_bits_per_byte:.4f}"),
            ("tokens", f"{self.tokens:,}"),
            ("bytes", f"{self.bytes:,}"),
            ("time", f"{self.seconds:.1f} s"),
        ]

    def to_markdown(self) -> str:
        """The report as a Markdown section: where it comes from, then :meth:`rows` as a table."""
        lines = [
            "# Evaluation" + (f" of `{self.checkpoint}`" if self.checkpoint else ""),
            "",
            f"- Text: `{self.data}`" if self.data else "- Text: (given in memory)",
            f"- Training step: {self.step}" if self.step is not None else "- Training step: unknown",
            f"- When: {self.timestamp}",
            f"- Speed: {self.tokens_per_s:,.0f} tokens/s",
            "",
            "| Measure | Value |",
            "|---|---:|",
            *(f"| {name} | {value} |" for name, value in self.rows()),
            "",
            f"Method: {self.method}",
            "",
            f"Baseline: {self.unigram_method}",
            "",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- windows


def resolve_stride(W: int, stride: int | None) -> int:
    """The stride actually used for windows of ``W`` tokens (default ``W // 2``)."""
    if stride is None:
        return max(1, W // 2)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride!r}")
    return min(int(stride), W)


def sliding_windows(n_targets: int, block_size: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Windows that score each of ``n_targets`` predictions exactly once.

    The sequence is ``n_targets + 1`` ids (the boundary, then the tokens); a window
    starting at ``a`` reads ids ``a .. a+W-1`` and predicts ids ``a+1 .. a+W``. Returns
    ``(starts, first, W)``: window ``k`` starts at ``starts[k]`` and its predictions
    ``first[k] .. W-1`` are the ones it scores.
    """
    if n_targets < 1:
        raise ValueError("nothing to score")
    W = min(block_size, n_targets)
    stride = resolve_stride(W, stride)
    starts = np.arange(0, n_targets - W, stride, dtype=np.int64)
    starts = np.append(starts, n_targets - W)
    first = np.zeros(len(starts), dtype=np.int64)
    first[1:] = starts[:-1] + W - starts[1:]
    return starts, first, W


def window_batches(seq: np.ndarray, starts: np.ndarray, first: np.ndarray, W: int, per_batch: int):
    """``(x, y, mask)`` for ``per_batch`` windows at a time of ``sliding_windows``' result:
    inputs and next tokens ``(b, W)``, and ``mask`` true at the predictions each scores."""
    offsets = np.arange(W)
    for b0 in range(0, len(starts), per_batch):
        a, f = starts[b0:b0 + per_batch], first[b0:b0 + per_batch]
        yield seq[a[:, None] + offsets], seq[a[:, None] + offsets + 1], offsets[None, :] >= f[:, None]


# --------------------------------------------------------------------------- scoring


def _unigram(tokens: np.ndarray, vocab_size: int, train_tokens: np.ndarray | None) -> tuple[float, str]:
    """Mean nats per token of ``tokens`` under a unigram model (see the module docstring)."""
    if train_tokens is not None and len(train_tokens):
        counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64)
        logp = np.log(counts + 1.0) - math.log(counts.sum() + vocab_size)
        loss = -float(logp[tokens].mean())
        return loss, (f"the training text's token frequencies ({int(counts.sum()):,} tokens) with add-one "
                      f"smoothing over the {vocab_size} ids")
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    counts = counts[counts > 0]
    n = counts.sum()
    loss = -float((counts * (np.log(counts) - math.log(n))).sum() / n)
    return loss, ("the scored tokens' own frequencies (their empirical entropy: the best any unigram model "
                  "can do on this text; the training text was not available)")


def _batch_windows(W: int, vocab_size: int, batch_tokens: int | None) -> int:
    tokens = batch_tokens or BATCH_TOKENS
    tokens = min(tokens, max(W, LOGITS_BUDGET // vocab_size))
    return max(1, tokens // W)


def evaluate(model, tokenizer, text_or_tokens: str | Sequence[int] | np.ndarray,
             progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
             stride: int | None = None, batch_tokens: int | None = None,
             train_tokens: np.ndarray | None = None) -> EvalReport:
    """Score a text (or its token ids) with ``model``; see the module docstring.

    ``progress(done, total)`` is called after each batch with tokens scored so far;
    ``cancel()`` is checked before each batch and raises ``EvalCancelled`` when true.
    ``train_tokens`` (the training text's ids) switches the baseline to the smoothed
    training unigram.
    """
    t0 = time.perf_counter()
    if isinstance(text_or_tokens, str):
        tokens = np.asarray(tokenizer.encode_array(text_or_tokens), dtype=np.int64)
    else:
        tokens = np.asarray(text_or_tokens, dtype=np.int64).reshape(-1)
    V = model.config.vocab_size
    if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
        raise DataError(f"token ids must be in 0..{V - 1}; the text was encoded with another tokenizer")
    eot = tokenizer.eot_id
    seq = np.concatenate([[eot], tokens]) if eot is not None else tokens
    scored = seq[1:]
    if scored.size == 0:
        raise DataError("the text is too short to score: it needs at least one token (two without <|endoftext|>)")
    n_bytes = len(tokenizer.decode_bytes(scored))
    starts, first, W = sliding_windows(scored.size, model.config.block_size, stride)
    stride_used = resolve_stride(W, stride)
    min_context = int(first[1:].min()) + 1 if len(starts) > 1 else 1  # tokens seen by the worst-placed one
    total = 0.0
    done = 0
    for x, y, mask in window_batches(seq, starts, first, W, _batch_windows(W, V, batch_tokens)):
        if cancel is not None and cancel():
            raise EvalCancelled("evaluation cancelled; nothing was saved")
        logits, _ = model.forward(x)
        nll = _token_nll(to_numpy(logits), y)  # a fresh array: train=False copies
        total += float(nll[mask].sum(dtype=np.float64))
        done += int(mask.sum())
        if progress is not None:
            progress(done, scored.size)
    if done != scored.size:  # the windows' invariant; a failure here is a bug, not a user error
        raise AssertionError(f"scored {done} of {scored.size} tokens")
    loss = total / scored.size
    uni_loss, uni_method = _unigram(scored, V, train_tokens)
    method = (f"{'<|endoftext|> then ' if eot is not None else ''}sliding windows of {W} tokens with stride "
              f"{stride_used}: every token scored once, with at least {min_context} tokens of context after "
              f"the first window")
    return EvalReport(
        loss=loss, perplexity=math.exp(min(loss, 700.0)), bits_per_byte=total / LN2 / n_bytes,
        tokens=int(scored.size), bytes=n_bytes, seconds=time.perf_counter() - t0,
        unigram_loss=uni_loss, unigram_bits_per_byte=uni_loss * scored.size / LN2 / n_bytes,
        method=method, unigram_method=uni_method, block_size=model.config.block_size, stride=stride_used,
        min_context=min_context,
    )


def _token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[target]`` per position (B, T), overwriting ``logits``."""
    picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    m = logits.max(axis=-1, keepdims=True)
    logits -= m
    np.exp(logits, out=logits)
    lse = np.log(logits.sum(axis=-1)) + m[..., 0]
    return lse - picked


# --------------------------------------------------------------------------- checkpoints


def _training_tokens(ckpt) -> np.ndarray | None:
    """The ids the checkpoint was trained on, if its training text is still there unchanged."""
    from mnemos import data as data_mod

    path, digest = ckpt.state.get("data"), ckpt.state.get("data_hash")
    if not path or not Path(path).is_file():
        return None
    try:
        text = data_mod.read_text(path)
        if digest and data_mod.content_hash(text) != digest:
            return None
        tokens = data_mod.load_tokens(path, ckpt.tokenizer, text=text)
    except (MnemosError, OSError):
        return None
    if not ckpt.state.get("val_data"):
        tokens, _ = data_mod.split_train_val(tokens)
    return tokens


def evaluate_checkpoint(dir: str | os.PathLike, data: str | os.PathLike | None = None,
                        progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                        stride: int | None = None, batch_tokens: int | None = None) -> EvalReport:
    """Load a checkpoint and score ``data`` (default ``data/testing/test.txt``) with it.

    Raises ``CheckpointError`` / ``DataError`` with one line for a bad folder or file.
    """
    from mnemos import data as data_mod
    from mnemos.checkpoint import load_checkpoint

    ckpt = load_checkpoint(dir)
    path = Path(data) if data is not None else TEST_DATA
    text = data_mod.read_text(path)
    tokens = data_mod.load_tokens(path, ckpt.tokenizer, text=text)
    report = evaluate(ckpt.model, ckpt.tokenizer, tokens, progress=progress, cancel=cancel, stride=stride,
                      batch_tokens=batch_tokens, train_tokens=_training_tokens(ckpt))
    report.checkpoint, report.data = str(ckpt.path), str(path)
    step = ckpt.state.get("step")
    report.step = int(step) if isinstance(step, int) else None
    return report


def eval_history(dir: str | os.PathLike) -> list[dict]:
    """Every report saved for a checkpoint, oldest first (a torn last line is skipped)."""
    return read_jsonl(Path(dir) / HISTORY_FILE)


def _history_markdown(rows: list[dict]) -> str:
    def num(row, key, fmt):
        value = row.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"

    lines = ["## History", "", "| When | Step | Text | Loss | Bits/byte | Unigram bits/byte | Tokens |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.get('timestamp', '?')} | {r.get('step', '?')} | `{r.get('data', '?')}` | "
                     f"{num(r, 'loss', '.4f')} | {num(r, 'bits_per_byte', '.4f')} | "
                     f"{num(r, 'unigram_bits_per_byte', '.4f')} | {num(r, 'tokens', ',')} |")
    return "\n".join(lines) + "\n"


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def save_report(dir: str | os.PathLike, report: EvalReport) -> Path:
    """Append ``report`` to ``<dir>/evals.jsonl`` and write ``<dir>/eval-report.md``
    (this report and the history table, replaced atomically). Returns the Markdown path."""
    folder = Path(dir)
    if not folder.is_dir():
        raise MnemosError(f"{folder} is not a folder; pass the checkpoint folder the report belongs to")
    try:
        history = folder / HISTORY_FILE
        torn = history.is_file() and history.stat().st_size > 0 and _last_byte(history) != b"\n"
        with open(history, "a", encoding="utf-8") as f:
            # after a crash mid-line, start a new line so this report is not glued to the torn one
            f.write(("\n" if torn else "") + json.dumps(report.to_dict(), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        md = folder / REPORT_FILE
        tmp = md.with_name(md.name + ".tmp")
        tmp.write_text(report.to_markdown() + "\n" + _history_markdown(eval_history(folder)), encoding="utf-8")
        os.replace(tmp, md)
    except OSError as exc:
        raise MnemosError(f"could not save the report in {folder} ({exc.strerror or exc}); "
                          f"check the folder's permissions and free space") from None
    return md
