"""Keys and values of past positions, so generation costs one position per token."""

from __future__ import annotations

from mnemos.errors import ContextError


class KVCache:
    """Per-layer keys and values ``(n_layer, B, H, block_size, hd)`` and how many
    positions are filled (``length``). Made by ``GPT.new_cache``."""

    def __init__(self, n_layer, batch, n_head, block_size, head_dim, xp, dtype):
        shape = (n_layer, batch, n_head, block_size, head_dim)
        self.k = xp.zeros(shape, dtype=dtype)
        self.v = xp.zeros(shape, dtype=dtype)
        self.batch = batch
        self.capacity = block_size
        self.length = 0

    def reserve(self, t: int) -> int:
        """Check that ``t`` more positions fit; return the first free position."""
        if self.length + t > self.capacity:
            raise ContextError(
                f"{self.length + t} positions exceed the model's block_size of {self.capacity}; "
                "start a new cache with the last tokens (a sliding window)"
            )
        return self.length

    def reset(self) -> None:
        self.length = 0
