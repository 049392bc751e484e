"""``--preset auto``: the model and recipe that suit this text, this time budget and this machine.

:func:`choose` is a pure function of three measurements, so the same measurements give
the same choice, and tests can give it any:

- :class:`TextStats`: the training text's size in bytes and its bytes per token at each
  candidate vocabulary (:func:`measure_text` trains one BPE on a sample of the text and
  encodes the sample with each vocabulary's prefix of its merges);
- the time budget in seconds;
- a speed model (``mnemos.calibrate``): this machine's tokens per second for any shape.

It walks a ladder of shapes and picks the one whose tokens seen in the budget, discounted
for repeats of a small text (Muennighoff et al. 2023: repeated tokens are worth less and
less), are closest to a target number per parameter (Hoffmann et al. 2022 found ~20
compute-optimal; the target here falls with the compute, fitted to ``benchmarks/auto_sweep.py``
at 60 s and 5 minutes, see docs/auto.md). Vocabulary, context, batch, learning rate, warmup, weight decay, dropout
and sampling follow from the text and that choice. Every choice comes with one line saying why. Settings the user
gave (``fixed``) are kept and the rest is chosen around them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mnemos.config import BASE_VOCAB, ModelConfig

VOCABS = (512, 1024, 2048)  # candidate BPE sizes (the byte tokens included)
TOKENS_PER_VOCAB_ENTRY = 500  # the largest vocabulary whose entries each get this many training tokens (docs/auto.md)
LADDER = (  # (n_layer, n_embd), heads of 32 dimensions, smallest first
    (2, 64), (3, 96), (4, 128), (4, 160), (5, 192), (6, 256), (8, 320), (8, 384), (10, 512),
)
HEAD_DIM = 32
# Target tokens seen (effective) per block parameter, fitted in docs/auto.md: 40 at the compute of
# the 60-second sweep (55 s of training at 160 GFLOP/s), 10 at the 5-minute one's (276 s at 178
# GFLOP/s), log-linear in the compute between them and held outside (longer budgets not measured).
TOKENS_PER_PARAM = ((8.8e12, 40.0), (4.9e13, 10.0))  # (training FLOPs of the machine, target)
REPEAT_HALF_LIFE = 15.0  # R* of Muennighoff et al.: repeats beyond ~15 epochs add almost nothing
DROPOUT_FROM = 8.0  # repeats of the text before dropout starts (docs/auto.md: 4.2 repeats trained best without)
# Per optimizer, from the 5-minute measurements (docs/auto.md): tokens a step (batch x block) and
# the peak learning rate at n_embd BASE_WIDTH, scaled by 1/sqrt(width). Muon's Newton-Schulz cost
# is per step, so it takes steps twice as large: as good on Shakespeare, more tokens a second.
TOKENS_PER_STEP = {"adamw": 1024, "muon": 2048, "sgd": 1024}
BASE_LR, BASE_WIDTH = {"adamw": 2e-3, "muon": 4e-3, "sgd": 2e-3}, 128
WEIGHT_DECAY = 0.3  # nanoGPT's 0.1 x 3 (with decay to 0: better on Shakespeare, the same on French; docs/auto.md)
PROBE_TOKENS = 1024  # tokens a step of the calibration's timed steps (8 x 128)
TRAIN_SHARE = 0.92  # of the budget after preparation: the rest evaluates and saves
EVALS = 10  # evaluations in a run
PREP_S_PER_MB = 0.6  # seconds of tokenizer training + encoding per MB (this project's BPE on 2 cores)
ARCH, OPTIMIZER = "llama", "muon"  # the recipe the 5-minute measurements favour (docs/auto.md)
RECIPE_REASON = "at 5 minutes on Shakespeare llama beat gpt2 by 5%, and muon beat adamw by 1%, docs/auto.md"


class Speed(Protocol):
    flops_per_s: float

    def tokens_per_s(self, cfg: ModelConfig) -> float: ...


def newton_schulz_flops(cfg: ModelConfig) -> float:
    """FLOPs of one Muon step's Newton-Schulz iterations (``mnemos.muon``) on ``cfg``'s hidden
    matrices: per matrix ``m x n`` (``m <= n``), each of the five iterations costs
    ``X X^T`` (2 m^2 n), ``A^2`` (2 m^3) and ``B X`` (2 m^2 n). A per-step cost, unlike the
    per-token training FLOPs the calibration times, so it weighs more at small batches."""
    from mnemos.muon import NS_STEPS

    C = cfg.n_embd
    hidden = 2 * cfg.intermediate_size if cfg.arch == "llama" else 4 * C  # SwiGLU's gate and up are one matrix
    mlp_in, mlp_out = (hidden, cfg.intermediate_size) if cfg.arch == "llama" else (hidden, hidden)
    shapes = ((C, 3 * C), (C, C), (C, mlp_in), (mlp_out, C))
    per_layer = sum(4 * min(r, c) ** 2 * max(r, c) + 2 * min(r, c) ** 3 for r, c in shapes)
    return float(NS_STEPS * cfg.n_layer * per_layer)


def recipe_tokens_per_s(speed: Speed, cfg: ModelConfig, tokens_per_step: int, optimizer: str = "adamw") -> float:
    """``speed``'s tokens per second for ``cfg`` (timed with AdamW), less the time Muon's
    Newton-Schulz iterations add to every step of ``tokens_per_step`` tokens, at the calibrated
    FLOP rate: they run in the main process while the workers wait, a share of the matrices on
    each core (measured at 4 x 128, vocabulary 2049: 12 ms a step, 13 ms predicted)."""
    tps = speed.tokens_per_s(cfg)
    if optimizer != "muon":
        return tps
    return 1.0 / (1.0 / tps + newton_schulz_flops(cfg) / (speed.flops_per_s * tokens_per_step))


@dataclass(frozen=True)
class TextStats:
    """What the rule needs to know about the text: its size in bytes and its bytes per
    token at each candidate vocabulary (measured on a sample)."""

    n_bytes: int
    bytes_per_token: dict[int, float]

    def tokens(self, vocab: int) -> int:
        return max(1, int(self.n_bytes / self.bytes_per_token.get(vocab, 1.0)))


@dataclass(frozen=True)
class AutoChoice:
    """``model`` (ModelConfig fields) and ``train`` (TrainConfig fields: ``time_budget`` the
    budget, ``max_steps`` None so that the budget plans the schedule) chosen, and one line
    of reason per choice (in the order a person reads them)."""

    model: dict
    train: dict
    reasons: list[str] = field(default_factory=list)
    tokens_seen: int = 0
    epochs: float = 0.0
    steps: int = 0  # the steps the budget is expected to fit (the run itself plans them with the budget)


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.0f} KB"


def _count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.0f} s"


def effective_tokens(seen: float, unique: float) -> float:
    """Tokens seen, counting repeats less (Muennighoff et al. 2023, eq. 5): the first epoch
    counts fully, epoch ``1 + R`` adds ``unique * R* * (1 - exp(-R / R*))`` in all."""
    if seen <= unique:
        return seen
    repeats = seen / unique - 1.0
    return unique * (1.0 + REPEAT_HALF_LIFE * (1.0 - math.exp(-repeats / REPEAT_HALF_LIFE)))


def target_tokens_per_param(flops: float) -> float:
    """The tokens per parameter the shape is chosen for, given the training FLOPs the machine
    can do in the budget: ``TOKENS_PER_PARAM``'s two fitted points, log-linear between them,
    held beyond. Fewer tokens per parameter as compute grows (a larger share of it goes to
    the model: Kaplan et al. 2020's N ~ C^0.73; at these tiny sizes the measured fall is steeper)."""
    (c0, r0), (c1, r1) = TOKENS_PER_PARAM
    x = min(1.0, max(0.0, math.log(max(flops, 1.0) / c0) / math.log(c1 / c0)))
    return r0 * (r1 / r0) ** x


def block_params(n_layer: int, n_embd: int) -> int:
    """Weights in the Transformer blocks (the embeddings are lookups, not compute)."""
    return 12 * n_layer * n_embd * n_embd


def _heads(n_embd: int) -> int:
    return max(1, n_embd // HEAD_DIM)


def _vocab_for(stats: TextStats) -> int:
    """The largest candidate vocabulary that leaves each entry ``TOKENS_PER_VOCAB_ENTRY``
    training tokens; bytes when the text is too small for any."""
    fits = [v for v in VOCABS if stats.tokens(v) >= TOKENS_PER_VOCAB_ENTRY * v]
    return max(fits) if fits else BASE_VOCAB


def _vocab_reason(stats: TextStats, vocab: int) -> str:
    if vocab == BASE_VOCAB:
        return (f"vocabulary 256 (bytes): {_mb(stats.n_bytes)} is too little text to learn merges "
                f"({TOKENS_PER_VOCAB_ENTRY} tokens per entry wanted)")
    return (f"vocabulary {vocab}: {_mb(stats.n_bytes)} -> {_count(stats.tokens(vocab))} tokens at "
            f"{stats.bytes_per_token[vocab]:.2f} bytes/token, >= {TOKENS_PER_VOCAB_ENTRY} per entry "
            f"(a larger vocabulary would have fewer)")


def _block_size(tokens: int) -> int:
    """128 tokens of context, 64 for a text too short to cut into many windows of 128."""
    return 128 if tokens >= 200 * 128 else 64


def _dropout(epochs: float) -> tuple[float, str]:
    if epochs <= DROPOUT_FROM:
        return 0.0, f"dropout 0: the text will be seen {epochs:.1f} times, too few to overfit"
    if epochs <= 16:
        return 0.1, f"dropout 0.1: the text will be seen {epochs:.1f} times"
    return 0.2, f"dropout 0.2: the text will be seen {epochs:.0f} times, a small model still memorises it"


def _sampling_reason(epochs: float) -> str:
    if epochs < 1:
        return "sampling epoch: no window twice (less than one pass over the text)"
    unseen = math.exp(-epochs)  # random windows: each token's count is Poisson(epochs)
    passes = f"{epochs:.1f}" if epochs < 10 else f"{epochs:.0f}"
    return ("sampling epoch: every window once per pass over the text (random windows over " + passes + " passes "
            + (f"would never show {unseen:.0%} of it and repeat the rest unevenly)" if unseen >= 0.005 else
               "would show some parts more often than others)"))


def choose(stats: TextStats, budget_s: float, speed: Speed, fixed: dict | None = None) -> AutoChoice:
    """The configuration for ``stats``' text trained for ``budget_s`` seconds on a machine
    of ``speed``. ``fixed``: ModelConfig / TrainConfig fields the user gave; they are kept
    and everything else is chosen around them."""
    fixed = dict(fixed or {})
    reasons = []
    arch, optimizer = fixed.get("arch", ARCH), fixed.get("optimizer", OPTIMIZER)
    vocab = fixed.get("tokenizer_vocab", BASE_VOCAB)
    if vocab != BASE_VOCAB and vocab not in stats.bytes_per_token:  # a size that was not measured
        stats = dataclasses.replace(stats, bytes_per_token={**stats.bytes_per_token,
                                                                vocab: _interpolate(stats.bytes_per_token, vocab)})

    def shape(n_layer, n_embd):
        n_layer, n_embd = fixed.get("n_layer", n_layer), fixed.get("n_embd", n_embd)
        vocab = fixed.get("tokenizer_vocab") or _vocab_for(stats)
        return ModelConfig(vocab_size=vocab + 1, n_layer=n_layer, n_head=fixed.get("n_head", _heads(n_embd)),
                           n_embd=n_embd, block_size=fixed.get("block_size", _block_size(stats.tokens(vocab))),
                           arch=arch)

    def batch_for(cfg):
        return fixed.get("batch_size", max(1, TOKENS_PER_STEP[optimizer] // cfg.block_size))

    def tokens_per_s(cfg):
        return recipe_tokens_per_s(speed, cfg, batch_for(cfg) * cfg.block_size, optimizer)

    def prep_s(cfg):
        return PREP_S_PER_MB * stats.n_bytes / 1e6 * (cfg.vocab_size - 1 > BASE_VOCAB)

    def score(cfg):
        train_s = max(0.0, (budget_s - prep_s(cfg)) * TRAIN_SHARE)
        seen = tokens_per_s(cfg) * train_s
        ratio = effective_tokens(seen, stats.tokens(cfg.vocab_size - 1)) / block_params(cfg.n_layer, cfg.n_embd)
        return abs(math.log(max(ratio, 1e-9) / target_tokens_per_param(speed.flops_per_s * train_s)))

    candidates = list(dict.fromkeys(shape(L, C) for L, C in LADDER))  # a fixed width or depth repeats shapes
    cfg = min(candidates, key=score)  # ties: the smaller (earlier) shape
    vocab, block = cfg.vocab_size - 1, cfg.block_size
    reasons.append(f"vocabulary {vocab}: given" if "tokenizer_vocab" in fixed else
                   _vocab_reason(stats, vocab))
    unique = stats.tokens(vocab)
    train_s = max(0.0, (budget_s - prep_s(cfg)) * TRAIN_SHARE)
    tps = tokens_per_s(cfg)
    seen = tps * train_s
    epochs = seen / unique
    n_params = block_params(cfg.n_layer, cfg.n_embd)
    reasons.append(f"{_duration(budget_s)} at ~{_count(tps)} tokens/s (measured on this machine for this shape) "
                   f"sees ~{_count(seen)} tokens after ~{prep_s(cfg):.0f} s of preparation")
    reasons.append(f"model {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads: {_count(n_params)} block "
                   f"parameters, ~{effective_tokens(seen, unique) / n_params:.0f} effective tokens each "
                   f"(target ~{target_tokens_per_param(speed.flops_per_s * train_s):.0f} for this much compute, "
                   f"fitted in docs/auto.md; repeats of the text count less)")
    reasons.append(f"context {block} tokens" + (": given" if "block_size" in fixed else
                                                 " (64 for a text too short for many windows of 128)"))
    batch = batch_for(cfg)
    steps = max(1, int(seen // (batch * block)))
    reasons.append(f"batch {batch} x {block} tokens a step" + (" (muon: larger steps spread its per-step cost)"
                   if optimizer == "muon" and "batch_size" not in fixed else "") + f": ~{steps:,} steps in the budget")
    base_lr = BASE_LR[optimizer]
    lr = fixed.get("lr", round(base_lr * math.sqrt(BASE_WIDTH / cfg.n_embd), 6))
    reasons.append(f"learning rate {lr:g} (peak; {base_lr:g} at width {BASE_WIDTH} for {optimizer}, "
                   f"/ sqrt(width) above)")
    warmup = fixed.get("warmup_steps", min(200, max(10, steps // 20)))
    min_lr = fixed.get("min_lr", 0.0)
    reasons.append(f"warmup {warmup} steps (5% of the run, at most 200), then cosine decay to "
                   + (f"{min_lr:g}: given" if "min_lr" in fixed else "0 (better than to a tenth, docs/auto.md)"))
    weight_decay = fixed.get("weight_decay", WEIGHT_DECAY)
    reasons.append(f"weight decay {weight_decay:g}: given" if "weight_decay" in fixed else
                   f"weight decay {weight_decay:g} (nanoGPT's 0.1 measured worse, docs/auto.md)")
    if "dropout" in fixed:
        dropout = fixed["dropout"]
        reasons.append(f"dropout {dropout:g}: given")
    else:
        dropout, why = _dropout(epochs)
        reasons.append(why)
    sampling = fixed.get("sampling", "epoch")
    reasons.append(f"sampling {sampling}: given" if "sampling" in fixed else _sampling_reason(epochs))
    reasons.append(f"architecture {arch}" + (": given" if "arch" in fixed else "") + f", optimizer {optimizer}"
                   + (": given" if "optimizer" in fixed else "") + f" ({RECIPE_REASON})")
    model = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=block, dropout=dropout,
                 arch=arch)
    train = dict(tokenizer_vocab=vocab, optimizer=optimizer, sampling=sampling, batch_size=batch, lr=lr,
                 min_lr=min_lr, weight_decay=weight_decay, warmup_steps=warmup, max_steps=None,
                 time_budget=float(budget_s), eval_interval=max(1, steps // EVALS), eval_steps=10)
    return AutoChoice(model, train, reasons, int(seen), epochs, steps)


def _interpolate(table: dict[int, float], vocab: int) -> float:
    """Bytes per token at a vocabulary that was not measured: linear in log2(vocab)
    between the measured neighbours (1.0 at 256)."""
    points = sorted({BASE_VOCAB: 1.0, **table}.items())
    x = math.log2(vocab)
    for (v0, b0), (v1, b1) in zip(points, points[1:]):
        if vocab <= v1:
            return b0 + (b1 - b0) * (x - math.log2(v0)) / (math.log2(v1) - math.log2(v0))
    (v0, b0), (v1, b1) = points[-2], points[-1]
    return b1 + (b1 - b0) * (x - math.log2(v1)) / (math.log2(v1) - math.log2(v0))


# The shapes timed to fit the speed model: the ladder's small end, middle and upper middle.
PROBES = ((2, 64), (4, 128), (6, 256))


def plan(data: str | os.PathLike, budget_s: float, workers: int = 1, device: str = "cpu", fixed: dict | None = None,
         calibration=None) -> AutoChoice:
    """Measure the text in ``data`` and this machine (a few seconds; the speeds are cached
    in the token cache's folder), then :func:`choose`. ``calibration``: a
    ``mnemos.calibrate.Calibration`` to use instead of this machine's."""
    from mnemos import data as data_mod
    from mnemos.calibrate import Calibration, limit_for

    path = Path(data)
    cache = data_mod.default_cache_dir(path)
    stats = _cached_stats(path, cache)
    if calibration is None:
        calibration = Calibration(cache, workers=workers, device=device)
    vocab = fixed.get("tokenizer_vocab", 1024) if fixed else 1024
    probes = [(ModelConfig(vocab_size=vocab + 1, n_layer=L, n_head=_heads(C), n_embd=C, block_size=128),
               PROBE_TOKENS // 128) for L, C in PROBES]
    return choose(stats, budget_s, calibration.model(probes, limit_for(budget_s)), fixed)


def _cached_stats(path: Path, cache: Path) -> TextStats:
    """:func:`measure_text` of the file, kept in the cache folder by the text's hash (so
    choosing again, e.g. for another budget, costs no tokenizer training)."""
    import json

    from mnemos import data as data_mod
    from mnemos.fileio import parse_json, write_atomic

    text = data_mod.read_text(path)
    cached = cache / f"{path.stem}-{data_mod.content_hash(text)}-textstats-v1.json"
    try:
        data = parse_json(cached.read_bytes())
        table = {int(k): float(v) for k, v in data["bytes_per_token"].items()}
        if set(VOCABS) <= set(table):
            return TextStats(int(data["n_bytes"]), table)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # not measured yet (or a damaged file): measure below
    stats = measure_text(text)
    try:
        write_atomic(cached, lambda f: f.write(json.dumps(dataclasses.asdict(stats)).encode()))
    except OSError:
        pass  # a read-only cache only costs measuring again
    return stats


def measure_text(text: str, vocabs=VOCABS, sample_chars: int = 1 << 19) -> TextStats:
    """Size of ``text`` in bytes and bytes per token at each of ``vocabs``: one BPE of the
    largest size trained on a sample (evenly spaced pieces of the text, at most
    ``sample_chars``), each smaller vocabulary being a prefix of its merges."""
    from mnemos.tokenizer import BPETokenizer

    n_bytes = len(text.encode("utf-8"))
    if len(text) > sample_chars:
        pieces, size = 8, sample_chars // 8
        step = len(text) // pieces
        sample = "".join(text[i * step:i * step + size] for i in range(pieces))
    else:
        sample = text
    full = BPETokenizer.train(sample, max(vocabs))
    sample_bytes = len(sample.encode("utf-8"))
    table = {}
    for vocab in vocabs:
        tok = BPETokenizer([pair for pair, _ in full.merges[:vocab - BASE_VOCAB]])
        table[vocab] = sample_bytes / max(1, len(tok.encode_array(sample)))
    return TextStats(n_bytes, table)
