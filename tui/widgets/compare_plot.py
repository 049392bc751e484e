"""``ComparePlot``: several runs' train and validation loss on one plotext plot.

The lines come from ``mnemos.compare.plot_series`` (fresh arrays at every redraw, at most
one point per column) and are drawn by ``mnemos.compare.draw``, which takes the log of
the values itself: plotext's own log scale rewrites its stored data in place at every
build, so the second repaint of a log plot would take the log of a log.
"""

from __future__ import annotations

from textual_plotext import PlotextPlot

from mnemos.compare import DEFAULT_SMOOTHING, Comparison, Series, draw, plot_series

# (bright, dim) per run: smoothed curves and validation points bright, raw curves dim
PALETTE = [((0, 175, 255), (0, 85, 125)), ((255, 135, 0), (125, 66, 0)), ((95, 215, 95), (46, 105, 46)),
           ((215, 95, 215), (105, 46, 105)), ((255, 215, 0), (125, 105, 0)), ((0, 215, 175), (0, 105, 85))]


def run_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)][0]


def _style(s: Series) -> dict:
    bright, dim = PALETTE[s.run % len(PALETTE)]
    if s.kind == "val":
        return {"marker": "●", "color": bright, "label": None, "scatter": True}  # the legend names each run once
    if s.kind == "train raw":
        return {"marker": "braille", "color": dim}
    return {"marker": "braille", "color": bright, "label": s.name}


class ComparePlot(PlotextPlot):
    """The runs of a ``Comparison`` against step, tokens seen or wall time."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.comparison: Comparison | None = None
        self.axis = "step"
        self.smoothing = DEFAULT_SMOOTHING
        self.log_y = True

    def show(self, comparison: Comparison | None) -> None:
        self.comparison = comparison
        self.replot()

    def on_resize(self) -> None:
        self.replot()

    def replot(self) -> None:
        if self.comparison is None:
            self.plt.clear_data()
            self.plt.clear_figure()
            self.plt.title("loading the runs ...")
        else:
            series = plot_series(self.comparison, self.axis, self.smoothing, points=max(10, self.size.width - 10))
            smoothing = f"smoothing {self.smoothing:g}" if self.smoothing else "no smoothing"
            draw(self.plt, series, self.axis, self.log_y, _style, title=f"loss · {smoothing}")
        self.refresh()
