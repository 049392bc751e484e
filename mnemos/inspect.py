"""The numbers behind the see-inside views: tokens, merges, next-token probabilities,
attention, anatomy and the learning replay.

Every function here is pure: it reads a tokenizer, a model or a checkpoint folder and
returns a plain dataclass whose ``to_dict()`` is JSON-serialisable. The command line
(``mnemos inspect``) prints them with the ``format_*`` functions at the end of this
module; the terminal app draws them. Nothing here samples, trains or writes anything:
the model, the tokenizer and the sampling rules are called, never re-implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mnemos.backend import to_numpy
from mnemos.config import ModelConfig
from mnemos.errors import MnemosError

# Whitespace made visible and control characters escaped in labels (heatmap axes,
# candidate lists, merge trees), so every token has a visible, one-line label.
_VISIBLE = str.maketrans({
    **{c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)]},
    ord(" "): "␣", ord("\n"): "↵", ord("\t"): "⇥", ord("\r"): "␍",
})


def token_text(data: bytes) -> str:
    """A token's bytes as text; bytes that are not valid UTF-8 on their own (half of a
    multi-byte character) are shown as ``\\xNN`` escapes instead of being hidden."""
    return data.decode("utf-8", errors="backslashreplace")


def token_label(data: bytes) -> str:
    """``token_text`` with whitespace made visible, for labels and lists."""
    return token_text(data).translate(_VISIBLE)


def _special_ids(tokenizer) -> dict[int, str]:
    return {i: s for s, i in tokenizer.special_tokens.items()}


# --------------------------------------------------------------------------- tokens


@dataclass
class TokenInfo:
    """One token of a text: its id, its bytes and where it sits in the text.
    ``start``/``end`` are byte offsets in the UTF-8 text; ``char_start``/``char_end``
    the characters it touches (a token that splits a character shares it)."""

    index: int
    id: int
    bytes: bytes
    text: str
    label: str
    start: int
    end: int
    char_start: int
    char_end: int
    special: bool = False

    def to_dict(self) -> dict:
        return {"index": self.index, "id": self.id, "bytes": self.bytes.hex(), "text": self.text,
                "label": self.label, "start": self.start, "end": self.end,
                "char_start": self.char_start, "char_end": self.char_end, "special": self.special}


@dataclass
class TokenView:
    """A text cut into tokens, with the counts that say how well the vocabulary fits it."""

    text: str
    tokens: list[TokenInfo]
    n_bytes: int
    n_chars: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens if self.tokens else 0.0

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.tokens else 0.0

    def token_at(self, char_index: int) -> TokenInfo | None:
        """The token covering character ``char_index`` (the cursor), or None past the end."""
        for tok in self.tokens:
            if tok.char_start <= char_index < tok.char_end:
                return tok
        return None

    def to_dict(self) -> dict:
        return {"n_bytes": self.n_bytes, "n_chars": self.n_chars, "n_tokens": self.n_tokens,
                "bytes_per_token": self.bytes_per_token, "chars_per_token": self.chars_per_token,
                "tokens": [t.to_dict() for t in self.tokens]}


def tokenize_view(tokenizer, text: str) -> TokenView:
    """Cut ``text`` into tokens with ``tokenizer.encode`` and place each one in the text.

    Special tokens typed in the text (``<|endoftext|>``) are shown as the single token
    they are, so what you see is what the model would read."""
    ids = tokenizer.encode(text, allowed_special="all")
    specials = _special_ids(tokenizer)
    data = text.encode("utf-8")
    # Character index of every byte: a byte starts a character unless it is 0b10xxxxxx.
    raw = np.frombuffer(data, dtype=np.uint8)
    char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
    tokens, start = [], 0
    for index, token_id in enumerate(ids):
        piece = tokenizer.token_bytes(token_id)
        end = start + len(piece)
        char_start = int(char_of_byte[start]) if start < len(data) else len(text)
        char_end = int(char_of_byte[end - 1]) + 1 if end > start else char_start
        tokens.append(TokenInfo(index, int(token_id), piece, token_text(piece), token_label(piece),
                                start, end, char_start, char_end, token_id in specials))
        start = end
    return TokenView(text, tokens, len(data), len(text))


# --------------------------------------------------------------------------- merges


@dataclass
class MergeNode:
    """A token and how BPE built it: a byte (leaf), a special token (leaf), or the merge
    of two earlier tokens. ``rank`` is the merge's position in the learned list: merges
    are learned most-frequent-pair first, so rank 0 was the most frequent pair."""

    id: int
    bytes: bytes
    label: str
    kind: str  # "byte", "merge" or "special"
    rank: int | None = None
    children: list["MergeNode"] = field(default_factory=list)

    def leaves(self) -> list["MergeNode"]:
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    @property
    def depth(self) -> int:
        return 1 + max((c.depth for c in self.children), default=0)

    def to_dict(self) -> dict:
        return {"id": self.id, "bytes": self.bytes.hex(), "label": self.label, "kind": self.kind,
                "rank": self.rank, "children": [c.to_dict() for c in self.children]}


def merge_tree(tokenizer, token_id: int) -> MergeNode:
    """The tree of merges that built ``token_id`` down to its bytes; its leaves, read
    left to right, are exactly ``tokenizer.token_bytes(token_id)``."""
    parts = {new_id: (rank, pair) for rank, (pair, new_id) in enumerate(tokenizer.merges)}
    specials = _special_ids(tokenizer)
    if not 0 <= token_id < tokenizer.vocab_size:
        raise MnemosError(f"token id {token_id} is outside the vocabulary (0..{tokenizer.vocab_size - 1})")

    def build(tid: int) -> MergeNode:
        piece = tokenizer.token_bytes(tid)
        if tid in specials:
            return MergeNode(tid, piece, specials[tid], "special")
        if tid not in parts:
            return MergeNode(tid, piece, token_label(piece), "byte")
        rank, (left, right) = parts[tid]
        return MergeNode(tid, piece, token_label(piece), "merge", rank, [build(left), build(right)])

    return build(int(token_id))


# --------------------------------------------------------------------------- next token


@dataclass
class Candidate:
    """A possible next token. ``raw_prob`` is the model's own softmax; ``prob`` the
    probability after temperature / top-k / top-p, the one sampling draws from (0 for a
    token the filters cut)."""

    id: int
    label: str
    prob: float
    raw_prob: float
    logit: float
    chosen: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "prob": self.prob, "raw_prob": self.raw_prob,
                "logit": self.logit, "chosen": self.chosen}


@dataclass
class NextTokenView:
    """The distribution the next token is drawn from, as sampling reshapes it.

    ``entropy`` is in bits; ``2 ** entropy`` ("effective choices") is how many equally
    likely tokens would be as uncertain. ``kept`` counts the tokens top-k / top-p left."""

    candidates: list[Candidate]
    entropy: float
    raw_entropy: float  # of the plain softmax (temperature 1, no filtering)
    kept: int
    temperature: float
    top_k: int | None
    top_p: float | None

    @property
    def effective_choices(self) -> float:
        return 2.0 ** self.entropy

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                "entropy_bits": self.entropy, "raw_entropy_bits": self.raw_entropy,
                "effective_choices": self.effective_choices, "kept": self.kept,
                "candidates": [c.to_dict() for c in self.candidates]}


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0].astype(np.float64)
    return float(-(p * np.log2(p)).sum())


def _context(model, ids) -> np.ndarray:
    """The last ``block_size`` ids as a (1, T) batch: what the model can see."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        raise MnemosError("the prompt is empty: type at least one character")
    return ids[-model.config.block_size:][None, :]


