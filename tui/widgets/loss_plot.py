"""``LossPlot``: training and validation loss against step, drawn with plotext.

Follows the app's theme (``PlotextPlot`` registers a plotext theme from the Textual
one). Keeps every point; when there are more points than the plot has columns, the
training curve is averaged into one point per column, so a redraw costs the same at
step 100 and at step 100,000.
"""

from __future__ import annotations

import math

import numpy as np
from textual_plotext import PlotextPlot

from mnemos.compare import bin_means


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

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self.replot()

    def on_mount(self) -> None:
        self.replot()

    def on_resize(self) -> None:
        self.replot()

    def replot(self) -> None:
        """Redraw from the stored points (cheap: at most one point per column)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss" + (" (log scale)" if self.log_scale else ""))
        plt.xlabel("step")
        columns = max(10, self.size.width - 10)
        drawn = False
        if self._train_steps:
            x, y = bin_means(np.asarray(self._train_steps, np.float64),
                             np.asarray(self._train_loss, np.float64), columns)
            keep = np.isfinite(y)
            if keep.any():
                plt.plot(x[keep].tolist(), y[keep].tolist(), label="train", marker="braille")
                drawn = True
        finite = [(s, v) for s, v in zip(self._val_steps, self._val_loss) if math.isfinite(v)]
        if finite:
            plt.plot([s for s, _ in finite], [v for _, v in finite], label="val", marker="dot")
            drawn = True
        # plotext cannot draw empty log axes: the log scale applies once there are points
        plt.yscale("log" if self.log_scale and drawn else "linear")
        if not drawn:
            plt.title("loss: no steps yet")
        self.refresh()
