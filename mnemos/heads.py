"""What each attention head does, scored as TransformerLens's head detector scores it,
and the in-context-learning score of Olsson et al. (2022), "In-context learning and
induction heads".

**Head scores.** The model reads ``batch`` sequences of ``n`` random tokens, each
repeated once (``r_1..r_n r_1..r_n``), drawn from the tokens of its training text when
that is known (``pool``): a token it never saw has an untrained embedding, nearly the
same as every other unseen one, so no head can tell its copies apart and the scores
would measure that instead of the head (TransformerLens draws from GPT-2's vocabulary,
all of it trained). For a head's attention pattern ``A`` (T x T,
rows sum to 1) and a 0/1 *detection pattern* ``D`` of the keys a head of some kind
should read, the score is TransformerLens's ``detect_head`` with its default ``"mul"``
measure, ``sum(A * D) / sum(A)``: the share of all the head's attention that lands where
``D`` says, averaged over the sequences. The patterns (``get_*_detection_pattern``):

- previous token: ``D[q, q - 1] = 1``;
- duplicate token: ``D[q, k] = 1`` for ``k < q`` with ``tok[k] == tok[q]`` (earlier
  copies of the current token);
- induction: ``D[q, k] = 1`` for ``k <= q`` with ``tok[k - 1] == tok[q]`` (the token
  *after* an earlier copy of the current one: what to predict next).

Rows with nothing to find still count in ``sum(A)``, so a perfect head scores the share
of rows that have a target, its ``ceiling``: about 1 for previous-token, about 1/2 for
duplicate and induction heads on a sequence repeated once (the first half has no
earlier copies). Attention entropy is the mean, over query rows, of ``-sum A log2 A``
in bits: 0 for a head that reads one token, ``log2(q + 1)`` for one spread evenly.

**In-context learning score.** The mean loss on late tokens of a window minus that on
early tokens (the paper's "loss at token 500 minus loss at token 50", scaled to the
window): negative when later tokens, which see more context, are predicted better. Its
drop, together with the jump of the best induction score, is the "induction bump".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnemos.activations import run_with_cache
from mnemos.backend import to_numpy
from mnemos.errors import MnemosError
from mnemos.evaluate import _token_nll

KINDS = ("previous_token", "duplicate_token", "induction")
SEQ_TOKENS = 32  # random tokens per half (fewer when the context is shorter)
SEQ_BATCH = 4  # sequences averaged over
ICL_WINDOWS = 16  # text windows the trainer's in-context-learning score averages (its noise falls as 1/sqrt)


def token_pool(vocab_size: int, exclude=(), seen=None) -> np.ndarray:
    """The ids random sequences are drawn from: those in ``seen`` (token ids of the
    training text; every id when None), without ``exclude`` (e.g. the special tokens)."""
    ids = np.arange(vocab_size) if seen is None else np.flatnonzero(np.bincount(
        np.asarray(seen, dtype=np.int64).reshape(-1), minlength=vocab_size)[:vocab_size])
    pool = np.setdiff1d(ids, np.asarray(list(exclude), dtype=np.int64))
    return pool if pool.size >= 2 else np.setdiff1d(np.arange(vocab_size), np.asarray(list(exclude), dtype=np.int64))


def repeated_random_tokens(vocab_size: int, block_size: int, batch: int = SEQ_BATCH, n: int | None = None,
                           exclude=(), seed: int = 0, pool: np.ndarray | None = None) -> np.ndarray:
    """``(batch, 2n)`` ids: ``n`` tokens drawn uniformly from ``pool`` (default: every id
    but ``exclude``, e.g. the special tokens), then the same ``n`` again. ``n`` defaults
    to ``min(32, block_size // 2)``."""
    n = min(SEQ_TOKENS, block_size // 2) if n is None else int(n)
    if n < 2 or 2 * n > block_size:
        raise MnemosError(f"the head scores need two copies of at least 2 tokens in the context of {block_size}; "
                          f"use a model with block_size >= 4")
    if pool is None:
        pool = token_pool(vocab_size, exclude)
    half = np.random.default_rng(seed).choice(pool, size=(batch, n))
    return np.concatenate([half, half], axis=1)


def detection_patterns(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The 0/1 patterns ``(B, T, T)`` of each kind for ``tokens`` (B, T), as in
    TransformerLens's ``get_{previous_token,duplicate_token,induction}_head_detection_pattern``."""
    B, T = tokens.shape
    below = np.tril(np.ones((T, T), dtype=bool), k=-1)  # k < q
    previous = np.broadcast_to(np.eye(T, k=-1, dtype=bool), (B, T, T))
    duplicate = (tokens[:, :, None] == tokens[:, None, :]) & below
    induction = np.zeros_like(duplicate)
    induction[:, :, 1:] = duplicate[:, :, :-1]  # key k reads the token after the copy at k - 1
    return {"previous_token": previous, "duplicate_token": duplicate, "induction": induction}


def pattern_scores(patterns: np.ndarray, detection: np.ndarray) -> np.ndarray:
    """``sum(A * D) / sum(A)`` per layer and head, averaged over the batch:
    ``patterns`` (L, B, H, T, T), ``detection`` (B, T, T) -> (L, H)."""
    A = patterns.astype(np.float64)
    hit = np.einsum("lbhqk,bqk->lbh", A, detection.astype(np.float64))
    return (hit / A.sum((-1, -2))).mean(1)


def attention_entropy(patterns: np.ndarray) -> np.ndarray:
    """Mean entropy in bits of each head's attention rows: (L, B, H, T, T) -> (L, H)."""
    A = patterns.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(A > 0, A * np.log2(A), 0.0)
    return -terms.sum(-1).mean((1, 3))


@dataclass
class HeadScores:
    """A layer x head grid per score, ``(L, H)`` each; ``ceiling`` is the best a perfect
    head of each kind can score on these sequences (see the module docstring)."""

    scores: dict[str, np.ndarray]  # KINDS -> (L, H)
    entropy: np.ndarray  # (L, H) bits
    ceiling: dict[str, float]
    tokens: np.ndarray  # (B, T) the repeated random sequences
    patterns: np.ndarray  # (L, B, H, T, T) their attention maps
    pool_size: int = 0  # how many ids the tokens were drawn from
    from_training: bool = False  # drawn from the training text's tokens (else from every id)

    @property
    def n_layer(self) -> int:
        return self.entropy.shape[0]

    @property
    def n_head(self) -> int:
        return self.entropy.shape[1]

    def top(self, kind: str) -> tuple[int, int, float]:
        """``(layer, head, score)`` of the highest-scoring head of ``kind`` (or, for
        ``"entropy"``, the most focused head: the lowest entropy)."""
        grid = -self.entropy if kind == "entropy" else self.scores[kind]
        layer, head = np.unravel_index(int(np.argmax(grid)), grid.shape)
        value = self.entropy if kind == "entropy" else self.scores[kind]
        return int(layer), int(head), float(value[layer, head])

    def to_dict(self, decimals: int = 4) -> dict:
        return {"sequence": {"batch": int(self.tokens.shape[0]), "length": int(self.tokens.shape[1]),
                             "repeats": 2, "drawn_from": self.pool_size, "from_training_text": self.from_training},
                **{kind: np.round(self.scores[kind], decimals).tolist() for kind in KINDS},
                "entropy_bits": np.round(self.entropy, decimals).tolist(),
                "ceiling": {k: round(v, decimals) for k, v in self.ceiling.items()},
                "top": {kind: dict(zip(("layer", "head", "score"), self.top(kind)))
                        for kind in (*KINDS, "entropy")}}


def head_scores(model, exclude=(), batch: int = SEQ_BATCH, seed: int = 0, seen=None) -> HeadScores:
    """Score every head of ``model`` on repeated random tokens drawn from ``seen`` (the
    training text's ids, if known; see ``token_pool``) without ``exclude`` (e.g.
    ``tokenizer.special_tokens.values()``). One forward of ``(batch, 2n)``."""
    cfg = model.config
    pool = token_pool(cfg.vocab_size, exclude, seen)
    tokens = repeated_random_tokens(cfg.vocab_size, cfg.block_size, batch, seed=seed, pool=pool)
    patterns = run_with_cache(model, tokens).patterns
    detection = detection_patterns(tokens)
    T = tokens.shape[1]
    return HeadScores(
        scores={kind: pattern_scores(patterns, d) for kind, d in detection.items()},
        entropy=attention_entropy(patterns),
        ceiling={kind: float(d.any(-1).sum(-1).mean() / T) for kind, d in detection.items()},
        tokens=tokens, patterns=patterns, pool_size=int(pool.size), from_training=seen is not None)


# --------------------------------------------------------------------------- in-context learning


def icl_bands(T: int) -> tuple[slice, slice]:
    """The early and late positions of a ``T``-token window whose losses the score
    compares: early ``[T/10, T/5)`` (past the first tokens, which have almost no context),
    late the last tenth. For T = 512, 51..101 and 461..511 (the paper: tokens 50 and 500)."""
    if T < 4:
        raise MnemosError(f"the in-context-learning score needs a context of at least 4 tokens, not {T}")
    early_start = max(1, T // 10)
    early = slice(early_start, max(early_start + 1, T // 5))
    late = slice(T - max(1, T // 10), T)
    return early, late


def icl_score(model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean loss on the late positions minus the mean loss on the early positions of the
    windows ``x`` with next tokens ``y`` (both (B, T)); see ``icl_bands``."""
    logits, _ = model.forward(x)
    nll = _token_nll(to_numpy(logits), np.asarray(y)).astype(np.float64).mean(0)  # (T,) over windows
    early, late = icl_bands(nll.shape[0])
    return float(nll[late].mean() - nll[early].mean())


def induction_probe(model, x: np.ndarray, y: np.ndarray, exclude=(), seed: int = 0, seen=None) -> dict:
    """What the trainer records at each evaluation: ``{"icl_score", "induction_score",
    "induction_head"}`` (the best induction head's score and its [layer, head], counted
    from 1), from the windows ``x``/``y`` and ``SEQ_BATCH`` repeated random sequences
    (drawn from ``seen``, as ``head_scores``).
    ``None`` values for a context too short to measure (under 4 tokens)."""
    if model.config.block_size < 4:
        return {"icl_score": None, "induction_score": None, "induction_head": None}
    layer, head, score = head_scores(model, exclude, batch=SEQ_BATCH, seed=seed, seen=seen).top("induction")
    return {"icl_score": icl_score(model, x, y), "induction_score": score, "induction_head": [layer + 1, head + 1]}


def training_tokens(ckpt) -> np.ndarray | None:
    """The ids a checkpoint was trained on, when its training text is still there
    unchanged (``seen`` for ``head_scores``); None otherwise."""
    from mnemos.evaluate import _training_tokens

    return _training_tokens(ckpt)