def next_token_logits(model, ids) -> np.ndarray:
    """The model's logits for the token after ``ids`` (the last ``block_size`` of them): (V,)."""
    logits, _ = model.forward(_context(model, ids))
    return to_numpy(logits[0, -1]).astype(np.float32)


def next_token_distribution(logits, tokenizer, temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None, k: int = 10,
                            chosen: int | None = None) -> NextTokenView:
    """Reshape ``logits`` exactly as sampling does (``mnemos.generate.sampling_distribution``)
    and return the ``k`` most likely candidates, plus ``chosen`` (the token that was
    drawn, marked) if it is not among them. Cheap: no forward pass, so a view can follow
    temperature / top-k / top-p as they change."""
    from mnemos.generate import sampling_distribution

    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    probs = np.asarray(sampling_distribution(logits, temperature, top_k, top_p), dtype=np.float64)
    shifted = logits.astype(np.float64) - logits.max()
    raw = np.exp(shifted)
    raw /= raw.sum()
    # The model's k best guesses, best first (ties by id). Reshaping is monotonic, so the
    # tokens sampling keeps come first and any cut by top-k / top-p follow with prob 0.
    k = max(1, min(int(k), logits.size))
    top = np.argpartition(-logits, k - 1)[:k]
    top = top[np.lexsort((top, -logits[top]))]
    if chosen is not None and chosen not in top:  # the drawn token is always listed, last
        top = np.append(top, chosen)
    candidates = [Candidate(int(i), token_label(tokenizer.token_bytes(int(i))), float(probs[i]),
                            float(raw[i]), float(logits[i]), chosen is not None and int(i) == chosen)
                  for i in top]
    return NextTokenView(candidates, _entropy_bits(probs), _entropy_bits(raw),
                         int((probs > 0).sum()), float(temperature), top_k, top_p)


