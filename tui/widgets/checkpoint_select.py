"""``CheckpointSelect``: a drop-down of the runs under ``checkpoints/``, newest first."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Select


class CheckpointSelect(Select[str]):
    """Options are checkpoint folder paths; labels show name, step and best val loss."""

    def __init__(self, **kwargs) -> None:
        super().__init__([], prompt="choose a checkpoint", compact=True, **kwargs)

    def reload(self, root: Path, keep: Path | None = None) -> int:
        """Refill from ``root``; select ``keep`` (or the current value) if still there,
        else the newest run. Returns the number of usable checkpoints."""
        from mnemos.checkpoint import list_checkpoints

        current = Path(str(keep)) if keep is not None else (
            None if self.value == Select.NULL else Path(str(self.value)))
        options = []
        for info in list_checkpoints(root):
            if info.problem is None:
                best = f", best val {info.best_val_loss:.3f}" if info.best_val_loss is not None else ""
                options.append((f"{info.name} (step {info.step}{best})", str(Path(info.path).resolve())))
        with self.prevent(Select.Changed):
            self.set_options(options)
        values = [value for _, value in options]
        if current is not None and str(current.resolve()) in values:
            self.value = str(current.resolve())
        elif values:
            self.value = values[0]
        return len(options)
