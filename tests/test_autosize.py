"""``--preset auto``'s rule (mnemos.autosize): a pure function of the text's size, the budget
and the machine's speed, so these tests give it made-up measurements and check its choices."""

import json
import math

import numpy as np
import pytest

from mnemos import autosize
from mnemos.autosize import (DROPOUT_FROM, AutoChoice, TextStats, block_params, choose, effective_tokens, measure_text,
                             plan)
from mnemos.calibrate import Calibration, SpeedModel
from mnemos.config import ModelConfig, TrainConfig
from mnemos.tokenizer import BPETokenizer

FAST = SpeedModel(0.0, 160e9)  # this project's 2-core machine, unloaded: ~160 GFLOP/s
BPT = {512: 1.9, 1024: 2.4, 2048: 2.8}  # Shakespeare's bytes per token


def stats(n_bytes: int) -> TextStats:
    return TextStats(n_bytes, dict(BPT))


def configs(choice: AutoChoice) -> tuple[ModelConfig, TrainConfig]:
    """The choice builds valid configs (what the CLI does with it)."""
    train = TrainConfig(**choice.train)
    return ModelConfig(vocab_size=train.tokenizer_vocab + 1, **choice.model), train


def test_same_measurements_same_choice():
    a, b = choose(stats(5_000_000), 300, FAST), choose(stats(5_000_000), 300, FAST)
    assert (a.model, a.train, a.reasons) == (b.model, b.train, b.reasons)
    configs(a)


def test_more_time_or_a_faster_machine_never_gives_a_smaller_model():
    sizes = [block_params(c.model["n_layer"], c.model["n_embd"])
             for c in (choose(stats(20_000_000), budget, FAST) for budget in (30, 120, 300, 900, 3600))]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    slow, fast = (choose(stats(20_000_000), 300, SpeedModel(0.0, f)) for f in (20e9, 400e9))
    assert block_params(slow.model["n_layer"], slow.model["n_embd"]) < block_params(fast.model["n_layer"],
                                                                                    fast.model["n_embd"])