def next_token_view(model, tokenizer, ids, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, k: int = 10) -> NextTokenView:
    """One forward pass over ``ids`` and the reshaped distribution of the next token."""
    return next_token_distribution(next_token_logits(model, ids), tokenizer, temperature, top_k,
                                   top_p, k)


# --------------------------------------------------------------------------- attention


@dataclass
class AttentionView:
    """Attention weights of every layer and head for one prompt: ``weights[l, h, q, k]``
    is how much query position q reads key position k (rows sum to 1; causal, so zero
    above the diagonal). ``labels`` are the tokens on both axes."""

    ids: list[int]
    labels: list[str]
    weights: np.ndarray  # (n_layer, n_head, T, T) float32
    truncated: int  # tokens dropped from the front to fit block_size

    @property
    def n_layer(self) -> int:
        return self.weights.shape[0]

    @property
    def n_head(self) -> int:
        return self.weights.shape[1]

    def head_summary(self) -> np.ndarray:
        """Per (layer, head): the mean distance, in tokens, between a query and the keys
        it reads (0 = each token reads itself, 1 = the previous token, ...)."""
        T = self.weights.shape[-1]
        pos = np.arange(T, dtype=np.float32)
        distance = pos[:, None] - pos[None, :]  # (T, T): q - k, >= 0 where allowed
        return (self.weights * np.maximum(distance, 0)).sum(-1).mean(-1)

    def to_dict(self, decimals: int = 4) -> dict:
        return {"ids": self.ids, "labels": self.labels, "truncated": self.truncated,
                "n_layer": self.n_layer, "n_head": self.n_head,
                "mean_distance": np.round(self.head_summary(), 3).tolist(),
                "weights": np.round(self.weights.astype(np.float64), decimals).tolist()}


def attention_view(model, tokenizer, text: str) -> AttentionView:
    """Encode ``text`` (keeping its last ``block_size`` tokens) and ask the model for its
    attention maps; they are computed only here, never in an ordinary forward pass."""
    ids = tokenizer.encode(text, allowed_special="all")
    idx = _context(model, ids)
    maps = model.attention_maps(idx)
    weights = np.stack([to_numpy(m[0]).astype(np.float32) for m in maps])
    kept = [int(i) for i in idx[0]]
    labels = [token_label(tokenizer.token_bytes(i)) for i in kept]
    return AttentionView(kept, labels, weights, len(ids) - len(kept))


