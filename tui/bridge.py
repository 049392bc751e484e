"""``EventBridge``: engine events from a worker thread to a screen, throttled.

The trainer calls its callback after every step, from the worker thread. Repainting
the screen that often would slow training down, so step and prepare events are
coalesced: the bridge posts one ``EngineEvents`` message (thread-safe) at most every
``interval`` seconds, carrying every event since the last one, in order, so the loss
curve still gets every step. Any other event (eval, checkpoint, state, done, error) is
posted at once together with whatever is pending.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from textual.message import Message

from mnemos.events import Event, PrepareEvent, StepEvent

# Five repaints a second: each costs the main process CPU time (Textual's compositor),
# which training on all cores feels (docs/measurements.md; benchmarks/tui_overhead.py).
UPDATE_INTERVAL = 0.2

COALESCED = (StepEvent, PrepareEvent)


class EngineEvents(Message):
    """A batch of engine events, oldest first."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class EventBridge:
    """A trainer callback that posts ``EngineEvents`` to ``target`` at most every ``interval`` s."""

    def __init__(self, post: Callable[[Message], object], interval: float = UPDATE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._post = post
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._last = -float("inf")
        self.posted = 0  # messages posted so far (for tests and the benchmark)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)
            now = self._clock()
            if isinstance(event, COALESCED) and now - self._last < self.interval:
                return
            self._flush(now)

    def flush(self) -> None:
        """Post whatever is pending (call when the run ends)."""
        with self._lock:
            if self._pending:
                self._flush(self._clock())

    def _flush(self, now: float) -> None:
        events, self._pending = self._pending, []
        self._last = now
        self.posted += 1
        self._post(EngineEvents(events))
