"""Model and training configuration: one schema, validated on construction.

``ModelConfig`` fixes the shape of the network (it must match a checkpoint to resume);
``TrainConfig`` holds everything that may change between runs or on resume. Both are
plain dataclasses that round-trip through ``to_dict`` / ``from_dict`` (JSON in
``config.json``). An impossible value raises :class:`ConfigError` (``.field`` names the
setting) with a one-line fix.

The fields a user sets are declared with :func:`setting`: its metadata (flag, help,
group, whether it fixes the model's shape, choices) is the one source from which
``mnemos train`` builds its flags and resume overrides and the app builds its form
(:data:`SETTINGS`). :func:`configs_from` merges a preset with overrides, in one place.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field

from mnemos.budget import parse_duration
from mnemos.errors import ConfigError

BASE_VOCAB = 256  # the 256 byte tokens every tokenizer starts from
OPTIMIZERS = ("adamw", "muon", "sgd")  # mnemos.optim.make_optimizer builds them
SAMPLINGS = ("random", "epoch")  # mnemos.data.get_batch, mnemos.data.EpochSampler
SPECIAL_TOKENS = 1  # <|endoftext|>, on top of the tokenizer's trained vocabulary
GROUPS = {"model": "model shape", "optimisation": "optimisation", "compute": "compute"}  # key -> CLI title


def setting(default, help: str = "", *, group: str = "optimisation", shape: bool = False,
            choices: tuple | None = None, flag: str | None = None, text: bool = False, kind=None,
            optional: str = ""):
    """A dataclass field the user sets: a ``mnemos train`` flag (``flag``, default
    ``--`` + the name with dashes), a row of the app's form, an override on resume.
    ``shape``: it fixes the model's shape (refused on resume, locked in the form);
    ``choices``: the allowed values (checked on construction); ``text``: free text
    (the form shows a newline as ``\\n``); ``kind``: what reads the typed text (default
    the field's type; e.g. :func:`mnemos.budget.parse_duration`, which raises
    ``ConfigError``); ``optional``: the field may be ``None``, and this says what that
    means (the form's placeholder for a blank field)."""
    assert group in GROUPS, group
    return field(default=default, metadata={"setting": dict(help=help, group=group, shape=shape, choices=choices,
                                                            flag=flag, text=text, kind=kind, optional=optional)})


@dataclass(frozen=True)
class Setting:
    """One user-facing field, as :data:`SETTINGS` lists it."""

    name: str  # the attribute of ``config``
    config: type  # ModelConfig or TrainConfig
    kind: type  # int, float or str, or a function from the typed text (ConfigError if it is wrong)
    flag: str  # "--n-layer"
    help: str
    group: str  # a key of GROUPS
    shape: bool
    choices: tuple | None
    text: bool
    optional: str  # "" unless the field may be None: then what None means

    @property
    def label(self) -> str:
        """The flag without its dashes: how the app's form names the field."""
        return self.flag.lstrip("-")


def _settings(*classes) -> tuple[Setting, ...]:
    found = []
    for cls in classes:
        kinds = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "setting" in f.metadata:
                meta = dict(f.metadata["setting"])
                meta["flag"] = meta["flag"] or "--" + f.name.replace("_", "-")
                kind = meta.pop("kind") or next(t for t in typing.get_args(kinds[f.name]) or (kinds[f.name],)
                                                if t is not type(None))  # int | None -> int
                found.append(Setting(f.name, cls, kind, **meta))
    return tuple(sorted(found, key=lambda s: list(GROUPS).index(s.group)))  # stable: declaration order in a group


def _fail(name: str, message: str):
    raise ConfigError(message, field=name)


# Upper bounds of every count and shape: far beyond what a NumPy GPT trains on one
# machine, small enough that no value overflows an allocation before the memory check
# (mnemos.memory) sees it. A checkpoint's config.json is held to them too.
MAX_VOCAB = 1 << 20  # token ids are stored as characters by the tokenizer (chr() stops at 0x10FFFF)
LIMITS = {"vocab_size": MAX_VOCAB - 1, "tokenizer_vocab": MAX_VOCAB - 1, "n_layer": 1024, "n_head": 1024,
          "n_embd": 1 << 16, "intermediate_size": 1 << 18, "block_size": 1 << 20, "batch_size": 1 << 20,
          "grad_accum": 1 << 16,
          "max_steps": 10 ** 12, "eval_interval": 10 ** 12, "eval_steps": 1 << 20, "log_interval": 10 ** 12,
          "sample_tokens": 1 << 20, "warmup_steps": 10 ** 12, "workers": 256, "seed": 2 ** 63 - 1}


def _check_limit(name: str, value) -> None:
    limit = LIMITS.get(name)
    if limit is not None and value > limit:
        _fail(name, f"{name} must be at most {limit:,}, got {value!r}")


def _positive_int(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(name, f"{name} must be a positive integer, got {value!r}")
        _check_limit(name, value)


def _non_negative(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            _fail(name, f"{name} must be a finite number >= 0, got {value!r}")
        _check_limit(name, value)


def _check_choices(obj) -> None:
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("setting", {}).get("choices")
        if choices and getattr(obj, f.name) not in choices:
            _fail(f.name, f"{f.name} must be {' or '.join(map(repr, choices))}, got {getattr(obj, f.name)!r}")


def _from_dict(cls, data: dict, what: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} field(s): {', '.join(unknown)}")
    return cls(**data)


ARCHS = ("gpt2", "llama")


def llama_intermediate_size(n_embd: int, multiple_of: int = 32) -> int:
    """The SwiGLU hidden width of Llama's rule: 2/3 of GPT-2's 4·n_embd (so the three
    matrices of a gated MLP cost what GPT-2's two do), rounded up to a multiple of 32."""
    hidden = 8 * n_embd // 3
    return multiple_of * -(-hidden // multiple_of)


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape. ``vocab_size`` is the number of rows of the token embedding
    (the tokenizer's full vocabulary, special tokens included).

    ``arch`` picks the block: ``"gpt2"`` (learned positions, LayerNorm, GELU MLP, biases)
    or ``"llama"`` (rotary positions, RMSNorm, SwiGLU MLP, no biases). ``head``: the
    output head is the token embedding (``"tied"``) or a matrix of its own
    (``"untied"``, parameter ``lm_head``). ``intermediate_size`` is the MLP's hidden width;
    ``None`` means the architecture's rule (GPT-2: 4·n_embd; Llama:
    :func:`llama_intermediate_size`), resolved on construction so that config.json
    records the number (pass ``None`` again when changing ``n_embd`` with
    ``dataclasses.replace``). ``rope_theta`` is RoPE's base (Llama only); ``norm_eps`` the
    LayerNorm / RMSNorm epsilon.
    """

    vocab_size: int = BASE_VOCAB + SPECIAL_TOKENS
    n_layer: int = setting(4, group="model", shape=True)
    n_head: int = setting(4, group="model", shape=True)
    n_embd: int = setting(128, group="model", shape=True)
    block_size: int = setting(64, "context window in tokens", group="model", shape=True)
    dropout: float = setting(0.0, group="model")
    arch: str = setting("gpt2", "gpt2 (learned positions, LayerNorm, GELU, biases) or llama (rotary positions, "
                                "RMSNorm, SwiGLU, no biases)", group="model", shape=True, choices=ARCHS)
    head: str = setting("tied", "output head: tied (the token embedding) or untied (a matrix of its own)",
                        group="model", shape=True, choices=("tied", "untied"))
    intermediate_size: int | None = None
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _positive_int(self, "vocab_size", "n_layer", "n_head", "n_embd", "block_size")
        if self.n_embd % self.n_head != 0:
            _fail("n_embd", f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                            f"try n_head in {[h for h in range(1, min(self.n_embd, 64) + 1) if self.n_embd % h == 0]}")
        _non_negative(self, "dropout")
        if not self.dropout < 1.0:
            _fail("dropout", f"dropout must be in [0, 1), got {self.dropout!r}")
        _check_choices(self)
        if self.arch == "llama" and self.head_dim % 2:
            _fail("n_embd", f"llama's rotary embeddings need an even head size, got n_embd / n_head = "
                            f"{self.head_dim}; change n_embd or n_head")
        if self.intermediate_size is None:
            rule = 4 * self.n_embd if self.arch == "gpt2" else llama_intermediate_size(self.n_embd)
            object.__setattr__(self, "intermediate_size", rule)
        _positive_int(self, "intermediate_size")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                _fail(name, f"{name} must be a finite number > 0, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def tied_head(self) -> bool:
        return self.head == "tied"

    def num_params(self) -> int:
        """Parameter count (a tied head counted once)."""
        from mnemos.nn.gpt import param_specs

        return sum(math.prod(shape) for _, shape, _ in param_specs(self))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data, "model config")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. ``tokenizer_vocab`` (flag ``--vocab-size``) is what
    the tokenizer is trained to (256 byte tokens + merges; 256 means pure byte level);
    special tokens such as ``<|endoftext|>`` come on top of it. ``time_budget`` (seconds,
    the preparation included) sizes the learning-rate schedule to the time
    (:mod:`mnemos.budget`); with it ``max_steps`` may be ``None`` (no step limit), else
    whichever ends first ends the run."""

    tokenizer_vocab: int = setting(BASE_VOCAB, "tokenizer size: 256 = bytes only, more = BPE merges",
                                   group="model", shape=True, flag="--vocab-size")
    batch_size: int = setting(12)
    grad_accum: int = setting(1, "micro-batches per step (gradient accumulation)")
    sampling: str = setting("random", "how training windows are drawn: random (nanoGPT: anywhere, with replacement); "
                                      "epoch: every window once per pass over the text, in a new order each pass",
                            choices=SAMPLINGS)
    lr: float = setting(1e-3, "peak learning rate")
    min_lr: float = setting(1e-4, "learning rate at the end of the cosine decay")
    warmup_steps: int = setting(100)
    max_steps: int | None = setting(2000, "stop after N steps (with --time-budget: whichever ends first)",
                                    optional="no limit (with a time budget)")
    time_budget: float | None = setting(None, "train for this long, preparation included (300, 90s, 5m, 1h): the "
                                              "learning rate decays over the steps that fit", kind=parse_duration,
                                        optional="none (e.g. 90s, 5m, 1h)")
    weight_decay: float = setting(0.1)
    optimizer: str = setting("adamw", "adamw; muon: orthogonalised momentum (Newton-Schulz) for the hidden matrices, "
                                      "AdamW for the rest; sgd: gradient descent with momentum, to compare curves "
                                      "(it wants a far larger --lr)", choices=OPTIMIZERS)
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = setting(1.0, "max global gradient norm (0 = off)")
    eval_interval: int = setting(250, "evaluate and checkpoint every N steps")
    eval_steps: int = setting(20, "batches per evaluation")
    log_interval: int = 1
    sample_prompt: str = setting("\n", "prompt completed at each evaluation (default: a newline)", text=True)
    sample_tokens: int = setting(200, "tokens of that sample (0 = none)")
    seed: int = setting(1337)
    workers: int = setting(1, "data-parallel worker processes (default: the CPU cores, at most 4; a resumed run "
                              "keeps its own)", group="compute")
    device: str = setting("cpu", group="compute", choices=("cpu", "cuda"))

    def __post_init__(self) -> None:
        value = self.tokenizer_vocab
        if isinstance(value, bool) or not isinstance(value, int) or value < BASE_VOCAB:
            _fail("tokenizer_vocab", f"vocab_size must be an integer >= {BASE_VOCAB} (the byte tokens), got {value!r}")
        _check_limit("tokenizer_vocab", value)
        _positive_int(self, "batch_size", "grad_accum", "eval_interval", "eval_steps", "log_interval", "workers")
        if self.time_budget is not None:
            value = self.time_budget
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                _fail("time_budget", f"time_budget must be a number of seconds > 0, got {value!r}")
        if self.max_steps is None and self.time_budget is None:
            _fail("max_steps", "max_steps is needed without a time budget (only a budgeted run may leave it unset)")
        if self.max_steps is not None:
            _positive_int(self, "max_steps")
        _non_negative(self, "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "eps",
                      "sample_tokens", "seed")
        if not self.lr > 0:
            _fail("lr", f"lr must be > 0, got {self.lr!r}")
        if self.min_lr > self.lr:
            _fail("min_lr", f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                _fail(name, f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.sample_prompt, str):
            _fail("sample_prompt", f"sample_prompt must be text, got {self.sample_prompt!r}")
        _check_choices(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if isinstance(data, dict) and "vocab_size" in data:  # config.json before the field was renamed
            data = {("tokenizer_vocab" if k == "vocab_size" else k): v for k, v in data.items()}
        return _from_dict(cls, data, "train config")


SETTINGS: tuple[Setting, ...] = _settings(TrainConfig, ModelConfig)  # by group, then declaration order
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

@dataclass(frozen=True)
class Preset:
    """A named starting point: a model shape plus the training settings that suit it."""

    name: str
    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        """Its model and training values as one dict of setting names."""
        return {**self.model, **self.train}


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny", "a few seconds: checks that everything works",
        model=dict(n_layer=2, n_head=2, n_embd=64, block_size=32),
        train=dict(tokenizer_vocab=256, batch_size=8, max_steps=300, warmup_steps=20,
                   eval_interval=100, eval_steps=5, lr=2e-3, min_lr=2e-4),
    ),
    "small": Preset(
        "small", "nanoGPT's baby GPT: Shakespeare-like text after 5,000 steps (about 3 minutes at 21k tokens/s)",
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        train=dict(tokenizer_vocab=512, batch_size=12, max_steps=5000, warmup_steps=100,
                   eval_interval=250, eval_steps=20, lr=1e-3, min_lr=1e-4),
    ),
    "base": Preset(
        "base", "a bigger model for a long run (tens of minutes to hours)",
        model=dict(n_layer=6, n_head=6, n_embd=192, block_size=128),
        train=dict(tokenizer_vocab=1024, batch_size=16, max_steps=10000, warmup_steps=200,
                   eval_interval=500, eval_steps=20, lr=6e-4, min_lr=6e-5),
    ),
}

FINETUNE = Preset(  # the training settings of `train --init-from` (nanoGPT's finetune_shakespeare, scaled for a CPU)
    "finetune", "a trained model adapted to new text: a small learning rate, a short run",
    train=dict(batch_size=8, max_steps=200, warmup_steps=10, eval_interval=50, eval_steps=5, lr=6e-5, min_lr=6e-6),
)
FINETUNE_BLOCK = 256  # the context a fine-tuning run crops to by default (a 1024-token window is slow on a CPU)

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


def configs_from(preset: str | Preset | None = None,
                 overrides: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The validated configs of a new run: the defaults, then the preset (a name, default
    :data:`DEFAULT_PRESET`, or a :class:`Preset` such as ``--preset auto``'s choice;
    ``workers`` from :func:`default_workers` unless it sets them), then ``overrides``
    (setting names -> values; ``None`` values are ignored, except that a ``time_budget``
    without ``max_steps`` leaves ``max_steps`` unset: the budget alone decides). The model's ``vocab_size`` is
    the tokenizer's target plus the special tokens; the trainer sets it exactly once the
    tokenizer is trained."""
    chosen = preset if isinstance(preset, Preset) else get_preset(preset or DEFAULT_PRESET)
    values = {"workers": default_workers(), **chosen.settings,
              **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if (overrides or {}).get("time_budget") is not None and (overrides or {}).get("max_steps") is None:
        values["max_steps"] = None  # a budget without a step count: the budget alone decides
    model, train = split_settings(values)
    train_cfg = TrainConfig(**train)
    return ModelConfig(vocab_size=train_cfg.tokenizer_vocab + SPECIAL_TOKENS, **model), train_cfg


def setting_values(model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict:
    """The user-facing settings of a pair of configs (setting name -> value)."""
    return {s.name: getattr(model_cfg if s.config is ModelConfig else train_cfg, s.name) for s in SETTINGS}


def split_settings(values: dict) -> tuple[dict, dict]:
    """``values`` (setting names -> values) as ``(ModelConfig fields, TrainConfig fields)``;
    an unknown name raises ``ConfigError``."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - model_fields - train_fields)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}", field=unknown[0])
    return ({k: v for k, v in values.items() if k in model_fields},
            {k: v for k, v in values.items() if k in train_fields})


def resumed_configs(model_cfg: ModelConfig, train_cfg: TrainConfig,
                    overrides: dict | None) -> tuple[ModelConfig, TrainConfig]:
    """A saved run's configs with ``overrides`` on top. A setting that fixes the model's
    shape (and the model's ``vocab_size``) may only repeat the run's value."""
    overrides = dict(overrides or {})
    model, train = split_settings(overrides)
    fixed = {s.name for s in SETTINGS if s.shape} | {"vocab_size"}
    for name in sorted(fixed & set(overrides)):
        have = getattr(model_cfg if name in model else train_cfg, name)
        if overrides[name] != have:
            label = SETTINGS_BY_NAME[name].label if name in SETTINGS_BY_NAME else name
            raise ConfigError(f"cannot change {label} on resume (the run has {have}, asked {overrides[name]}); "
                              f"start a new run with another --out instead", field=name)
    return dataclasses.replace(model_cfg, **model), dataclasses.replace(train_cfg, **train)


def init_from_configs(model_cfg: ModelConfig, train_cfg: TrainConfig, preset: str | None = None,
                      overrides: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a new run that starts from a saved model (``train --init-from``).

    The model keeps its shape and vocabulary; only ``dropout`` may change, and
    ``block_size`` may shrink (the position table is cropped, as nanoGPT's
    ``crop_block_size``; by default to :data:`FINETUNE_BLOCK`). The training settings are
    the defaults, then ``preset`` (default :data:`FINETUNE`), then ``overrides``.
    """
    chosen = get_preset(preset) if preset else FINETUNE
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    model, train = split_settings(overrides)
    block = model.pop("block_size", min(model_cfg.block_size, FINETUNE_BLOCK))
    if isinstance(block, int) and block > model_cfg.block_size:
        raise ConfigError(f"block_size {block} is larger than the model's context of {model_cfg.block_size} "
                          f"positions; it can only shrink when starting from a trained model", field="block_size")
    fixed = {s.name for s in SETTINGS if s.shape} - {"block_size"}
    for name in sorted(fixed & set(overrides)):
        have = getattr(model_cfg if name in model else train_cfg, name)
        if overrides[name] != have:
            label = SETTINGS_BY_NAME[name].label
            raise ConfigError(f"cannot change {label} of a trained model (it has {have}, asked {overrides[name]}); "
                              f"leave it out, or train a new model", field=name)
    values = {"workers": default_workers(), **chosen.train, **train, "tokenizer_vocab": train_cfg.tokenizer_vocab}
    return (dataclasses.replace(model_cfg, block_size=block, **{k: v for k, v in model.items() if k not in fixed}),
            TrainConfig(**values))