# --------------------------------------------------------------------------- anatomy

_ROLES = {
    "wte": "token embedding: one learned vector per token id (also the output head, tied)",
    "wpe": "position embedding: one learned vector per position in the context",
    "ln_1": "LayerNorm before attention: normalise each vector, then scale and shift",
    "ln_2": "LayerNorm before the MLP",
    "ln_f": "final LayerNorm before the output head",
    "attn": "causal self-attention: each position reads earlier positions",
    "c_attn": "query, key and value projections, fused in one matrix",
    "scores": "softmax(QKᵀ/√d)·V over the context: no weights, only compute",
    "mlp": "feed-forward network: widen 4x, GELU, project back",
    "c_fc": "MLP up-projection to 4·n_embd",
    "lm_head": "output head: scores every token of the vocabulary (tied to wte)",
    "block": "transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))",
}

# Llama's parts where they differ from GPT-2's (same names, other layers)
_LLAMA_ROLES = {
    "wte": "token embedding: one learned vector per token id (also the output head, tied); no position table",
    "ln_1": "RMSNorm before attention: scale each vector to unit root mean square, then by a learned gain",
    "ln_2": "RMSNorm before the MLP",
    "ln_f": "final RMSNorm before the output head",
    "attn": "causal self-attention: each position reads earlier ones; queries and keys are rotated by "
            "their position (RoPE)",
    "c_attn": "query, key and value projections, fused in one matrix, no bias",
    "mlp": "SwiGLU feed-forward: silu(gate) times up, then project back",
    "c_fc": "MLP gate and up projections to intermediate_size, side by side in one matrix",
    "block": "transformer block: x + attn(rmsnorm(x)), then x + mlp(rmsnorm(x))",
}
_UNTIED_ROLES = {
    "wte": "token embedding: one learned vector per token id",
    "lm_head": "output head: scores every token of the vocabulary (a matrix of its own, untied)",
}


def _roles(config: ModelConfig) -> dict[str, str]:
    roles = dict(_ROLES)
    if config.arch == "llama":
        roles.update(_LLAMA_ROLES)
    if not config.tied_head:
        roles.update(_UNTIED_ROLES)
    return roles


@dataclass
class Component:
    """One node of the anatomy tree. ``params`` counts the weights it owns (the tied
    head owns none); ``flops`` is forward FLOPs per token (2 per multiply-add, matmuls
    only, attention at a full context of ``block_size``); ``stats`` (norm, mean, std,
    absmax) are present when weights were given."""

    name: str
    kind: str  # "model", "block", "group", "tensor", "compute" or "tied"
    role: str = ""
    shape: tuple[int, ...] | None = None
    params: int = 0
    share: float = 0.0
    flops: int = 0
    stats: dict | None = None
    children: list["Component"] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, name: str) -> "Component | None":
        return next((c for c in self.walk() if c.name == name), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role,
                "shape": list(self.shape) if self.shape else None, "params": self.params,
                "share": self.share, "flops": self.flops, "stats": self.stats,
                "children": [c.to_dict() for c in self.children]}


def _tensor_stats(a: np.ndarray) -> dict:
    a = to_numpy(a).astype(np.float64).reshape(-1)
    return {"n": int(a.size), "sum": float(a.sum()), "sumsq": float(np.dot(a, a)),
            "absmax": float(np.abs(a).max()) if a.size else 0.0}


def _finish_stats(raw: dict) -> dict:
    n = raw["n"]
    mean = raw["sum"] / n
    var = max(raw["sumsq"] / n - mean * mean, 0.0)
    return {"norm": math.sqrt(raw["sumsq"]), "mean": mean, "std": math.sqrt(var),
            "absmax": raw["absmax"]}


def _merge_raw(items: list[dict]) -> dict:
    return {"n": sum(r["n"] for r in items), "sum": sum(r["sum"] for r in items),
            "sumsq": sum(r["sumsq"] for r in items), "absmax": max(r["absmax"] for r in items)}


