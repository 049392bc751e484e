"""Telling a run that diverged from one that is learning, from its training loss alone.

A loss that becomes NaN or infinite stops the run at once (the trainer's ``_Diverged``).
A loss that stays finite but blows up does not: ``--lr 10`` took the baby GPT from 5.7 to
292 and the run still ended "finished", saved as best. :class:`DivergenceWatch` follows an
exponential moving average of the loss (a single noisy batch is not a divergence) and
reports, once, when it either

- stays more than :data:`FAR_FACTOR` x the loss the run started from (a model that
  predicts uniformly scores about its start; far above it has learned to be wrong) for
  :data:`FAR_STEPS` steps, or
- stays more than :data:`SPIKE_FACTOR` x the lowest average reached so far for
  :data:`SPIKE_STEPS` steps (a spike that does not recover; short spikes, which warmup
  and large learning rates make, come back down within that time).
"""

from __future__ import annotations

EMA_DECAY = 0.9
FAR_FACTOR, FAR_STEPS = 1.5, 5
SPIKE_FACTOR, SPIKE_STEPS = 2.0, 20


class DivergenceWatch:
    """Feed it every training loss; ``update`` returns a one-line warning the first time
    the run looks diverged, and ``diverged`` keeps it (None while the run is fine)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.ema: float | None = None
        self.lowest: float | None = None
        self._far = self._spiked = 0
        self.diverged: str | None = None

    def update(self, step: int, loss: float, lr: float) -> str | None:
        if self.start is None:
            self.start = self.ema = self.lowest = loss
        self.ema = EMA_DECAY * self.ema + (1 - EMA_DECAY) * loss
        self.lowest = min(self.lowest, self.ema)
        self._far = self._far + 1 if self.ema > FAR_FACTOR * self.start else 0
        self._spiked = self._spiked + 1 if self.ema > SPIKE_FACTOR * self.lowest else 0
        if self.diverged is None and (self._far >= FAR_STEPS or self._spiked >= SPIKE_STEPS):
            since = "it started at" if self._far >= FAR_STEPS else "it had come down to"
            start = self.start if self._far >= FAR_STEPS else self.lowest
            self.diverged = (f"the run diverged by step {step}: the loss is {self.ema:.2f} (averaged), {since} "
                             f"{start:.2f}; checkpoints from here on are not marked best; try a lower --lr "
                             f"(now {lr:g})")
            return self.diverged
        return None
