"""Text coloured by loss: how surprised the model was by each token, and what it
expected instead.

The text is scored exactly as ``mnemos.evaluate`` scores it (``<|endoftext|>`` first, then
sliding windows with a stride, every token predicted once), so the mean of these
per-token losses is the evaluation's loss on the same tokens. For each token it keeps
its loss, its probability and the model's own top guess at that place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnemos.backend import to_numpy
from mnemos.errors import DataError
from mnemos.evaluate import _token_nll, sliding_windows, window_batches
from mnemos.inspect import TokenView, token_label, tokenize_view

MAX_TOKENS = 512  # tokens scored by default: about two screens of text, scored in ~1,000 forward positions
CHARS_PER_TOKEN = 64  # more than any token of a text-trained vocabulary holds, to cut a long text first
BATCH_WINDOWS = 16


@dataclass
class Surprise:
    """One badly predicted token: what came and what the model expected instead."""

    index: int  # position in the text's tokens
    id: int
    label: str
    loss: float  # nats
    prob: float
    expected: int
    expected_label: str
    expected_prob: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TokenLossView:
    """Per-token losses of a text (its first ``MAX_TOKENS`` tokens; the
    ``unscored_chars`` characters after them are left out): ``loss[i]`` in nats, ``prob[i]`` the probability the model gave token
    ``i``, ``expected[i]`` its own top guess there with ``expected_prob[i]`` (NaN and -1 for
    the first token when the tokenizer has no ``<|endoftext|>`` to predict it from)."""

    tokens: TokenView
    loss: np.ndarray  # (n,) float64
    prob: np.ndarray  # (n,)
    expected: np.ndarray  # (n,) int
    expected_prob: np.ndarray  # (n,)
    expected_labels: list[str]
    unscored_chars: int

    @property
    def mean_loss(self) -> float:
        return float(np.nanmean(self.loss))

    def worst(self, k: int = 10) -> list[Surprise]:
        """The ``k`` tokens with the highest loss, worst first."""
        order = np.argsort(-np.nan_to_num(self.loss, nan=-np.inf), kind="stable")[:k]
        order = order[~np.isnan(self.loss[order])]
        toks = self.tokens.tokens
        return [Surprise(int(i), toks[i].id, toks[i].label, float(self.loss[i]), float(self.prob[i]),
                         int(self.expected[i]), self.expected_labels[i], float(self.expected_prob[i]))
                for i in order]

    def to_dict(self, decimals: int = 4, worst: int = 10) -> dict:
        return {"n_tokens": len(self.loss), "unscored_chars": self.unscored_chars, "mean_loss": self.mean_loss,
                "tokens": [{"id": t.id, "label": t.label, "loss": _num(l, decimals), "prob": _num(p, decimals),
                            "expected": int(e), "expected_label": el}
                           for t, l, p, e, el in zip(self.tokens.tokens, self.loss, self.prob, self.expected,
                                                     self.expected_labels)],
                "worst": [s.to_dict() for s in self.worst(worst)]}


def _num(x, decimals: int) -> float | None:
    return None if np.isnan(x) else round(float(x), decimals)


def token_losses(model, tokenizer, text: str, max_tokens: int = MAX_TOKENS) -> TokenLossView:
    """Score every token of ``text`` (its first ``max_tokens``) and keep per-token numbers."""
    head = text[:max_tokens * CHARS_PER_TOKEN]  # tokenize no more of a long file than can be shown
    view = tokenize_view(tokenizer, head)
    cut = len(head) < len(text)
    tokens = view.tokens[:len(view.tokens) - cut][:max_tokens]  # the last token of a cut text may be cut too
    unscored = len(text) - (tokens[-1].char_end if tokens else 0)
    view = TokenView(text[:len(text) - unscored], tokens, sum(len(t.bytes) for t in tokens), len(text) - unscored)
    ids = np.asarray(view.ids, dtype=np.int64)
    if ids.size == 0:
        raise DataError("there is no text to score: type or load some text first")
    eot = tokenizer.eot_id
    seq = np.concatenate([[eot], ids]) if eot is not None else ids  # without a boundary token 0 is not scored
    skip = ids.size - (seq.size - 1)
    if seq.size < 2:
        raise DataError("the text is too short to score: it needs at least two tokens")
    loss, prob, expected_prob = (np.full(ids.size, np.nan) for _ in range(3))
    expected = np.full(ids.size, -1, dtype=np.int64)
    starts, first, W = sliding_windows(seq.size - 1, model.config.block_size)
    for b, (x, y, mask) in enumerate(window_batches(seq, starts, first, W, BATCH_WINDOWS)):
        logits = to_numpy(model.forward(x)[0])
        guess = logits.argmax(-1)
        nll = _token_nll(logits, y)  # overwrites logits with exp(logits - max)
        top_p = 1.0 / logits.sum(-1)  # exp(0) / sum: the top guess's probability
        where = skip + starts[b * BATCH_WINDOWS:(b + 1) * BATCH_WINDOWS, None] + np.arange(W)  # index in ids
        loss[where[mask]] = nll[mask]
        prob[where[mask]] = np.exp(-nll[mask].astype(np.float64))
        expected[where[mask]] = guess[mask]
        expected_prob[where[mask]] = top_p[mask]
    labels = {int(i): token_label(tokenizer.token_bytes(int(i))) for i in np.unique(expected) if i >= 0}
    return TokenLossView(view, loss, prob, expected, expected_prob,
                         [labels.get(int(i), "") for i in expected], unscored)