def _group_path(name: str) -> list[str]:
    """``h.0.attn.c_attn.weight`` -> ``["h.0", "h.0.attn", "h.0.attn.c_attn",
    "h.0.attn.c_attn.weight"]``: the tree nodes a parameter name sits under."""
    parts = name.split(".")
    head = 2 if parts[0] == "h" and len(parts) > 1 else 1
    path = [".".join(parts[:head])]
    for i in range(head + 1, len(parts) + 1):
        path.append(".".join(parts[:i]))
    return path


def _role(name: str, kind: str, roles: dict[str, str]) -> str:
    if kind == "block":
        return roles["block"]
    last = name.split(".")[-1]
    if last == "c_proj":
        return "attention output projection" if ".attn." in name else "MLP down-projection to n_embd"
    return roles.get(last, "")


def _linear_flops(name: str, shape: tuple[int, ...]) -> int:
    """Forward FLOPs per token of a parameter: 2·in·out for a linear weight (stored
    (in, out)) or an untied head, nothing for biases, norm gains and embedding lookups."""
    if len(shape) == 2 and (name == "lm_head" or name.split(".")[0] == "h" and name.endswith(".weight")):
        return 2 * shape[0] * shape[1]
    return 0


def _param_shapes(model_or_config) -> tuple[ModelConfig, list[tuple[str, tuple[int, ...]]], dict | None]:
    if isinstance(model_or_config, ModelConfig):
        from mnemos.nn import param_specs

        return model_or_config, [(name, shape) for name, shape, _ in param_specs(model_or_config)], None
    store = model_or_config.params
    return (model_or_config.config, [(n, tuple(store.shapes[n])) for n in store.names],
            {n: to_numpy(store.view(n)) for n in store.names})


def anatomy(model_or_config, params: dict | None = None) -> Component:
    """The model as a tree: embeddings, each block's ln_1 / attn / ln_2 / mlp, ln_f and
    the head, each node with its shapes, parameter count, share of the total, forward
    FLOPs per token and, when weights are known, their statistics.

    ``model_or_config`` is a ``GPT`` (its weights give the statistics) or a
    ``ModelConfig`` (shapes only, unless ``params`` maps parameter names to arrays,
    e.g. a checkpoint's ``model.npz``)."""
    config, shapes, weights = _param_shapes(model_or_config)
    if params is not None:
        weights = {n: np.asarray(params[n]) for n, _ in shapes if n in params}
    T, C, V = config.block_size, config.n_embd, config.vocab_size
    roles = _roles(config)
    shape = "GPT-2" if config.arch == "gpt2" else f"Llama (MLP width {config.intermediate_size})"
    root = Component("gpt", "model", f"{shape}: {config.n_layer} blocks, {config.n_head} heads, "
                     f"n_embd {C}, context {T}, vocabulary {V}")
    nodes: dict[str, Component] = {"": root}
    raw: dict[str, list[dict]] = {}
    for name, shape in shapes:
        path = _group_path(name)
        parent = root
        for depth, node_name in enumerate(path):
            node = nodes.get(node_name)
            if node is None:
                leaf = depth == len(path) - 1
                kind = "tensor" if leaf else ("block" if depth == 0 and node_name.startswith("h.") else "group")
                node = Component(node_name, kind, "" if leaf and depth else _role(node_name, kind, roles),
                                 shape if leaf else None)
                if leaf and depth == 0:  # wte, wpe, lm_head: tensors at the top level
                    node.role = _role(node_name, kind, roles)
                nodes[node_name] = node
                parent.children.append(node)
                if node_name.endswith(".attn"):
                    node.children.append(Component(node_name + ".scores", "compute", roles["scores"],
                                                   flops=4 * T * C))
            parent = node
        leaf = nodes[name]
        leaf.params = int(np.prod(shape))
        leaf.flops = _linear_flops(name, shape)
        if weights is not None and name in weights:
            raw[name] = [_tensor_stats(weights[name])]
    if nodes.get("wte") is not None and "lm_head" not in nodes:
        root.children.append(Component("lm_head", "tied", roles["lm_head"], (C, V), flops=2 * C * V))

    total = sum(c.params for c in root.walk() if not c.children)

    def fold(node: Component) -> list[dict]:
        """Sum params and FLOPs bottom-up, and pool the statistics of the tensors below."""
        pooled = list(raw.get(node.name, [])) if not node.children else []
        for child in node.children:
            pooled += fold(child)
        if node.children:
            node.params = sum(c.params for c in node.children)
            node.flops = sum(c.flops for c in node.children)
        node.share = node.params / total if total else 0.0
        if pooled and node.kind not in ("compute", "tied"):
            node.stats = _finish_stats(_merge_raw(pooled))
        return pooled

    fold(root)
    return root


