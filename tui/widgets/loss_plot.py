"""``LossPlot``: training and validation loss against step, drawn with plotext.

Follows the app's theme (``PlotextPlot`` registers a plotext theme from the Textual
one). Keeps every point; when there are more points than the plot has columns, the
training curve is averaged into one point per column, so a redraw costs the same at
step 100 and at step 100,000.

The points live here, not in plotext: plotext's log scale takes the logarithm of its
stored values in place when it draws, so drawing the same plotext figure twice takes the
log of a log (``ValueError: math domain error`` once a value is below 1). Every draw
(``render``) therefore gives plotext fresh copies of the points, whatever caused it: new
steps, a resize, a screen coming back, a theme change.
"""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual_plotext import PlotextPlot

from mnemos.compare import bin_means


def step_ticks(low: float, high: float, intervals: int = 5) -> list[int]:
    """Whole-number ticks from ``low`` to ``high``, at most ``intervals`` + 1 of them, at a
    round spacing (1, 2 or 5 times a power of ten): steps are counted, never fractional."""
    if math.floor(high) <= math.ceil(low):
        return [round((low + high) / 2)]
    low, high = math.ceil(low), math.floor(high)
    raw = (high - low) / intervals
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    spacing = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / spacing) * spacing
    return list(range(first, high + 1, spacing))


class LossPlot(PlotextPlot):
    """Train loss every logged step, validation loss at each evaluation."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.clear_data()

    def clear_data(self) -> None:
        self._train_steps: list[int] = []
        self._train_loss: list[float] = []
        self._val_steps: list[int] = []
        self._val_loss: list[float] = []

    def add_train(self, steps: list[int], losses: list[float]) -> None:
        self._train_steps.extend(steps)
        self._train_loss.extend(losses)

    def add_val(self, step: int, loss: float) -> None:
        self._val_steps.append(step)
        self._val_loss.append(loss)

    @property
    def train_points(self) -> list[tuple[int, float]]:
        """Every (step, train loss) received, in order."""
        return list(zip(self._train_steps, self._train_loss))

    @property
    def val_points(self) -> list[tuple[int, float]]:
        """Every (step, validation loss) received, in order."""
        return list(zip(self._val_steps, self._val_loss))

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self.replot()

    def replot(self) -> None:
        """Ask for a redraw (cheap: at most one point per column)."""
        self.refresh()

    def render(self) -> Text:
        self._draw()
        try:
            return super().render()
        except (ValueError, ZeroDivisionError, IndexError) as exc:  # plotext's own failures: a message, not a crash
            return Text(f"the loss plot cannot be drawn ({type(exc).__name__}: {exc})", style="dim")

    def _draw(self) -> None:
        """Give plotext a fresh figure built from copies of the stored points."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss" + (" (log scale)" if self.log_scale else ""))
        plt.xlabel("step")
        columns = max(10, self.size.width - 10)
        xs: list[float] = []
        if self._train_steps:
            x, y = bin_means(np.asarray(self._train_steps, np.float64),
                             np.asarray(self._train_loss, np.float64), columns)
            keep = np.isfinite(y) & (y > 0 if self.log_scale else True)
            if keep.any():
                plt.plot(x[keep].tolist(), y[keep].tolist(), label="train", marker="braille")
                xs += [float(x[keep][0]), float(x[keep][-1])]
        finite = [(s, v) for s, v in self.val_points if math.isfinite(v) and (v > 0 or not self.log_scale)]
        if finite:
            plt.plot([float(s) for s, _ in finite], [v for _, v in finite], label="val", marker="dot")
            xs += [finite[0][0], finite[-1][0]]
        # plotext cannot draw empty log axes: the log scale applies once there are points
        plt.yscale("log" if self.log_scale and xs else "linear")
        if xs:
            ticks = step_ticks(min(xs), max(xs))
            plt.xticks(ticks, [f"{t:,}" for t in ticks])
        else:
            plt.title("loss: no steps yet")
