"""The model, assembled from the layers in :mod:`mnemos.nn.layers` and :mod:`mnemos.nn.llama`.

``wte (+ wpe) -> n_layer x Block -> ln_f -> logits = x @ wte^T`` (or ``x @ lm_head^T``
with an untied head). A Block is pre-norm: ``x += attn(ln_1(x)); x += mlp(ln_2(x))``, so
the residual stream is one ``(B*T, C)`` buffer updated in place, and its gradient likewise.

``config.arch`` chooses the block's parts: GPT-2 (learned positions ``wpe``, LayerNorm,
GELU MLP, biases) or Llama (rotary positions in attention, RMSNorm, SwiGLU MLP, no
biases). Both keep the same parameter names (``ln_1`` is the norm before attention,
``c_attn`` the fused q/k/v projection, ``c_fc`` the MLP's up projection: for Llama the
gate and up projections side by side), so the rest of Mnemos treats them alike.
"""

from __future__ import annotations

import math

import numpy as np

from mnemos.backend import get_array_module, to_numpy
from mnemos.config import ModelConfig
from mnemos.errors import CheckpointError, ContextError
from mnemos.nn.kvcache import KVCache
from mnemos.nn.layers import MLP, CausalSelfAttention, CrossEntropy, Embedding, LayerNorm, grad_product
from mnemos.nn.llama import RMSNorm, Rotary, SwiGLU
from mnemos.nn.params import ParamStore
from mnemos.nn.workspace import Workspace


def param_specs(config: ModelConfig) -> list[tuple[str, tuple[int, ...], bool]]:
    """``(name, shape, weight_decay)`` for every parameter, in the stable order.

    Weight decay applies to the 2-D matrices (``wte``, the linear weights, an untied
    ``lm_head``), not to biases, norm gains or the position embedding ``wpe``. GPT-2 has
    ``wpe`` and biases; Llama has neither, and its ``c_fc`` is ``(C, 2F)``: the gate and
    up projections side by side (``F = intermediate_size``).
    """
    C, V, F = config.n_embd, config.vocab_size, config.intermediate_size
    gpt2 = config.arch == "gpt2"
    fc = F if gpt2 else 2 * F
    specs = [("wte", (V, C), True)] + ([("wpe", (config.block_size, C), False)] if gpt2 else [])

    def norm(name):
        return [(name + ".weight", (C,), False)] + ([(name + ".bias", (C,), False)] if gpt2 else [])

    def linear(name, n_in, n_out):
        return [(name + ".weight", (n_in, n_out), True)] + ([(name + ".bias", (n_out,), False)] if gpt2 else [])

    for i in range(config.n_layer):
        p = f"h.{i}."
        specs += (norm(p + "ln_1") + linear(p + "attn.c_attn", C, 3 * C) + linear(p + "attn.c_proj", C, C)
                  + norm(p + "ln_2") + linear(p + "mlp.c_fc", C, fc) + linear(p + "mlp.c_proj", F, C))
    specs += norm("ln_f")
    if not config.tied_head:
        specs.append(("lm_head", (V, C), True))
    return specs


def _norm(params, name, ws, config):
    """The block's normalisation: LayerNorm (GPT-2) or RMSNorm (Llama)."""
    return (LayerNorm if config.arch == "gpt2" else RMSNorm)(params, name, ws, config.norm_eps)


class Block:
    """Pre-norm transformer block; forward and backward update the residual in place.
    ``rope`` (Llama) is the rotary table shared by every block, None for GPT-2."""

    def __init__(self, params, i, ws, config, rng, rope=None):
        p = f"h.{i}."
        self.ln_1 = _norm(params, p + "ln_1", ws, config)
        self.attn = CausalSelfAttention(params, p + "attn", ws, config.n_head, config.block_size,
                                        config.dropout, rng, rope)
        self.ln_2 = _norm(params, p + "ln_2", ws, config)
        self.mlp = MLP(params, p + "mlp", ws, config.dropout, rng, None if rope is None else SwiGLU)

    def forward(self, x, B, T, train, record=None):  # (B*T, C) residual, in place
        x += self.attn.forward(self.ln_1.forward(x), B, T, train, record)
        x += self.mlp.forward(self.ln_2.forward(x), train)

    def backward(self, dx):  # (B*T, C) residual gradient, in place
        dx += self.ln_2.backward(self.mlp.backward(dx))
        dx += self.ln_1.backward(self.attn.backward(dx))

    def forward_cached(self, x, B, t, cache, layer, start):  # (B*t, C) residual, in place
        x += self.attn.forward_cached(self.ln_1.forward(x), B, t, cache.k[layer], cache.v[layer], start)
        x += self.mlp.forward(self.ln_2.forward(x), train=False)


