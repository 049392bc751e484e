"""How much memory a run or a loaded model needs, checked before anything is allocated.

:func:`training_estimate` adds up, in bytes, what a training run holds at its peak:

- the weights and their gradient (float32, ``ModelConfig.num_params()`` each);
- the optimizer's state: :data:`OPTIMIZER_STATE` floats per parameter (``mnemos.optim.STATE_FLOATS``:
  AdamW two moments and a scratch buffer, Muon up to five, SGD one);
- the activations one step keeps for backward: per block about 16 values per token and
  channel (LayerNorms, q/k/v, attention output, MLP 4x before and after GELU) and two
  ``T x T`` maps per head (probabilities and their gradient), plus the logits and their
  gradient and the scratch buffers all blocks share (``mnemos.nn.workspace``: GELU's and the
  linear layers' 4x-wide temporaries, the residual stream and its gradient, two more
  ``T x T`` maps per head: about 32 values per token and channel; measured with tracemalloc,
  the whole estimate is within 10% of a step's peak for GPT-2 and Llama shapes);
- the causal masks: every attention layer keeps a ``T x T`` float32 mask, whatever the batch;
- JSON logs read whole (:func:`check_file_read`): up to :data:`JSON_OBJECT_BYTES` bytes of
  Python objects per byte of text;
- the data-parallel workers (``workers > 1``): each has an interpreter ("workers"), its
  own gradient buffer, the activations of its share of the batch and its own masks
  (added to those parts, whose settings shrink them).

:func:`inference_estimate` is what loading a checkpoint builds (weights and masks).
:func:`check_fits` compares an estimate with :func:`available_bytes` (``MemAvailable`` of
``/proc/meminfo``, and the process's address-space limit if one is set) and raises a
one-line :class:`~mnemos.errors.ConfigError` naming the estimate, its largest part and
the setting that shrinks it. Estimates, not measurements: they are meant to refuse what
cannot fit (a 90 GB mask), not to predict the last megabyte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mnemos.errors import ConfigError
from mnemos.optim import STATE_FLOATS

FLOAT = 4  # bytes of a float32
OPTIMIZER_STATE = dict(STATE_FLOATS)  # floats kept per parameter, scratch included, by optimizer name (mnemos.optim)
PROCESS_BYTES = 64 << 20  # an interpreter with NumPy loaded: a worker's fixed cost
JSON_OBJECT_BYTES = 32  # Python objects per byte of JSON, at worst: '{}\n' (3 bytes) is a 64-byte dict, '[]' 28x
HEADROOM = 0.9  # refuse a run estimated above this share of the available memory

# the setting that shrinks each part, for the suggestion
_ADVICE = {
    "weights": "a smaller --n-layer, --n-embd or --vocab-size",
    "optimizer": "a smaller --n-layer, --n-embd or --vocab-size",
    "activations": "a smaller --batch-size or --block-size",
    "masks": "a smaller --block-size (each layer keeps a block x block mask)",
    "workers": "fewer --workers",
    "files": "moving the file aside (a log: nothing needs it to resume or load the model)",
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by part; ``total`` is their sum."""

    weights: int = 0  # weights + gradients
    optimizer: int = 0
    activations: int = 0
    masks: int = 0
    workers: int = 0
    files: int = 0  # what reading a file into Python objects holds

    @property
    def parts(self) -> dict[str, int]:
        return {"weights": self.weights, "optimizer": self.optimizer, "activations": self.activations,
                "masks": self.masks, "workers": self.workers, "files": self.files}

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def largest(self) -> str:
        return max(self.parts, key=self.parts.get)

    def describe(self) -> str:
        """``"12.3 GB (weights 1.0 GB, activations 11.3 GB)"``: the total and its non-zero parts."""
        parts = ", ".join(f"{name} {format_bytes(n)}" for name, n in self.parts.items() if n)
        return f"{format_bytes(self.total)} ({parts})"


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit in ("B", "KB", "MB") else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def optimizer_state_floats(name: str) -> int:
    """Floats of optimizer state per parameter for ``name`` (see :data:`OPTIMIZER_STATE`)."""
    try:
        return OPTIMIZER_STATE[name]
    except KeyError:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZER_STATE)}") from None


def _activations(model, batch: int) -> int:
    """Floats one forward + backward on ``batch`` rows keeps (see the module docstring)."""
    B, T, C, H, L, V = batch, model.block_size, model.n_embd, model.n_head, model.n_layer, model.vocab_size
    return L * (16 * B * T * C + 2 * B * H * T * T) + 2 * B * T * V + 32 * B * T * C + 2 * B * H * T * T


def training_estimate(model, train) -> MemoryEstimate:
    """The peak memory of training ``model`` (a ModelConfig) with ``train`` (a TrainConfig:
    ``batch_size``, ``workers``, ``device`` and, where it has one, ``optimizer``)."""
    P, T, L = model.num_params(), model.block_size, model.n_layer
    n = train.workers if train.device == "cpu" else 1
    weights, activations, masks, workers = 2 * P, _activations(model, train.batch_size), L * T * T, 0
    if n > 1:  # each worker: a gradient, its share's activations, its masks (counted as such), an interpreter
        weights += n * P
        activations += n * _activations(model, -(-train.batch_size // n))
        masks += n * L * T * T
        workers = n * PROCESS_BYTES
    return MemoryEstimate(weights=weights * FLOAT,
                          optimizer=optimizer_state_floats(getattr(train, "optimizer", "adamw")) * P * FLOAT,
                          activations=activations * FLOAT, masks=masks * FLOAT, workers=workers)


def inference_estimate(model) -> MemoryEstimate:
    """What building ``model`` (a ModelConfig) for evaluation or generation allocates up
    front: its weights (and gradient buffer) and its causal masks."""
    return MemoryEstimate(weights=2 * model.num_params() * FLOAT, masks=model.n_layer * model.block_size ** 2 * FLOAT)


def check_file_read(path, size: int) -> None:
    """Refuse (one-line ConfigError) to read the JSON file ``path`` of ``size`` bytes whole
    if the objects it could become do not fit (a 10 GB ``metrics.jsonl``)."""
    check_fits(MemoryEstimate(files=JSON_OBJECT_BYTES * size), f"reading {path} ({format_bytes(size)})")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:  # no MemAvailable line (old kernels, other systems)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """What an address-space limit (``ulimit -v``, RLIMIT_AS) leaves this process, if set."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return max(0, limit - used)
    except (ImportError, OSError, ValueError, IndexError):
        return None


def available_bytes() -> int | None:
    """Memory this process may still take: the smaller of the machine's ``MemAvailable``
    and what an address-space limit leaves; None when neither is known."""
    known = [n for n in (_meminfo_available(), _address_space_left()) if n is not None]
    return min(known) if known else None


def check_fits(estimate: MemoryEstimate, what: str = "this run") -> None:
    """Raise a one-line ConfigError if ``estimate`` does not fit in the available memory."""
    available = available_bytes()
    if available is None or estimate.total <= HEADROOM * available:
        return
    raise ConfigError(f"{what} needs about {estimate.describe()} of memory but {format_bytes(available)} is "
                      f"available; try {_ADVICE[estimate.largest]}")
