"""GPT-2 models whose weights are set by hand so their heads do known things.

The residual stream is cut into named subspaces of one-hot codes: ``TOK`` (which token
is here), ``POS`` (which position) and ``PREV`` (which token came just before, written
by a previous-token head). Every MLP and bias is zero and every LayerNorm weight one,
so a block is its attention alone. LayerNorm still centres and rescales the stream, but
that shifts each query's scores by amounts (nearly) equal across keys, which the
softmax ignores; ``SHARP`` makes the intended key win by a wide margin.
"""

from __future__ import annotations

import numpy as np

from mnemos.config import ModelConfig
from mnemos.nn import GPT

SHARP = 40.0  # query scale: the intended key's score exceeds the others' by about this much


def _zeroed(vocab: int, block: int, n_layer: int, n_head: int, n_embd: int) -> GPT:
    model = GPT(ModelConfig(vocab_size=vocab, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block))
    for name in model.params.names:
        view = model.params.view(name)
        view[...] = 1.0 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight" else 0.0
    return model


def _subspaces(vocab: int, block: int) -> tuple[slice, slice, slice]:
    return slice(0, vocab), slice(vocab, vocab + block), slice(vocab + block, 2 * vocab + block)


def _write_codes(model: GPT) -> tuple[slice, slice, slice]:
    V, T = model.config.vocab_size, model.config.block_size
    tok, pos, prev = _subspaces(V, T)
    model.params.view("wte")[:, tok] = np.eye(V)
    model.params.view("wpe")[:, pos] = np.eye(T)
    return tok, pos, prev


def _set_head(model: GPT, layer: int, head: int, q_from: slice, k_from: slice, qk: np.ndarray,
              v_from: slice | None = None, out_to: slice | None = None) -> None:
    """Head ``head`` of block ``layer``: query reads ``q_from``, key reads ``k_from``,
    scores ``q_code @ qk @ k_code`` (times ``SHARP``); if given, the value copies
    ``v_from`` and the output writes it into ``out_to``."""
    C, H = model.config.n_embd, model.config.n_head
    hd = C // H
    n_q, n_k = q_from.stop - q_from.start, k_from.stop - k_from.start
    assert qk.shape == (n_q, n_k) and n_k <= hd
    W = model.params.view(f"h.{layer}.attn.c_attn.weight")  # (C, 3C): q | k | v, heads side by side
    cols = slice(head * hd, head * hd + n_k)
    W[q_from, cols] = SHARP * qk  # q = SHARP * qk^T-mapped code, k = the key's code
    W[k_from, C + cols.start:C + cols.stop] = np.eye(n_k)
    if v_from is not None:
        n_v = v_from.stop - v_from.start
        assert n_v <= hd
        W[v_from, 2 * C + head * hd:2 * C + head * hd + n_v] = np.eye(n_v)
        proj = model.params.view(f"h.{layer}.attn.c_proj.weight")  # (C, C)
        proj[head * hd:head * hd + n_v, out_to] = np.eye(n_v)


def previous_token_model(vocab: int = 20, block: int = 24, n_head: int = 2) -> GPT:
    """One block whose head 0 reads the previous position (position 0 reads itself);
    head 1 is left at zero weights (uniform attention)."""
    n_embd = n_head * max(2 * vocab + block, block)
    n_embd += (-n_embd) % n_head
    model = _zeroed(vocab, block, 1, n_head, n_embd)
    _, pos, _ = _write_codes(model)
    _set_head(model, 0, 0, pos, pos, np.eye(block, k=-1))  # query at p matches key code p - 1
    return model


def induction_model(vocab: int = 20, block: int = 24, n_head: int = 2) -> GPT:
    """Two blocks: block 1 head 0 copies the previous token's code into ``PREV``; block 2
    head 0 queries with the current token against keys' ``PREV``: it reads the position
    just after an earlier copy of the current token, an induction head."""
    n_embd = n_head * (2 * vocab + block)
    model = _zeroed(vocab, block, 2, n_head, n_embd)
    tok, pos, prev = _write_codes(model)
    _set_head(model, 0, 0, pos, pos, np.eye(block, k=-1), v_from=tok, out_to=prev)
    _set_head(model, 1, 0, tok, prev, np.eye(vocab))
    return model
