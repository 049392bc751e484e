"""The configuration schema: one list of settings for the CLI, the app and resume;
presets merged in one place; errors that name their field; old config.json files."""

from __future__ import annotations

import dataclasses

import pytest

from mnemos.cli import build_parser
from mnemos.config import (PRESETS, SETTINGS, SPECIAL_TOKENS, ModelConfig, TrainConfig, configs_from,
                           resumed_configs, setting_values)
from mnemos.errors import ConfigError


def test_every_setting_is_a_train_flag_with_its_type():
    values = setting_values(ModelConfig(), TrainConfig(time_budget=90.0))  # an optional setting set too
    argv = [x for s in SETTINGS for x in (s.flag, str(values[s.name]))]
    args = build_parser().parse_args(["train", *argv])
    assert {s.name: getattr(args, s.name) for s in SETTINGS} == values
    assert build_parser().parse_args(["train", "--vocab-size", "512"]).tokenizer_vocab == 512


def test_configs_from_merges_defaults_preset_and_overrides_and_adds_the_special_token():
    model, train = configs_from("tiny", {"n_layer": 3, "lr": 0.01, "seed": None})
    assert (model.n_layer, model.n_embd) == (3, PRESETS["tiny"].model["n_embd"])
    assert train.lr == 0.01 and train.seed == TrainConfig().seed  # None: not given
    assert model.vocab_size == train.tokenizer_vocab + SPECIAL_TOKENS
    with pytest.raises(ConfigError, match="unknown setting") as caught:
        configs_from("tiny", {"n_layers": 3})
    assert caught.value.field == "n_layers"


def test_resume_refuses_shape_changes_and_takes_the_rest():
    model, train = configs_from("tiny")
    with pytest.raises(ConfigError, match="cannot change vocab-size on resume") as caught:
        resumed_configs(model, train, {"tokenizer_vocab": 512})
    assert caught.value.field == "tokenizer_vocab"
    model2, train2 = resumed_configs(model, train, {"n_embd": model.n_embd, "dropout": 0.1, "max_steps": 999})
    assert model2 == dataclasses.replace(model, dropout=0.1) and train2.max_steps == 999


def test_a_config_json_with_the_old_vocab_size_key_still_loads():
    old = {k: v for k, v in TrainConfig(tokenizer_vocab=300).to_dict().items() if k != "tokenizer_vocab"}
    assert TrainConfig.from_dict({**old, "vocab_size": 300}) == TrainConfig(tokenizer_vocab=300)
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
