"""Model and training configuration, validated on construction.

``ModelConfig`` fixes the shape of the network (it must match a checkpoint to resume);
``TrainConfig`` holds everything that may change between runs or on resume. Both are
plain dataclasses that round-trip through ``to_dict`` / ``from_dict`` (JSON in
``config.json``). An impossible value raises :class:`ConfigError` with a one-line fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from mnemos.errors import ConfigError

BASE_VOCAB = 256  # the 256 byte tokens every tokenizer starts from


# Upper bounds of every count and shape: far beyond what a NumPy GPT trains on one
# machine, small enough that no value overflows an allocation before the memory check
# (mnemos.memory) sees it. A checkpoint's config.json is held to them too.
MAX_VOCAB = 1 << 20  # token ids are stored as characters by the tokenizer (chr() stops at 0x10FFFF)
LIMITS = {"vocab_size": MAX_VOCAB - 1, "n_layer": 1024, "n_head": 1024, "n_embd": 1 << 16, "block_size": 1 << 20,
          "batch_size": 1 << 20, "grad_accum": 1 << 16, "max_steps": 10 ** 12, "eval_interval": 10 ** 12,
          "eval_steps": 1 << 20, "log_interval": 10 ** 12, "sample_tokens": 1 << 20, "warmup_steps": 10 ** 12,
          "workers": 256, "seed": 2 ** 63 - 1}


def _check_limit(name: str, value) -> None:
    limit = LIMITS.get(name)
    if limit is not None and value > limit:
        raise ConfigError(f"{name} must be at most {limit:,}, got {value!r}")


def _positive_int(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        _check_limit(name, value)


def _non_negative(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        _check_limit(name, value)


def _from_dict(cls, data: dict, what: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} field(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """The GPT-2 shape. ``vocab_size`` is the number of rows of the token embedding
    (the tokenizer's full vocabulary, special tokens included)."""

    vocab_size: int = 257
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _positive_int(self, "vocab_size", "n_layer", "n_head", "n_embd", "block_size")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_head in {[h for h in range(1, min(self.n_embd, 64) + 1) if self.n_embd % h == 0]}"
            )
        _non_negative(self, "dropout")
        if not self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def num_params(self) -> int:
        """Parameter count (tied head counted once)."""
        C, L, V, T = self.n_embd, self.n_layer, self.vocab_size, self.block_size
        per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
        return V * C + T * C + L * per_block + 2 * C

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data, "model config")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. ``vocab_size`` here is what the tokenizer is
    trained to (256 byte tokens + merges; 256 means pure byte level); special tokens
    such as ``<|endoftext|>`` come on top of it."""

    vocab_size: int = 256
    batch_size: int = 12
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_steps: int = 20
    log_interval: int = 1
    sample_tokens: int = 200
    sample_prompt: str = "\n"
    seed: int = 1337
    workers: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        _positive_int(self, "vocab_size", "batch_size", "grad_accum", "max_steps",
                      "eval_interval", "eval_steps", "log_interval", "workers")
        if self.vocab_size < BASE_VOCAB:
            raise ConfigError(f"vocab_size must be at least {BASE_VOCAB} (the byte tokens), got {self.vocab_size}")
        _non_negative(self, "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "eps",
                      "sample_tokens", "seed")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.sample_prompt, str):
            raise ConfigError(f"sample_prompt must be text, got {self.sample_prompt!r}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data, "train config")


@dataclass(frozen=True)
class Preset:
    """A named starting point: a model shape plus the training settings that suit it."""

    name: str
    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny", "a few seconds: checks that everything works",
        model=dict(n_layer=2, n_head=2, n_embd=64, block_size=32),
        train=dict(vocab_size=256, batch_size=8, max_steps=300, warmup_steps=20,
                   eval_interval=100, eval_steps=5, lr=2e-3, min_lr=2e-4),
    ),
    "small": Preset(
        "small", "nanoGPT's baby GPT: Shakespeare-like text in about 5 minutes on a laptop",
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        train=dict(vocab_size=512, batch_size=12, max_steps=5000, warmup_steps=100,
                   eval_interval=250, eval_steps=20, lr=1e-3, min_lr=1e-4),
    ),
    "base": Preset(
        "base", "a bigger model for a long run (tens of minutes to hours)",
        model=dict(n_layer=6, n_head=6, n_embd=192, block_size=128),
        train=dict(vocab_size=1024, batch_size=16, max_steps=10000, warmup_steps=200,
                   eval_interval=500, eval_steps=20, lr=6e-4, min_lr=6e-5),
    ),
}

DEFAULT_PRESET = "small"
AUTO_PRESET = "auto"  # not a fixed preset: mnemos.autosize chooses for the text, the budget and the machine
AUTO_BUDGET_S = 300.0  # what auto plans for when no time budget is given


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}, {AUTO_PRESET}") from None


def default_workers() -> int:
    """Data-parallel workers by default: the machine's cores, capped at 4."""
    return max(1, min(4, os.cpu_count() or 1))
