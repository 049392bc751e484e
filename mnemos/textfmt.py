"""Plain-text pieces that the CLI and the app draw alike: a bar. (The one duration format
is ``mnemos.budget.format_duration``, beside its parser.)"""

from __future__ import annotations


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``fraction * width`` cells, in half-cell steps."""
    full = max(0.0, fraction) * width
    return "█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")
