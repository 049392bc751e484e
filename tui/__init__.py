"""The Mnemos terminal app: a Textual face over the engine's public API.

Nothing here trains, evaluates or samples by itself: screens call ``mnemos.trainer``,
``mnemos.evaluate`` and ``mnemos.generate`` in thread workers and draw the events they
report.
"""