# --------------------------------------------------------------------------- replay


@dataclass
class ReplayFrame:
    """The run's fixed prompt completed at one evaluation, with the losses at that step
    and the induction bump's numbers (``EvalEvent.icl_score`` / ``induction_score``)."""

    step: int
    prompt: str
    text: str
    val_loss: float | None
    train_loss: float | None = None
    icl_score: float | None = None
    induction_score: float | None = None

    def to_dict(self) -> dict:
        return {"step": self.step, "prompt": self.prompt, "text": self.text, "val_loss": self.val_loss,
                "train_loss": self.train_loss, "icl_score": self.icl_score, "induction_score": self.induction_score}


def replay_frames(records: list[dict]) -> list[ReplayFrame]:
    """Replay frames from metrics rows (``metrics.jsonl``, or a live trainer's
    ``metrics``): every ``sample`` row in step order, with its evaluation's numbers."""
    evals = {r.get("step"): r for r in records if r.get("event") == "eval"}
    frames = [ReplayFrame(int(r["step"]), r.get("prompt", ""), r.get("text", ""), r.get("val_loss"),
                          *(evals.get(r["step"], {}).get(k) for k in ("train_loss", "icl_score", "induction_score")))
              for r in records if r.get("event") == "sample"]
    frames.sort(key=lambda f: f.step)
    return frames


def replay(checkpoint_dir) -> list[ReplayFrame]:
    """The learning replay of a run: from ``metrics.jsonl``, every recorded sample of the
    fixed prompt in step order, next to the train / validation loss of that evaluation."""
    from mnemos.checkpoint import read_metrics

    return replay_frames(read_metrics(checkpoint_dir))


# --------------------------------------------------------------------------- a checkpoint


def inspect_checkpoint(checkpoint_dir, prompt: str = "\n", temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None, k: int = 10) -> dict:
    """Every view of one checkpoint for one prompt (what ``mnemos inspect`` prints):
    ``{"checkpoint", "prompt", "tokens", "next_token", "attention", "anatomy"}``, each a
    view object. The prompt is encoded as generation encodes it."""
    from mnemos.checkpoint import load_checkpoint
    from mnemos.generate import Generator, check_sampling

    check_sampling(temperature, top_k, top_p)
    ckpt = load_checkpoint(checkpoint_dir)
    model, tokenizer = ckpt.model, ckpt.tokenizer
    ids = Generator(model, tokenizer).encode_prompt(prompt)
    return {
        "checkpoint": str(checkpoint_dir),
        "prompt": prompt,
        "tokens": tokenize_view(tokenizer, prompt),
        "next_token": next_token_view(model, tokenizer, ids, temperature, top_k, top_p, k),
        "attention": attention_view(model, tokenizer, prompt) if prompt else None,
        "anatomy": anatomy(model),
    }


def views_to_dict(views: dict) -> dict:
    """``inspect_checkpoint``'s views as one JSON-serialisable object."""
    return {key: value.to_dict() if hasattr(value, "to_dict") else value for key, value in views.items()}
