"""``AutoPlan``: what ``--preset auto`` chose for the training file, and why, before a run starts.

``plan(data, budget_s, workers, fixed)`` measures the text and this machine
(``mnemos.autosize.plan``: a few seconds the first time, then cached) in a thread worker;
a newer request cancels an older one. The widget shows "measuring ..." meanwhile, then one
line per reason, and posts :class:`AutoPlan.Planned` with the choice for the form to take.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker


class AutoPlan(Static):
    """The reasons of auto's latest choice (hidden unless the preset is auto)."""

    class Planned(Message):
        """Auto chose ``choice`` (a ``mnemos.autosize.AutoChoice``) for ``data``."""

        def __init__(self, choice, data: Path) -> None:
            super().__init__()
            self.choice, self.data = choice, data

    def on_mount(self) -> None:
        self.border_title = "auto: why these settings"

    def plan(self, data: Path | None, budget_s: float, workers: int, fixed: dict | None = None) -> None:
        """Choose for ``data`` (None: say that a training file is needed first)."""
        if data is None:
            self.update("Choose a training file on Datasets (F2): auto sizes the model to it.")
            return
        self.update(f"measuring {data.name} and this machine's speed (a few seconds, the first time) ...")
        self._plan(Path(data), budget_s, workers, dict(fixed or {}))

    @work(thread=True, exclusive=True, group="auto-plan")
    def _plan(self, data: Path, budget_s: float, workers: int, fixed: dict) -> None:
        from mnemos.autosize import plan
        from mnemos.errors import MnemosError

        worker = get_current_worker()
        try:
            choice = plan(data, budget_s, workers, fixed=fixed)
        except MnemosError as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.update, f"auto cannot plan for {data.name}: {exc}")
                self.app.call_from_thread(self.notify, str(exc), title="auto", severity="error")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, choice, data)

    def _show(self, choice, data: Path) -> None:
        self.update("\n".join(f"• {line}" for line in choice.reasons))
        self.post_message(self.Planned(choice, data))
