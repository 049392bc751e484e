"""Time budgets: ``--time-budget 5m`` read into seconds, and the number of steps that fit.

A budgeted run sizes its learning-rate schedule to the time it has, so that it ends
*decayed*, not cut off: the warmup + cosine of :func:`mnemos.optim.lr_at` runs over a
step horizon, and with a budget that horizon is :func:`steps_that_fit`, re-estimated
after every step from the measured seconds per step, per evaluation and per save:

    steps left = (budget - used - final evaluation and save) / (step + evaluation share)

where the evaluation share spreads one evaluation and save over ``eval_interval`` steps.
The learning rate of a step is therefore a function of the step and of the current
horizon; the horizon depends on how fast this machine ran, which is the one thing that
makes a budgeted run not bit-reproducible (a run without a budget still is; and the
learning rate of every step is in ``metrics.jsonl``). The alternative, a horizon fixed once
from a short calibration, would be reproducible given that horizon but ends cut off (not
decayed) or early as soon as the machine's speed changes, which on a shared machine it does.
"""

from __future__ import annotations

import math
import re

from mnemos.errors import ConfigError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)


def parse_duration(text) -> float:
    """``"300"``, ``"90s"``, ``"5m"``, ``"1.5h"`` (or a number of seconds) -> seconds (> 0);
    anything else raises :class:`ConfigError` with one line saying what is accepted."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ConfigError(f"time budget {text!r} is not a duration; write seconds or a number with s, m or h, "
                              f"e.g. 300, 90s, 5m, 1h")
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"time budget must be more than 0 seconds, got {text!r}; e.g. 90s, 5m, 1h")
    return value


def format_duration(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``): the one duration format of the CLI and the app; ``-``
    when unknown (None, NaN, infinite)."""
    if seconds is None or not -math.inf < seconds < math.inf:
        return "-"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


FINAL_MARGIN = 1.25  # the final evaluation and save are set aside with a quarter more than measured


def steps_that_fit(step: int, used_s: float, budget_s: float, step_s: float, eval_s: float, save_s: float,
                   eval_interval: int) -> int:
    """The last step a budgeted run can reach: ``step`` plus the steps that fit in the
    time left (``budget_s - used_s``) once the final evaluation and save are set aside
    (times :data:`FINAL_MARGIN`: on a busy machine an evaluation's time varies, and the run
    must not overrun), each step also carrying its share of the evaluations and saves in
    between (one every ``eval_interval`` steps). Returns ``step`` itself when not even one
    more step fits."""
    final_s = eval_s + save_s
    left = budget_s - used_s - FINAL_MARGIN * final_s
    per_step = step_s + final_s / eval_interval
    if left < step_s or per_step <= 0:
        return step
    return step + max(1, int(left / per_step))
