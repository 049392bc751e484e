"""Mnemos: a small GPT written from scratch in NumPy.

The engine lives here; the terminal app (``tui``) and the command line (``mnemos.cli``)
are two faces over it. Nothing in this package imports ``textual``.
"""

__version__ = "0.1.0"

from mnemos.errors import MnemosError  # noqa: E402

__all__ = ["MnemosError", "__version__"]