def test_the_chosen_shape_is_the_ladder_rung_nearest_the_tokens_per_parameter_target():
    text = stats(50_000_000)
    choice = choose(text, 600, FAST, {"optimizer": "adamw"})  # much text: no repeats, so plain tokens per parameter

    def distance(L, C):
        vocab = choice.train["tokenizer_vocab"]
        cfg = ModelConfig(vocab_size=vocab + 1, n_layer=L, n_head=C // 32, n_embd=C, block_size=128)
        train_s = (600 - 0.6 * 50) * autosize.TRAIN_SHARE
        seen = FAST.tokens_per_s(cfg) * train_s
        return abs(math.log(effective_tokens(seen, text.tokens(vocab)) / block_params(L, C)
                            / autosize.target_tokens_per_param(FAST.flops_per_s * train_s)))

    best = min(autosize.LADDER, key=lambda rung: distance(*rung))
    assert (choice.model["n_layer"], choice.model["n_embd"]) == best


def test_a_small_text_gets_bytes_dropout_and_the_smallest_model():
    choice = choose(TextStats(100_000, {512: 2.0, 1024: 2.6, 2048: 3.1}), 300, FAST)
    model, train = configs(choice)
    assert train.tokenizer_vocab == 256
    assert (model.n_layer, model.n_embd) == autosize.LADDER[0]
    assert model.dropout == 0.2
    assert choice.epochs > 100
    assert "0.1 MB" in choice.reasons[0] or "100 KB" in choice.reasons[0]


def test_the_vocabulary_grows_with_the_text():
    vocabs = [choose(stats(n), 300, FAST).train["tokenizer_vocab"] for n in (50_000, 1_000_000, 2_000_000, 20_000_000)]
    assert vocabs == sorted(vocabs) and vocabs[0] == 256 and vocabs[-1] == 2048


def test_dropout_follows_the_epochs():
    big = choose(stats(200_000_000), 120, FAST)
    assert big.epochs < 1 and big.model["dropout"] == 0.0
    chosen = [choose(stats(n), 300, FAST) for n in (300_000, 1_000_000, 1_500_000, 2_000_000, 5_000_000)]
    assert [c.model["dropout"] for c in chosen] == [0.0 if c.epochs <= DROPOUT_FROM else 0.1 if c.epochs <= 16 else 0.2
                                                    for c in chosen]
    assert {c.model["dropout"] for c in chosen} >= {0.1, 0.2}


def test_the_settings_a_user_gives_are_kept_and_the_rest_chosen_around_them():
    fixed = {"n_layer": 3, "n_embd": 96, "n_head": 4, "tokenizer_vocab": 512, "dropout": 0.05, "lr": 5e-4,
             "block_size": 32, "batch_size": 7, "warmup_steps": 13, "sampling": "random", "min_lr": 5e-5,
             "weight_decay": 0.0}
    choice = choose(stats(5_000_000), 300, FAST, fixed)
    assert {k: {**choice.model, **choice.train}[k] for k in fixed} == fixed
    assert sum("given" in line for line in choice.reasons) == 6  # vocabulary, context, min_lr, decay, dropout, sampling
    only_vocab = choose(stats(5_000_000), 300, FAST, {"tokenizer_vocab": 300})  # an unmeasured size: interpolated
    assert only_vocab.train["tokenizer_vocab"] == 300
    configs(only_vocab)


def test_one_reason_per_choice_with_the_numbers_behind_it():
    choice = choose(stats(4_100_000), 300, FAST)
    text = "\n".join(choice.reasons)
    assert all("\n" not in line for line in choice.reasons)
    for word in ("vocabulary", "tokens/s", "parameters", "context", "batch", "learning rate", "warmup", "decay to 0",
                 "weight decay 0.3", "dropout", "sampling", "architecture", "optimizer"):
        assert word in text
    assert "4.1 MB" in text and "5 min" in text
    seen = choice.tokens_seen
    assert f"{seen / 1e6:.3g}M tokens" in text


def test_auto_draws_windows_in_epochs_and_says_what_random_ones_would_miss():
    repeated = choose(stats(4_100_000), 300, FAST)  # a text seen a few times (3.8)
    assert repeated.train["sampling"] == "epoch" and 1 < repeated.epochs < 5
    line = next(r for r in repeated.reasons if r.startswith("sampling"))
    assert f"{math.exp(-repeated.epochs):.0%} of it" in line
    many = choose(stats(100_000), 300, FAST)  # hundreds of passes: nothing left unseen to speak of
    assert many.epochs > 50 and "more often than others" in next(r for r in many.reasons if r.startswith("sampling"))
    once = choose(stats(50_000_000), 300, FAST)  # less than one pass
    assert once.train["sampling"] == "epoch" and once.epochs < 1
    assert "less than one pass" in next(r for r in once.reasons if r.startswith("sampling"))


def test_the_budget_is_spent_on_training_steps():
    choice = choose(stats(5_000_000), 300, FAST)
    model, train = configs(choice)
    assert (train.time_budget, train.max_steps) == (300, None)  # the budget plans the schedule
    tokens = choice.steps * train.batch_size * model.block_size
    assert tokens == pytest.approx(choice.tokens_seen, rel=0.01)
    assert 0 < train.warmup_steps < choice.steps
    assert choice.steps // train.eval_interval == pytest.approx(autosize.EVALS, abs=1)


def test_effective_tokens_discount_repeats():
    assert effective_tokens(500, 1000) == 500
    assert effective_tokens(1000, 1000) == 1000
    two_epochs = effective_tokens(2000, 1000)
    assert 1900 < two_epochs < 2000  # a second epoch is worth almost as much as the first
    many = effective_tokens(1_000_000, 1000)
    assert many == pytest.approx(1000 * (1 + autosize.REPEAT_HALF_LIFE), rel=1e-3)  # saturates


def test_measure_text_vocabulary_prefixes_are_the_smaller_tokenizers():
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "été", "ça"]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(400))
    st = measure_text(text, vocabs=(260, 300, 340))
    assert st.n_bytes == len(text.encode())
    assert st.bytes_per_token[260] < st.bytes_per_token[300] < st.bytes_per_token[340]
    # the claim measure_text rests on: BPE's first k merges are the k merges of a smaller training
    big, small = BPETokenizer.train(text, 340), BPETokenizer.train(text, 300)
    assert [pair for pair, _ in big.merges[:44]] == [pair for pair, _ in small.merges]
    assert st.bytes_per_token[300] == pytest.approx(len(text.encode()) / len(small.encode(text)))


