"""The logit lens: what the model would predict if it stopped after each block.

nostalgebraist's logit lens reads the residual stream after every block through the
model's own final norm and output head, as if the remaining blocks were skipped. Layer
0 is the embeddings alone (a bigram guess: the token itself says what tends to follow);
the last layer is exactly the model's next-token distribution. Watching a position's
top guess across the layers shows where in the network the answer forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnemos.activations import run_with_cache, unembed
from mnemos.backend import to_numpy
from mnemos.inspect import _context, token_label


def lens_logits(model, cache) -> np.ndarray:
    """Logits ``(L + 1, B, T, V)`` read from the stream after the embeddings (0) and after
    each block (1..L) through the final norm and head; ``[L]`` equals ``cache.logits``."""
    resid = cache.resid
    L1, B, T, C = resid.shape
    return to_numpy(unembed(model, resid.reshape(-1, C))).reshape(L1, B, T, -1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (float64, shifted by the row maximum)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@dataclass
class LensView:
    """The top ``k`` next tokens at each layer and position of one prompt.

    ``top_ids[l, t]`` / ``top_probs[l, t]`` are read after layer ``l`` (0 = embeddings,
    ``n_layer`` = the model's output) at position ``t``; ``answer`` is the model's own
    top token at each position, ``answer_probs[l, t]`` its probability at each layer and
    ``first_layer[t]`` the first layer whose top guess it already is."""

    ids: list[int]
    labels: list[str]
    truncated: int  # tokens dropped from the front to fit block_size
    top_ids: np.ndarray  # (L + 1, T, k) int
    top_labels: list[list[list[str]]]  # (L + 1, T, k)
    top_probs: np.ndarray  # (L + 1, T, k)
    answer: list[int]  # (T,)
    answer_probs: np.ndarray  # (L + 1, T)
    first_layer: list[int]  # (T,)

    @property
    def n_layer(self) -> int:
        return self.top_ids.shape[0] - 1

    def to_dict(self, decimals: int = 4) -> dict:
        return {"ids": self.ids, "labels": self.labels, "truncated": self.truncated,
                "layers": ["embeddings"] + [f"block {i + 1}" for i in range(self.n_layer)],
                "top_ids": self.top_ids.tolist(), "top_labels": self.top_labels,
                "top_probs": np.round(self.top_probs, decimals).tolist(), "answer": self.answer,
                "answer_probs": np.round(self.answer_probs, decimals).tolist(), "first_layer": self.first_layer}


def logit_lens(model, tokenizer, ids, k: int = 3) -> LensView:
    """The logit lens of ``ids`` (its last ``block_size`` tokens): one forward pass and
    one pass of the final norm and head over every layer's stream."""
    idx = _context(model, ids)
    return lens_view(model, tokenizer, run_with_cache(model, idx), k, len(np.asarray(ids).reshape(-1)) - idx.shape[1])


def lens_view(model, tokenizer, cache, k: int = 3, truncated: int = 0) -> LensView:
    """The logit lens of the first sequence of ``cache`` (``run_with_cache`` of a prompt)."""
    probs = softmax(lens_logits(model, cache)[:, 0])  # (L + 1, T, V)
    k = max(1, min(int(k), probs.shape[-1]))
    # top k per (layer, position), best first
    order = np.argpartition(-probs, k - 1, axis=-1)[..., :k]
    top_probs = np.take_along_axis(probs, order, -1)
    best = np.argsort(-top_probs, axis=-1, kind="stable")
    order, top_probs = np.take_along_axis(order, best, -1), np.take_along_axis(top_probs, best, -1)
    answer = order[-1, :, 0]
    answer_probs = np.take_along_axis(probs, answer[None, :, None], -1)[..., 0]
    hit = order[:, :, 0] == answer[None, :]  # (L + 1, T); the last row is all true
    first = hit.argmax(0)
    label = {int(i): token_label(tokenizer.token_bytes(int(i))) for i in np.unique(order)}
    kept = [int(i) for i in cache.idx[0]]
    return LensView(
        ids=kept, labels=[token_label(tokenizer.token_bytes(i)) for i in kept], truncated=truncated,
        top_ids=order, top_labels=[[[label[int(i)] for i in row] for row in layer] for layer in order],
        top_probs=top_probs, answer=[int(a) for a in answer], answer_probs=answer_probs,
        first_layer=[int(f) for f in first])
