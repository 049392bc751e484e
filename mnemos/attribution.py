"""Direct logit attribution: how much each part of the network pushed one token's logit.

The residual stream at the last block's output is a sum of parts: the token embedding,
the position embedding (GPT-2), and what each block's attention and MLP added. The
final norm is linear in its input once its per-position scale (``1/sqrt(var + eps)``
for LayerNorm, ``1/sqrt(mean(x^2) + eps)`` for RMSNorm) is frozen at the value it had
(LayerNorm also subtracts the mean, which is linear too), and the head is linear, so the
logit of a token splits exactly into one term per part plus the norm's bias term (zero
for RMSNorm):

    logit[t] = sum_parts (centre(part) * scale * w_norm) . W_U[:, t]  +  b_norm . W_U[:, t]

"Direct" because it counts only the path from a part straight to the output; what a
part does by changing later layers' inputs is credited to those layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnemos.activations import final_norm_linear, head_weight, run_with_cache
from mnemos.backend import to_numpy
from mnemos.errors import MnemosError
from mnemos.inspect import _context, token_label


@dataclass
class Attribution:
    """The direct contributions to the logit of ``token`` predicted at ``position``.
    ``parts`` are ``(name, contribution)`` in stream order; ``sum(parts) + bias == logit``."""

    ids: list[int]
    labels: list[str]
    position: int
    token: int
    token_label: str
    logit: float
    prob: float
    rank: int  # 0 = the model's top choice
    bias: float  # the final norm's bias term (and the head's, if it had one)
    parts: list[tuple[str, float]]

    @property
    def total(self) -> float:
        return float(sum(v for _, v in self.parts))

    def to_dict(self) -> dict:
        return {"ids": self.ids, "labels": self.labels, "position": self.position, "token": self.token,
                "token_label": self.token_label, "logit": self.logit, "prob": self.prob, "rank": self.rank,
                "bias": self.bias, "parts": [{"name": n, "logit": v} for n, v in self.parts]}


def direct_logit_attribution(model, tokenizer, ids, position: int = -1, token: int | None = None) -> Attribution:
    """Split the logit of ``token`` (default: the model's top prediction) at ``position``
    (default: the last, the next token) of ``ids`` (its last ``block_size``) into the
    embeddings' and each block's attention and MLP contributions."""
    return attribute(model, tokenizer, run_with_cache(model, _context(model, ids)), position, token)


def attribute(model, tokenizer, cache, position: int = -1, token: int | None = None) -> Attribution:
    """``direct_logit_attribution`` from a cache of the prompt (``run_with_cache``): no
    forward pass, only products of ``C``-vectors, so a view can follow its cursor."""
    T, V = cache.idx.shape[1], model.config.vocab_size
    if not -T <= position < T:
        raise MnemosError(f"position {position} is outside the prompt's {T} tokens (0..{T - 1}, or -1 for the last)")
    position %= T
    logits = cache.logits[0, position].astype(np.float64)
    if token is None:
        token = int(np.argmax(logits))
    elif not 0 <= token < V:
        raise MnemosError(f"token id {token} is outside the vocabulary (0..{V - 1})")
    norm = final_norm_linear(model, cache.resid[-1, 0, position])
    u = to_numpy(head_weight(model)[:, token]).astype(np.float64)  # (C,)
    tok_emb = to_numpy(model.params.view("wte")[int(cache.idx[0, position])]).astype(np.float64)
    parts = [("token embedding", tok_emb)]
    if "wpe" in model.params:  # GPT-2's learned positions (Llama's enter as rotations in attention)
        parts.append(("position embedding", cache.embed[0, position].astype(np.float64) - tok_emb))
    for layer in range(cache.n_layer):
        parts += [(f"block {layer + 1} attention", cache.attn_out[layer, 0, position]),
                  (f"block {layer + 1} MLP", cache.mlp_out[layer, 0, position])]
    contributions = [(name, float(norm.apply(vec) @ u)) for name, vec in parts]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    kept = [int(i) for i in cache.idx[0]]
    return Attribution(
        ids=kept, labels=[token_label(tokenizer.token_bytes(i)) for i in kept], position=position,
        token=int(token), token_label=token_label(tokenizer.token_bytes(int(token))), logit=float(logits[token]),
        prob=float(probs[token]), rank=int((logits > logits[token]).sum()), bias=float(norm.bias @ u),
        parts=contributions)
