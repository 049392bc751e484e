"""mnemos.memory and the bounds of the configs: every shape and count is checked, and a
run's memory estimated against what is available, before anything is allocated (issue 13)."""

import numpy as np
import pytest

from mnemos import memory
from mnemos.cli import main
from mnemos.config import LIMITS, ModelConfig, TrainConfig
from mnemos.errors import ConfigError
from mnemos.memory import MemoryEstimate, check_fits, inference_estimate, training_estimate
from mnemos.nn import GPT

MODEL = ModelConfig(vocab_size=257, n_layer=4, n_head=4, n_embd=128, block_size=64)


def test_the_estimate_adds_its_parts():
    B, T, C, H, L, V, P = 12, 64, 128, 4, 4, 257, MODEL.num_params()
    est = training_estimate(MODEL, TrainConfig(batch_size=B, workers=1))
    activations = L * (16 * B * T * C + 2 * B * H * T * T) + 2 * B * T * V + 32 * B * T * C + 2 * B * H * T * T
    # AdamW: m, v and its scratch buffer, 3 floats a parameter (mnemos.optim.STATE_FLOATS)
    assert est == MemoryEstimate(weights=8 * P, optimizer=12 * P, activations=4 * activations, masks=4 * L * T * T)
    assert est.total == 20 * P + 4 * activations + 4 * L * T * T


def test_workers_add_their_gradients_activations_masks_and_interpreters():
    one = training_estimate(MODEL, TrainConfig(batch_size=12, workers=1))
    three = training_estimate(MODEL, TrainConfig(batch_size=12, workers=3))
    P = MODEL.num_params()
    assert three.weights - one.weights == 3 * 4 * P
    assert three.masks == 4 * one.masks
    assert three.workers == 3 * memory.PROCESS_BYTES
    assert three.activations > one.activations
    cuda = training_estimate(MODEL, TrainConfig(batch_size=12, workers=3, device="cuda"))
    assert cuda == one  # one process drives the GPU


def test_another_optimizer_plugs_in_its_state_size(monkeypatch):
    class Train:
        batch_size, workers, device, optimizer = 12, 1, "cpu", "sgd"

    monkeypatch.setitem(memory.OPTIMIZER_STATE, "sgd", 1)
    assert training_estimate(MODEL, Train()).optimizer == 4 * MODEL.num_params()
    Train.optimizer = "lion?"
    with pytest.raises(ConfigError, match="unknown optimizer 'lion\\?'"):
        training_estimate(MODEL, Train())


def test_the_estimate_is_not_below_what_the_model_really_allocates():
    """The weights, gradient and masks a model builds: the inference estimate covers them."""
    cfg = ModelConfig(vocab_size=300, n_layer=2, n_head=2, n_embd=32, block_size=48)
    model = GPT(cfg)
    real = model.params.data.nbytes + model.params.grad.nbytes + sum(b.attn.mask.nbytes for b in model.blocks)
    assert inference_estimate(cfg).total == real


def test_a_run_that_cannot_fit_is_refused_with_the_estimate_and_a_suggestion(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    big = ModelConfig(vocab_size=257, n_layer=2, n_head=2, n_embd=64, block_size=8192)
    with pytest.raises(ConfigError) as exc:
        check_fits(training_estimate(big, TrainConfig(batch_size=1, workers=1)))
    message = str(exc.value)
    assert "\n" not in message and "1.0 GB is available" in message and "masks 512 MB" in message
    assert "smaller --batch-size or --block-size" in message  # the activations are the largest part
    check_fits(training_estimate(MODEL, TrainConfig(batch_size=1, workers=1)))  # 1 GB is plenty for this
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: no refusal
    check_fits(training_estimate(big, TrainConfig(batch_size=1, workers=1)))


def test_the_address_space_limit_counts_as_available(monkeypatch):
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 64 << 30)
    monkeypatch.setattr(memory, "_address_space_left", lambda: 2 << 30)
    assert memory.available_bytes() == 2 << 30


@pytest.mark.parametrize("flags, words", [
    (["--block-size", "150000"], "smaller --batch-size or --block-size"),
    (["--n-embd", "65536", "--n-head", "1"], "smaller --n-layer, --n-embd or --vocab-size"),
    (["--batch-size", "1000000"], "smaller --batch-size"),
    (["--n-layer", "100000"], "n_layer must be at most 1,024"),
    (["--workers", "100000"], "workers must be at most 256"),
    (["--block-size", str(10 ** 20)], "block_size must be at most"),
    (["--batch-size", str(10 ** 20)], "batch_size must be at most"),
    (["--max-steps", str(10 ** 20)], "max_steps must be at most"),
    (["--grad-clip", "inf"], "--grad-clip must be a finite number, got inf"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
    (["--dropout=-inf"], "--dropout must be a finite number, got -inf"),
])
def test_impossible_sizes_are_refused_before_anything_is_allocated(tmp_path, monkeypatch, capsys, flags, words):
    """The repros of issue 13 #1: one line, exit 2, and no run folder, no tokenizer cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 << 30)
    (tmp_path / "t.txt").write_text("hello world, a short text\n" * 10)
    rc = main(["train", "--data", "t.txt", "--out", "run", "--vocab-size", "300", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_a_text_shorter_than_one_window_is_refused_before_the_tokenizer_learns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("short\n")
    rc = main(["train", "--data", "t.txt", "--out", "run", "--vocab-size", "300", "--block-size", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and "shorter than one context window" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]  # no .cache: nothing was learned


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_limit_is_enforced_on_the_config_itself(name):
    cls = ModelConfig if name in ModelConfig.__dataclass_fields__ else TrainConfig
    with pytest.raises(ConfigError, match=f"{name} must be at most"):
        cls(**{name: LIMITS[name] + 1})
    assert np.isfinite(LIMITS[name])


@pytest.mark.parametrize("cls, name", [(TrainConfig, "grad_clip"), (TrainConfig, "lr"), (TrainConfig, "weight_decay"),
                                       (ModelConfig, "dropout")])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_the_configs_refuse_non_finite_floats_too(cls, name, value):
    """The app's form and a config.json reach the configs without the command line's check."""
    with pytest.raises(ConfigError, match=f"{name} must be a finite number"):
        cls(**{name: value})


@pytest.mark.parametrize("arch, optimizer", [("gpt2", "adamw"), ("llama", "muon")])
def test_the_training_estimate_is_within_a_tenth_of_a_measured_step(arch, optimizer):
    """tracemalloc (NumPy reports its buffers to it) over building the model and optimizer
    and two training steps: the estimate left out the scratch buffers the blocks share
    (mnemos.nn.workspace) and was a third below the peak."""
    import tracemalloc

    from mnemos.config import ModelConfig, TrainConfig
    from mnemos.nn import GPT
    from mnemos.optim import make_optimizer

    cfg = ModelConfig(vocab_size=512, n_layer=2, n_head=4, n_embd=64, block_size=64, arch=arch)
    train = TrainConfig(batch_size=8, workers=1, optimizer=optimizer, max_steps=1)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 512, (2, 8, 64))
    tracemalloc.start()
    try:
        model = GPT(cfg, seed=0)
        opt = make_optimizer(train, model.params)
        for _ in range(2):
            model.forward(x, y, train=True)
            model.backward(accumulate=False)
            opt.step(1e-3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = training_estimate(cfg, train).total
    assert 0.9 * peak <= estimate <= 1.25 * peak, (estimate, peak)
