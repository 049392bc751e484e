"""Text generation: sampling one token at a time with a KV cache, streamed as it comes.

The loop (``Generator.stream``):

1. Encode the prompt (an empty prompt starts from ``<|endoftext|>``, the document
   boundary, as GPT-2 does) and *prefill* the model's KV cache with it: one batched
   forward pass over the prompt gives the logits of the first new token.
2. Reshape those logits into the sampling distribution (``sampling_distribution``:
   temperature, then top-k, then top-p) and draw a token with the run's own
   ``np.random.Generator`` (greedy argmax at temperature 0, which draws nothing).
3. Feed only the new token to ``model.forward_cached``: the keys and values of the
   earlier positions are in the cache, so each new token costs one position.

**Sliding the window.** Positions are absolute (learned position embeddings), so once
the context holds ``block_size`` tokens the cached keys cannot simply be shifted by one:
every one of them was computed at a position that is now wrong. Instead, when a new token
would not fit, the context restarts from the last ``keep`` tokens (``block_size // 2`` by
default), re-prefilled into a fresh cache in one batched pass. The context then grows
again, one cached position per token, until it is full. The prefill of ``keep`` tokens
happens once every ``block_size - keep + 1`` tokens, so its cost is amortised, and every
token is predicted from at least ``keep`` tokens of context. ``use_cache=False``
recomputes the same context from scratch at every step (the reference the tests compare
the cache against, and the "no cache" line of ``benchmarks/generate_speed.py``).

**Streaming.** Tokens are byte sequences, and a character such as an emoji (4 bytes
in UTF-8) can be split over several byte-level tokens. Each step's bytes go through an
incremental UTF-8 decoder that holds back an incomplete character until its last byte
arrives, so a step's ``text`` is ``""`` while a character is pending and the stream
never shows a replacement character mid-character. Bytes that can never become valid
UTF-8 (which a sampled sequence may contain) come out as U+FFFD, exactly as
``tokenizer.decode`` would render them.
"""

from __future__ import annotations

import math

import codecs
from numbers import Integral, Real
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

import numpy as np

from mnemos.backend import to_numpy
from mnemos.errors import ConfigError, MnemosError

TOP_N = 10  # candidates reported with each step (the see-inside view's bars)


# --------------------------------------------------------------------------- sampling


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ``ConfigError`` for an impossible temperature / top-k / top-p."""
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0 <= temperature < math.inf:
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 0):
        raise ConfigError(f"top-k must be a positive integer (0 or none = off), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0.0 < top_p <= 1.0):
        raise ConfigError(f"top-p must be in (0, 1] (1 or none = off), got {top_p!r}")


def sampling_distribution(logits, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> np.ndarray:
    """The distribution a token is drawn from, given the model's ``logits`` (..., V).

    In order, as in Hugging Face's logits warpers and nanoGPT's ``generate``:

    - temperature ``τ``: ``p ∝ exp(logits / τ)``; ``τ = 0`` puts all the mass on the
      argmax (the lowest id among equal maxima): greedy decoding;
    - top-k: keep the ``k`` largest logits (ties with the k-th are kept, as in nanoGPT),
      renormalise; ``None`` or 0 = off;
    - top-p (nucleus): keep the smallest set of most likely tokens whose mass reaches
      ``p`` (a token is kept if the mass of the tokens more likely than it is below
      ``p``; the most likely token is always kept), renormalise; ``None`` or 1 = off.

    Returns float64 probabilities of the same shape, summing to 1 over the last axis.
    Pure: both sampling and the see-inside view (``mnemos.inspect``) call it.
    """
    check_sampling(temperature, top_k, top_p)
    z = np.array(to_numpy(logits), dtype=np.float64)  # a copy: the caller's logits stay intact
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError("logits must have a non-empty last axis")
    V = z.shape[-1]
    if temperature == 0:
        probs = np.zeros_like(z)
        np.put_along_axis(probs, np.argmax(z, axis=-1)[..., None], 1.0, axis=-1)
        return probs
    z /= temperature
    if top_k and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[..., V - top_k, None]
        z[z < kth] = -np.inf
    z -= z.max(axis=-1, keepdims=True)
    probs = np.exp(z, out=z)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        mass_before = np.cumsum(sorted_p, axis=-1) - sorted_p
        np.put_along_axis(probs, order, np.where(mass_before < top_p, sorted_p, 0.0), axis=-1)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one id from a 1-D distribution by inverting its CDF with one uniform draw.

    Tokens of probability 0 are never drawn (a draw that rounding puts past the last
    nonzero token falls back to it).
    """
    cdf = np.cumsum(probs)
    i = int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))
    if i >= probs.size or probs[i] == 0:
        i = int(np.flatnonzero(probs)[-1])
    return i


def top_candidates(probs: np.ndarray, n: int = TOP_N) -> tuple[tuple[int, float], ...]:
    """The ``n`` most likely ``(id, probability)`` pairs, most likely first (ties by id)."""
    n = min(n, probs.size)
    top = np.argpartition(-probs, n - 1)[:n]
    top = top[np.lexsort((top, -probs[top]))]
    return tuple(zip(top.tolist(), probs[top].tolist()))


# --------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class GenerationStep:
    """One generated token.

    ``text`` is what this token makes newly readable: ``""`` while a multi-byte
    character is incomplete, several characters when a held-back one completes.
    ``probs`` is the distribution the token was drawn from (after temperature / top-k /
    top-p), ``prob`` the chosen token's probability in it, ``probs_top`` its most likely
    candidates (computed on first use, so a caller that does not look pays nothing), and
    ``logits`` the model's raw scores (V,) so a view can reshape them with other settings
    (``mnemos.inspect.next_token_distribution``).
    """

    token_id: int
    text: str
    prob: float
    probs: np.ndarray
    logits: np.ndarray
    index: int  # 0 for the first new token

    @cached_property
    def probs_top(self) -> tuple[tuple[int, float], ...]:
        """The ``TOP_N`` most likely ``(id, probability)`` pairs, most likely first."""
        return top_candidates(self.probs, TOP_N)


