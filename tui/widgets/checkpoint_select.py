"""``CheckpointSelect``: a drop-down of the runs under ``checkpoints/``, newest first, plus
the one opened from elsewhere (``mnemos-tui --checkpoint DIR`` or a run saved outside it)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Select


class CheckpointSelect(Select[str]):
    """Options are checkpoint folder paths; labels show name, step and best val loss."""

    def __init__(self, **kwargs) -> None:
        super().__init__([], prompt="choose a checkpoint", compact=True, **kwargs)
        self.choices: list[tuple[str, str]] = []  # (label, resolved path) as last loaded

    def reload(self, root: Path, keep: Path | None = None) -> int:
        """Refill from ``root``; select ``keep`` (or the current value) if still there,
        else the newest run. ``keep`` outside ``root`` is listed first, under its path.
        Returns the number of usable checkpoints."""
        from mnemos.checkpoint import checkpoint_info, list_checkpoints

        current = Path(str(keep)) if keep is not None else (
            None if self.value == Select.NULL else Path(str(self.value)))
        infos = list_checkpoints(root)
        if current is not None and str(current.resolve()) not in {str(Path(i.path).resolve()) for i in infos}:
            outside = checkpoint_info(current)
            outside.name = str(current)  # not under checkpoints/: its path says where it is
            infos.insert(0, outside)
        options = []
        for info in infos:
            if info.problem is None:
                best = f", best val {info.best_val_loss:.3f}" if info.best_val_loss is not None else ""
                options.append((f"{info.name} (step {info.step}{best})", str(Path(info.path).resolve())))
        self.choices = options
        with self.prevent(Select.Changed):
            self.set_options(options)
        values = [value for _, value in options]
        if current is not None and str(current.resolve()) in values:
            self.value = str(current.resolve())
        elif values:
            self.value = values[0]
        return len(options)