class GPT:
    """A GPT-2- or Llama-shaped language model (``config.arch``) with hand-written backward.

    ``params`` holds every weight in one flat buffer (``params.data``) and every gradient
    in another (``params.grad``). ``rng`` is the dropout generator, seeded from ``seed``
    (save ``rng.bit_generator.state`` to resume a run bit for bit).
    """

    def __init__(self, config: ModelConfig, dtype=np.float32, seed: int = 0, device: str = "cpu",
                 params: ParamStore | None = None):
        self.config = config
        self.xp = get_array_module(device)
        self.dtype = np.dtype(dtype)
        self.params = params if params is not None else ParamStore(param_specs(config), self.dtype, self.xp)
        self.ws = Workspace(self.xp, self.dtype, max_shapes=4)
        self.rng = np.random.default_rng([seed, 1])
        self._build_layers()
        self.ce = CrossEntropy(self.ws)
        if params is None:
            self.init_weights(seed)

    def _build_layers(self) -> None:
        """The layers, holding views of ``params``; forgets any pending backward."""
        config = self.config
        self.emb = Embedding(self.params, self.ws, config.dropout, self.rng)
        rope = (None if config.arch == "gpt2"
                else Rotary(self.ws, config.n_head, config.head_dim, config.block_size, config.rope_theta))
        self.blocks = [Block(self.params, i, self.ws, config, self.rng, rope) for i in range(config.n_layer)]
        self.ln_f = _norm(self.params, "ln_f", self.ws, config)
        self.head_param = "wte" if config.tied_head else "lm_head"  # the output head
        self._xf = None
        self._ready = False

    def rebind_params(self, data, grad) -> None:
        """Move the weights and gradients into the flat buffers ``data`` and ``grad``
        (values copied; see ``ParamStore.rebind``) and point the layers at them. The
        ``ParamStore`` object stays the same, so an optimizer built on it follows."""
        self.params.rebind(data, grad)
        self._build_layers()

    def init_weights(self, seed: int) -> None:
        """GPT-2 init (Llama too): N(0, 0.02) matrices and embeddings, residual projections
        N(0, 0.02 / sqrt(2 n_layer)), zero biases, norm weights 1. Drawn in float64
        from ``default_rng(seed)`` so float32 and float64 models start from the same values."""
        rng = np.random.default_rng(seed)
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name in self.params.names:
            view = self.params.view(name)
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                view[...] = 1.0
            elif name.endswith(".bias"):
                view[...] = 0.0
            else:
                std = proj_std if name.endswith("c_proj.weight") else 0.02
                view[...] = self.xp.asarray(rng.normal(0.0, std, size=view.shape))

    # ---- training -------------------------------------------------------------------

    def _tokens(self, idx, what="idx"):
        """``idx`` as a 2-D index array of the model's device (any integer dtype in)."""
        idx = self.xp.asarray(idx)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"{what} must be 2-D (batch, time) integers, got {idx.dtype} of shape {idx.shape}")
        if idx.shape[1] > self.config.block_size:
            raise ContextError(f"{idx.shape[1]} tokens exceed the model's block_size of "
                               f"{self.config.block_size}; crop the input to the last {self.config.block_size}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"{what} holds token ids outside [0, {self.config.vocab_size}): "
                             "was the text encoded with another tokenizer?")
        return idx.astype(self.xp.intp, copy=False)

    def forward(self, idx, targets=None, train: bool = False, _record=None):
        """``(B, T)`` token ids -> ``(logits (B, T, V), mean cross-entropy or None)``.

        With ``train=True`` dropout is applied and what ``backward()`` needs is kept; the
        returned logits are then a model-owned buffer, valid until the next forward (copy
        them to keep them). With ``train=False`` the logits are a fresh array.
        """
        xp = self.xp
        idx = self._tokens(idx)
        B, T = idx.shape
        N, C, V = B * T, self.config.n_embd, self.config.vocab_size
        self._ready = False
        self.ws.use((B, T))
        x = self.emb.forward(idx, train, out=self.ws.get("residual", (N, C)))
        for block in self.blocks:
            block.forward(x, B, T, train, _record)
        xf = self.ln_f.forward(x)
        logits = self.ws.get("logits", (N, V))
        xp.matmul(xf, self.params.view(self.head_param).T, out=logits)
        loss = None
        if targets is not None:
            targets = self._tokens(targets, "targets")
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {targets.shape} does not match idx shape {idx.shape}")
            loss = self.ce.forward(logits, targets.reshape(-1), keep=train)
            self._xf, self._ready = xf, train
        logits = logits.reshape(B, T, V)
        return (logits if train else logits.copy()), loss

    def backward(self, scale: float = 1.0, accumulate: bool = True) -> None:
        """Add d(``scale`` x mean loss of the last forward)/d(params) into ``params.grad``;
        with ``accumulate=False``, write it over ``params.grad`` instead (no zeroing
        pass needed, and no extra pass over each gradient).

        The last call must have been ``forward(idx, targets, train=True)``. One
        micro-batch's gradient is exactly this pair of calls, so a worker can run it on
        a slice of the batch with its own model object sharing ``params``; ``scale`` is
        the micro-batch's weight in the step's mean loss (its share of the batch, or
        ``1 / grad_accum``), applied once to the loss gradient rather than to every
        parameter gradient afterwards.
        """
        if not self._ready:
            raise RuntimeError("backward() needs a preceding forward(idx, targets, train=True)")
        self._ready = False
        xp, ws = self.xp, self.ws
        self.params.accumulate = accumulate
        try:
            dlogits = self.ce.backward(scale)  # (N, V)
            head, dhead = self.params.view(self.head_param), self.params.grad_view(self.head_param)
            dxf = ws.get("dxf", self._xf.shape)
            xp.matmul(dlogits, head, out=dxf)
            grad_product(dlogits.T, self._xf, dhead, self.params, ws, "dwte")  # a tied head writes dwte first
            if self.head_param != "wte" and not accumulate:
                self.params.grad_view("wte").fill(0)  # the embedding's scatter-add only adds
            dx = ws.get("dresidual", dxf.shape)  # the residual stream's gradient, updated in place
            dx[...] = self.ln_f.backward(dxf)
            for block in reversed(self.blocks):
                block.backward(dx)
            self.emb.backward(dx)
        finally:
            self.params.accumulate = True

    # ---- inference ------------------------------------------------------------------

    def new_cache(self, batch: int = 1) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head, self.xp, self.dtype)

    def forward_cached(self, idx_new, cache: KVCache):
        """Logits ``(B, t, V)`` for ``t`` new tokens after the ``cache.length`` cached ones
        (appends them to the cache). Equals the matching rows of a full ``forward``."""
        idx_new = self._tokens(idx_new, "idx_new")
        B, t = idx_new.shape
        if B != cache.batch:
            raise ValueError(f"idx_new has batch {B} but the cache was made for batch {cache.batch}")
        start = cache.reserve(t)
        self._ready = False
        self.ws.use(("cached", B, t))
        x = self.emb.forward(idx_new, False, self.ws.get("residual", (B * t, self.config.n_embd)), start)
        for i, block in enumerate(self.blocks):
            block.forward_cached(x, B, t, cache, i, start)
        cache.length = start + t
        xf = self.ln_f.forward(x)
        return (xf @ self.params.view(self.head_param).T).reshape(B, t, -1)

    def attention_maps(self, idx) -> list:
        """One ``(B, n_head, T, T)`` array of attention probabilities per layer."""
        maps: list = []
        self.forward(idx, _record=maps)
        return [to_numpy(m) for m in maps]

    # ---- weights --------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter as host NumPy arrays, keyed by stable name."""
        return {name: to_numpy(self.params.view(name)).copy() for name in self.params.names}

    def load_state_dict(self, state: dict) -> None:
        """Copy weights in; names and shapes must match exactly (``CheckpointError``)."""
        names = set(self.params.names)
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        if missing or unexpected:
            raise CheckpointError(
                f"weights do not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
                "was the checkpoint made with another model config?")
        for name in self.params.names:
            want, got = self.params.shapes[name], tuple(np.shape(state[name]))
            if want != got:
                raise CheckpointError(f"weight {name!r} has shape {got}, the model expects {want}; "
                                      "was the checkpoint made with another model config?")
        for name in self.params.names:
            self.params.view(name)[...] = self.xp.asarray(state[name], dtype=self.dtype)

    def num_params(self) -> int:
        return self.params.count
