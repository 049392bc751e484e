"""``HyperparamForm``: every training setting of the CLI contract, validated as you type.

One row per ``mnemos.config.SETTINGS`` entry (the fields ``mnemos train`` has flags for),
labelled by its flag.
Each field is parsed on every keystroke; the whole form is then validated by building
``ModelConfig`` and ``TrainConfig`` (the engine's own checks, so the TUI cannot drift
from the CLI). The reason a value is refused shows under its field; the parameter count
(``ModelConfig.num_params()``) and the engine's memory estimate (``mnemos.memory``, the
same one that refuses a run that cannot fit) update live.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from mnemos.budget import parse_duration
from mnemos.config import (AUTO_PRESET, DEFAULT_PRESET, PRESETS, SETTINGS, SETTINGS_BY_NAME, ModelConfig, Preset,
                           Setting, TrainConfig, configs_from)
from mnemos.errors import ConfigError
from mnemos.memory import check_fits, format_bytes, training_estimate


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t"}  # a one-line Input shows \n for a newline
_UNESCAPES = {escaped[1]: ch for ch, escaped in _ESCAPES.items()}


def _format_value(value, field: Setting | None = None) -> str:
    if value is None:  # an optional setting left unset: a blank field
        return ""
    if field is not None and field.kind is parse_duration:  # 300.0 -> 5m, 90.0 -> 90s
        return f"{value / 60:g}m" if value % 60 == 0 else f"{value:g}s"
    if isinstance(value, str):
        return "".join(_ESCAPES.get(ch, ch) for ch in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unescape(text: str) -> str:
    """The inverse of ``_format_value`` on strings: ``\\n`` is a newline, ``\\t`` a tab,
    ``\\\\`` a backslash; any other backslash stays as typed."""
    return re.sub(r"\\([\\nt])", lambda m: _UNESCAPES[m.group(1)], text)


def _parse(field: Setting, text: str):
    if field.text:
        if not text:
            raise ConfigError("required (type \\n for a new line)")
        return _unescape(text)  # spaces are part of a prompt: not stripped
    text = text.strip()
    if not text and field.optional:
        return None
    if not text:
        raise ConfigError("required")
    if field.kind not in (int, float, str):  # a reader of its own, e.g. a duration
        return field.kind(text)
    if field.kind is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ConfigError("a whole number") from None
    if field.kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError("a number, e.g. 3e-4") from None
    return text


class HyperparamForm(VerticalScroll):
    """The form. ``configs()`` returns the validated ``(ModelConfig, TrainConfig)``."""

    class Changed(Message):
        """The form was edited; ``valid`` says whether it can start a run."""

        def __init__(self, form: "HyperparamForm", valid: bool) -> None:
            super().__init__()
            self.form = form
            self.valid = valid

    class AutoWanted(Message):
        """The preset ``auto`` was chosen: the screen measures the text and calls :meth:`apply_auto`."""

    def __init__(self, preset: str = DEFAULT_PRESET, **kwargs) -> None:
        super().__init__(**kwargs)
        self.preset = preset
        self._auto: Preset | None = None  # auto's latest choice, the base of the configs while preset is auto
        self._auto_wanted = False  # auto was asked to choose and no field was edited since
        self.errors: dict[str, str] = {}
        self._resuming = False

    def compose(self) -> ComposeResult:
        yield Static(id="form-summary")
        with Horizontal(classes="form-row"):
            yield Label("preset", classes="form-label")
            yield Select([(f"{p.name}: {p.description}", p.name) for p in PRESETS.values()]
                         + [(f"{AUTO_PRESET}: sized to your text, the time budget and this machine", AUTO_PRESET)],
                         value=self.preset, allow_blank=False, id="preset", compact=True)
        for field in SETTINGS:
            with Horizontal(classes="form-row"):
                yield Label(field.label, classes="form-label")
                yield Input(id=f"f-{field.name}", classes="form-input", compact=True,
                            select_on_focus=False, placeholder=field.optional)
            yield Label("", id=f"e-{field.name}", classes="form-error hidden")

    def on_mount(self) -> None:
        self.apply_preset(self.preset)

    # -- values -----------------------------------------------------------------------

    def apply_preset(self, name: str) -> None:
        if name == AUTO_PRESET:  # chosen for the training file: the screen measures it
            self._auto_wanted = True
            self.post_message(self.AutoWanted())
        model, train = configs_from(self._base if name == AUTO_PRESET else name)  # as `mnemos train --preset NAME`
        self.set_values({**model.to_dict(), **train.to_dict()})

    def apply_auto(self, choice) -> None:
        """Take auto's choice (``mnemos.autosize.AutoChoice``) if auto is still the preset and
        no field was edited since it was asked for (a person's edits are never overwritten)."""
        if self.preset == AUTO_PRESET and self._auto_wanted:
            self._auto = Preset(AUTO_PRESET, "", choice.model, choice.train)
            model, train = configs_from(self._auto)
            self.set_values({**model.to_dict(), **train.to_dict()})

    @property
    def _base(self) -> str | Preset:
        """What ``configs_from`` starts from: the preset, or auto's choice (the default
        preset until auto has chosen)."""
        if self.preset == AUTO_PRESET:
            return self._auto or DEFAULT_PRESET
        return self.preset

    def set_values(self, values: dict) -> None:
        """Fill the fields from config dicts (a preset, or a checkpoint's configs)."""
        with self.prevent(Input.Changed):
            for field in SETTINGS:
                if field.name in values:
                    self.query_one(f"#f-{field.name}", Input).value = _format_value(values[field.name], field)
        self.validate()

    def set_resuming(self, resuming: bool) -> None:
        """When resuming, the model's shape comes from the checkpoint and cannot change."""
        self._resuming = resuming
        for field in SETTINGS:
            if field.shape:
                self.query_one(f"#f-{field.name}", Input).disabled = resuming

    def raw_values(self) -> dict[str, object]:
        """Each field parsed on its own; parse errors go to ``self.errors``."""
        values = {}
        for field in SETTINGS:
            try:
                values[field.name] = _parse(field, self.query_one(f"#f-{field.name}", Input).value)
            except ConfigError as exc:
                self.errors[field.name] = str(exc)
        return values

    def value(self, name: str):
        """The parsed value of one field (None if there is no such field or it does not parse)."""
        if name not in SETTINGS_BY_NAME:
            return None
        try:
            return _parse(SETTINGS_BY_NAME[name], self.query_one(f"#f-{name}", Input).value)
        except ConfigError:
            return None

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The validated configs, or ``ConfigError`` naming the first bad field."""
        self.validate()
        if self.errors:
            name, reason = next(iter(self.errors.items()))
            raise ConfigError(f"{SETTINGS_BY_NAME[name].label}: {reason}", field=name)
        return configs_from(self._base, self.raw_values())

    # -- validation -------------------------------------------------------------------

    def validate(self) -> bool:
        """Check every field, show the reasons, update the summary; True when valid."""
        shown, self.errors = self.errors, {}
        values = self.raw_values()
        model = train = None
        if "max_steps" in values and values["max_steps"] is None and values.get("time_budget") is None:
            self.errors["max_steps"] = "required without a time budget"  # else the preset's would apply unseen
        if not self.errors:
            try:
                model, train = configs_from(self._base, values)
            except ConfigError as exc:
                self.errors[exc.field if exc.field in SETTINGS_BY_NAME else SETTINGS[0].name] = str(exc)
        for name in set(self.errors) | set(shown):
            reason = self.errors.get(name)
            if shown.get(name) != reason:
                label = self.query_one(f"#e-{name}", Label)
                label.update(f"↑ {reason}" if reason else "")
                label.set_class(reason is None, "hidden")
                self.query_one(f"#f-{name}", Input).set_class(reason is not None, "-invalid")
        self._summarise(model, train)
        valid = not self.errors
        self.post_message(self.Changed(self, valid))
        return valid

    def _summarise(self, model: ModelConfig | None, train: TrainConfig | None) -> None:
        summary = self.query_one("#form-summary", Static)
        if model is None:
            summary.update(Text("fix the fields marked below", style="bold red"))
            return
        params = model.num_params()
        estimate = training_estimate(model, train)
        text = Text()
        text.append(f"{params / 1e6:.2f} M", style="bold")
        text.append(" parameters · ")
        text.append(f"≈ {format_bytes(estimate.total)}", style="bold")
        text.append(" memory")
        try:
            check_fits(estimate)
        except ConfigError:
            text.append(" · more than is free", style="bold red")
        summary.update(text)

    @on(Input.Changed, ".form-input")
    def _field_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.preset == AUTO_PRESET and event.input.id == "f-time_budget":
            self.post_message(self.AutoWanted())  # another budget: auto chooses again (the text's numbers are cached)
        else:
            self._auto_wanted = False
        self.validate()

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != self.preset or not self._resuming:
            self.preset = str(event.value)
            self.apply_preset(self.preset)