def test_plan_measures_the_file_and_caches_the_machine(tmp_path):
    rng = np.random.default_rng(1)
    text = "\n".join(" ".join(rng.choice(["to", "be", "or", "not", "that", "is"], 10)) for _ in range(300))
    data = tmp_path / "train.txt"
    data.write_text(text)
    timed = []

    def timer(cfg, batch, workers, device="cpu"):
        timed.append((cfg.n_layer, cfg.n_embd, batch, workers))
        return 1e12 / autosize_flops(cfg)  # a 1 TFLOP/s machine

    choice = plan(data, 60, workers=3, calibration=Calibration(tmp_path / "cache", workers=3, timer=timer))
    assert timed == [(L, C, autosize.PROBE_TOKENS // 128, 3) for L, C in autosize.PROBES]
    again = plan(data, 60, workers=3, calibration=Calibration(tmp_path / "cache", workers=3, timer=timer))
    assert len(timed) == 3 and (again.model, again.train) == (choice.model, choice.train)  # from the cache
    cached = json.loads((tmp_path / "cache" / "calibration-v1.json").read_text())
    assert len(next(iter(cached.values()))) == 3
    assert f"{len(text) / 1e3:.0f} KB" in choice.reasons[0]
    measured = list((tmp_path / ".cache").glob("train-*-textstats-v1.json"))  # the text's numbers, kept
    assert len(measured) == 1
    again = lambda: plan(data, 60, workers=3, calibration=Calibration(tmp_path / "cache", workers=3, timer=timer))
    measured[0].write_text('{"n_bytes": 5000000, "bytes_per_token": {"512": 2.0, "1024": 2.5, "2048": 3.0}}')
    assert "5.0 MB" in again().reasons[0]  # read from the cache, not measured again
    measured[0].write_text('{"n_bytes": 5000000, "bytes_per_token": {"512": 2.0}}')  # incomplete: measured again
    assert f"{len(text) / 1e3:.0f} KB" in again().reasons[0]


def autosize_flops(cfg):
    from mnemos.calibrate import flops_per_token

    return flops_per_token(cfg)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_newton_schulz_flops_count_the_muon_stacks_of_the_built_model(arch):
    from mnemos.muon import NS_STEPS, hidden_matrices
    from mnemos.nn import GPT

    cfg = ModelConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=64, block_size=16, arch=arch)
    params = GPT(cfg, seed=0).params
    shapes = [params.shapes[n] for n in hidden_matrices(params)]
    expected = sum(NS_STEPS * (4 * min(s) ** 2 * max(s) + 2 * min(s) ** 3) for s in shapes)
    assert autosize.newton_schulz_flops(cfg) == expected


def test_muon_costs_time_per_step_and_a_given_recipe_is_kept():
    speed = SpeedModel(0.0, 160e9)
    fixed = {"n_layer": 4, "n_embd": 128, "batch_size": 8}
    adamw = choose(stats(5_000_000), 300, speed, {**fixed, "optimizer": "adamw"})
    muon = choose(stats(5_000_000), 300, speed, {**fixed, "optimizer": "muon", "arch": "llama"})
    assert (muon.train["optimizer"], muon.model["arch"]) == ("muon", "llama")
    configs(muon)
    cfg = ModelConfig(vocab_size=adamw.train["tokenizer_vocab"] + 1, n_layer=4, n_head=4, n_embd=128, block_size=128,
                      arch="llama")
    step_s = 8 * 128 / speed.tokens_per_s(cfg)
    ns_s = autosize.newton_schulz_flops(cfg) / speed.flops_per_s  # in the main process, on every core
    assert muon.tokens_seen / adamw.tokens_seen == pytest.approx(step_s / (step_s + ns_s), rel=1e-3)
    assert "optimizer muon: given" in muon.reasons[-1] and "architecture llama: given" in muon.reasons[-1]


def test_auto_takes_muon_with_larger_steps_and_its_own_learning_rate():
    default, adamw = (choose(stats(5_000_000), 300, FAST, fixed) for fixed in ({}, {"optimizer": "adamw"}))
    recipe = (default.train["optimizer"], default.model["arch"])
    assert recipe == (autosize.OPTIMIZER, autosize.ARCH) == ("muon", "llama")
    assert default.model["n_embd"] == adamw.model["n_embd"] == 128  # the shape the measurements were made at
    assert default.train["batch_size"] * default.model["block_size"] == 2 * adamw.train["batch_size"] * 128 == 2048
    assert default.train["lr"] == 2 * adamw.train["lr"] == 0.004
    assert "larger steps" in next(line for line in default.reasons if line.startswith("batch"))
    assert "muon beat adamw" in default.reasons[-1]