class Generator:
    """Samples text from ``model`` token by token (see the module docstring).

    ``keep`` is how many tokens of context survive a window slide (1 .. block_size;
    default ``block_size // 2``).
    After a stream ends, ``stop_reason`` says why: ``"eot"`` (the model wrote
    ``<|endoftext|>``), ``"max_tokens"`` or ``"stopped"`` (``should_stop()`` said so).
    """

    def __init__(self, model, tokenizer, keep: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.block_size = model.config.block_size
        self.keep = max(1, self.block_size // 2) if keep is None else keep
        if not 1 <= self.keep <= self.block_size:
            raise ConfigError(f"keep must be between 1 and block_size ({self.block_size}), got {keep!r}")
        if tokenizer.vocab_size != model.config.vocab_size:
            raise MnemosError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                              f"{model.config.vocab_size}; load both from the same checkpoint")
        self.stop_reason: str | None = None
        self.slides = 0  # window slides in the last stream

    def encode_prompt(self, prompt: str | Sequence[int]) -> list[int]:
        """Prompt ids: text is encoded with special tokens allowed (a typed
        ``<|endoftext|>`` is the document boundary); an empty prompt is ``[eot]``
        (or a newline for a tokenizer without one), as nanoGPT's sampler starts."""
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, allowed_special="all")
        else:
            ids = [int(i) for i in prompt]
            bad = [i for i in ids if not 0 <= i < self.tokenizer.vocab_size]
            if bad:
                raise MnemosError(f"prompt token id {bad[0]} is outside the vocabulary "
                                  f"(0..{self.tokenizer.vocab_size - 1})")
        if not ids:
            eot = self.tokenizer.eot_id
            ids = [eot if eot is not None else ord("\n")]
        return ids

    def stream(self, prompt: str | Sequence[int] = "", max_new_tokens: int = 200, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               seed: int | np.random.Generator | None = None,
               should_stop: Callable[[], bool] | None = None, use_cache: bool = True) -> Iterator[GenerationStep]:
        """Yield one ``GenerationStep`` per new token, up to ``max_new_tokens``.

        Stops after ``<|endoftext|>`` (that step is yielded, with no text of its own),
        or as soon as ``should_stop()`` is true (checked before every token; the TUI's
        Esc; a character still incomplete at that moment is dropped). ``seed`` (an int
        or a ``np.random.Generator``) makes sampling reproducible; ``None`` draws fresh
        entropy. ``use_cache=False`` recomputes the whole context at every token (same
        tokens, slower: the reference for tests and benchmarks). Bad settings raise
        ``ConfigError`` here, before anything runs. One stream at a time per Generator.
        """
        check_sampling(temperature, top_k, top_p)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, Integral) or max_new_tokens < 0:
            raise ConfigError(f"max-new-tokens must be an integer >= 0, got {max_new_tokens!r}")
        if seed is not None and not isinstance(seed, np.random.Generator) and (
                isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0):
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        ids = self.encode_prompt(prompt)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self._run(ids, int(max_new_tokens), temperature, top_k, top_p, rng, should_stop, use_cache)

    def generate(self, prompt: str | Sequence[int] = "", **kwargs) -> str:
        """The completion (without the prompt) as one string; same arguments as ``stream``."""
        return "".join(step.text for step in self.stream(prompt, **kwargs))

    # ----------------------------------------------------------------- the loop
    def _run(self, ids, max_new_tokens, temperature, top_k, top_p, rng, should_stop, use_cache):
        self.stop_reason, self.slides = None, 0
        eot = self.tokenizer.eot_id
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        start = max(0, len(ids) - self.block_size)  # the context is ids[start:]
        cache = None  # None: the context must be prefilled into a fresh cache
        for index in range(max_new_tokens):
            if should_stop is not None and should_stop():
                self.stop_reason = "stopped"
                return
            logits, cache = self._next_logits(ids, start, cache, use_cache)
            probs = sampling_distribution(logits, temperature, top_k, top_p)
            token = int(probs.argmax()) if temperature == 0 else sample(probs, rng)  # greedy draws nothing
            text = "" if token == eot else decoder.decode(self.tokenizer.token_bytes(token))
            if token == eot or index == max_new_tokens - 1:
                text += decoder.decode(b"", final=True)  # a trailing incomplete character: U+FFFD
            yield GenerationStep(token, text, float(probs[token]), probs, logits, index)
            if token == eot:
                self.stop_reason = "eot"
                return
            ids.append(token)
            if len(ids) - start > self.block_size:  # no room for it: restart from the last `keep`
                start, cache = len(ids) - self.keep, None
                self.slides += 1
        self.stop_reason = "max_tokens"

    def _next_logits(self, ids, start, cache, use_cache):
        """Logits (V,) for the token after ``ids[start:]``, and the cache to reuse."""
        model = self.model
        if not use_cache:
            logits, _ = model.forward(np.asarray([ids[start:]], dtype=np.int64))
        elif cache is None:
            cache = model.new_cache(batch=1)
            logits = model.forward_cached(np.asarray([ids[start:]], dtype=np.int64), cache)
        else:
            logits = model.forward_cached(np.asarray([ids[-1:]], dtype=np.int64), cache)
        return np.array(to_numpy(logits[0, -1])), cache  # a copy the step may keep

