"""``SamplingForm``: temperature, top-k, top-p, max tokens and seed, always visible and
editable; ``settings()`` parses them and checks them with the engine's own rules
(``mnemos.generate.check_sampling``)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from mnemos.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_k: int | None = 40
    top_p: float | None = None
    max_new_tokens: int = 200
    seed: int | None = None

    def describe(self) -> str:
        parts = [f"temperature {self.temperature:g}",
                 f"top-k {self.top_k}" if self.top_k else "top-k off",
                 f"top-p {self.top_p:g}" if self.top_p else "top-p off",
                 f"max {self.max_new_tokens} tokens"]
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)


# (attribute, label, width) in display order
FIELDS = (("temperature", "temp", 6), ("top_k", "top-k", 5), ("top_p", "top-p", 6),
          ("max_new_tokens", "max", 6), ("seed", "seed", 7))


def _show(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class SamplingForm(Horizontal):
    """One row of small inputs; an empty top-k / top-p / seed means "off" / random."""

    def __init__(self, sampling: Sampling = Sampling(), **kwargs) -> None:
        super().__init__(**kwargs)
        self._initial = sampling

    def compose(self) -> ComposeResult:
        for name, label, width in FIELDS:
            yield Label(label, classes="sampling-label")
            field = Input(_show(getattr(self._initial, name)), id=f"s-{name}", compact=True,
                          classes="sampling-input", placeholder="off" if name != "seed" else "random")
            field.styles.width = width + 2
            yield field

    def settings(self) -> Sampling:
        """The parsed settings, or ``ConfigError`` naming the bad one."""
        from mnemos.generate import check_sampling

        raw = {name: self.query_one(f"#s-{name}", Input).value.strip() for name, _, _ in FIELDS}
        try:
            temperature = float(raw["temperature"] or "1")
        except ValueError:
            raise ConfigError(f"temperature must be a number >= 0, got {raw['temperature']!r}") from None
        values = {"temperature": temperature}
        for name, kind in (("top_k", int), ("top_p", float), ("max_new_tokens", int), ("seed", int)):
            text = raw[name]
            if not text:
                values[name] = None
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"{name.replace('_', '-')} must be {what}, got {text!r}") from None
        if values["max_new_tokens"] is None or values["max_new_tokens"] <= 0:
            raise ConfigError("max tokens must be a whole number > 0")
        values["top_k"] = values["top_k"] or None
        values["top_p"] = None if values["top_p"] in (None, 1.0) else values["top_p"]
        check_sampling(values["temperature"], values["top_k"], values["top_p"])
        return Sampling(**values)

    @on(Input.Changed, ".sampling-input")
    def _validate(self, event: Input.Changed) -> None:
        """Mark the whole row invalid while a value cannot be used."""
        try:
            self.settings()
        except ConfigError as exc:
            self.set_class(True, "-invalid")
            self.tooltip = str(exc)
        else:
            self.set_class(False, "-invalid")
            self.tooltip = None
