"""The CuPy backend against NumPy: the same model code on a GPU (with the fused kernels of
mnemos.cuda_kernels) gives NumPy's loss, gradients, AdamW steps and checkpoints.
Skipped, with the reason, where CuPy is missing or sees no GPU."""

import numpy as np
import pytest

from mnemos.backend import get_array_module, to_numpy
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import DeviceError
from mnemos.nn import GPT
from mnemos.optim import AdamW, clip_grad_norm

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'mnemos[gpu]')")
try:
    get_array_module("cuda")
except DeviceError as exc:
    pytest.skip(str(exc), allow_module_level=True)

CFG = ModelConfig(vocab_size=101, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=0.0)
LLAMA = ModelConfig(vocab_size=101, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=0.0, arch="llama",
                    head="untied")
ARCHS = pytest.mark.parametrize("cfg", [CFG, LLAMA], ids=["gpt2", "llama"])


def batch(B=4, T=32, seed=0, vocab=101):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (B, T)), rng.integers(0, vocab, (B, T))


def pair(cfg=CFG, dtype=np.float32, seed=0):
    cpu, gpu = GPT(cfg, dtype=dtype, seed=seed), GPT(cfg, dtype=dtype, seed=seed, device="cuda")
    assert gpu.xp is cupy and isinstance(gpu.params.data, cupy.ndarray)
    return cpu, gpu


def loss_and_grad(model, x, y):
    model.params.grad.fill(0)
    _, loss = model.forward(x, y, train=True)
    model.backward()
    return loss, to_numpy(model.params.grad).copy()


def test_same_initial_weights_on_both_devices():
    cpu, gpu = pair()
    np.testing.assert_array_equal(to_numpy(gpu.params.data), cpu.params.data)


@ARCHS
@pytest.mark.parametrize("B,T", [(4, 32), (3, 17)])  # full block, and a ragged one (rows not multiples of 32)
def test_loss_and_gradients_match_numpy(B, T, cfg):
    cpu, gpu = pair(cfg)
    x, y = batch(B, T, seed=B)
    loss_c, g_c = loss_and_grad(cpu, x, y)
    loss_g, g_g = loss_and_grad(gpu, x, y)
    assert loss_g == pytest.approx(loss_c, rel=1e-5)
    np.testing.assert_allclose(g_g, g_c, rtol=1e-3, atol=1e-5)
    assert np.abs(g_c).max() > 1e-2


@ARCHS
def test_eval_logits_and_the_kv_cache_match_numpy(cfg):
    cpu, gpu = pair(cfg)
    x, _ = batch(2, 20, seed=3)
    logits_c, _ = cpu.forward(x)
    logits_g, _ = gpu.forward(x)
    np.testing.assert_allclose(to_numpy(logits_g), logits_c, rtol=1e-4, atol=1e-5)
    cache = gpu.new_cache(batch=2)
    gpu.forward_cached(x[:, :12], cache)
    step = gpu.forward_cached(x[:, 12:13], cache)
    np.testing.assert_allclose(to_numpy(step)[:, 0], logits_c[:, 12], rtol=1e-4, atol=1e-5)


def test_attention_maps_are_causal_probabilities():
    _, gpu = pair()
    maps = gpu.attention_maps(batch(2, 16)[0])
    for m in maps:
        assert isinstance(m, np.ndarray) and m.shape == (2, 4, 16, 16)
        np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
        assert np.all(np.triu(m, k=1) == 0)


def test_three_adamw_steps_match_numpy():
    """Both optimizers step from the CPU's gradient: Adam divides each coordinate by its own
    scale, so float32 rounding in a gradient near 0 or eps (1e-8) moves a parameter by up
    to ~lr, and the two runs would drift apart by more than these tolerances (seen with
    float32 against float64 at these seeds) even with a correct kernel."""
    cpu, gpu = pair()
    opts = [AdamW(m.params, lr=3e-3, weight_decay=0.1) for m in (cpu, gpu)]
    for step in range(3):
        x, y = batch(seed=10 + step)
        losses = []
        for model in (cpu, gpu):
            loss, _ = loss_and_grad(model, x, y)
            losses.append((loss, clip_grad_norm(model.params.grad, 1.0)))
        gpu.params.grad[...] = cupy.asarray(cpu.params.grad)
        for opt in opts:
            opt.step(3e-3)
        assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-5)
        assert losses[1][1] == pytest.approx(losses[0][1], rel=1e-4)
    np.testing.assert_allclose(to_numpy(gpu.params.data), cpu.params.data, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(opts[1].state_dict()["v"], opts[0].state_dict()["v"], rtol=1e-3, atol=1e-12)
    assert opts[1].t == 3 and isinstance(opts[1].state_dict()["m"], np.ndarray)


@pytest.mark.parametrize("name, lr", [("muon", 3e-3), ("sgd", 0.1)])
def test_three_muon_and_sgd_steps_match_numpy(name, lr):
    """Muon's batched Newton-Schulz and its AdamW spans (the fused kernel on slices of the
    flat buffer), and SGD, on the device from the CPU's gradients."""
    from mnemos.optim import make_optimizer

    cpu, gpu = pair()
    opts = [make_optimizer(TrainConfig(optimizer=name, lr=lr), m.params) for m in (cpu, gpu)]
    for step in range(3):
        x, y = batch(seed=20 + step)
        loss_and_grad(cpu, x, y)
        clip_grad_norm(cpu.params.grad, 1.0)
        gpu.params.grad[...] = cupy.asarray(cpu.params.grad)
        for opt in opts:
            opt.step(lr)
    np.testing.assert_allclose(to_numpy(gpu.params.data), cpu.params.data, rtol=1e-4, atol=1e-5)
    states = [opt.state_dict() for opt in opts]
    assert states[1].keys() == states[0].keys() and states[1]["t"] == 3
    for key in states[0]:
        if key != "t":
            assert isinstance(states[1][key], np.ndarray)
            np.testing.assert_allclose(states[1][key], states[0][key], rtol=1e-3, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_float64_gradients_on_the_device_match_finite_differences(arch):
    cfg = ModelConfig(vocab_size=23, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.0, arch=arch)
    model = GPT(cfg, dtype=np.float64, seed=1, device="cuda")
    x, y = batch(3, 8, seed=4, vocab=23)
    _, grad = loss_and_grad(model, x, y)
    rng = np.random.default_rng(0)
    data = model.params.data
    checked = 0
    for name in model.params.names:  # a few coordinates of every parameter
        start = model.params.offsets[name]
        size = int(np.prod(model.params.shapes[name]))
        for i in start + rng.choice(size, size=min(3, size), replace=False):
            old = float(data[i])
            data[i] = old + 1e-6
            up = model.forward(x, y)[1]
            data[i] = old - 1e-6
            down = model.forward(x, y)[1]
            data[i] = old
            numeric = (up - down) / 2e-6
            assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name
            checked += 1
    assert checked == 3 * len(model.params.names)  # every parameter


def test_dropout_on_the_device_is_reproducible_and_drops_at_rate_p():
    cfg = ModelConfig(**{**CFG.to_dict(), "dropout": 0.3})
    x, y = batch()
    a, b = GPT(cfg, seed=2, device="cuda"), GPT(cfg, seed=2, device="cuda")
    la, _ = loss_and_grad(a, x, y)
    lb, _ = loss_and_grad(b, x, y)
    mask = a.blocks[0].mlp.drop.mask
    assert la == lb and bool((mask == b.blocks[0].mlp.drop.mask).all())  # the same seed: the same masks
    assert abs(float((mask == 0).mean()) - 0.3) < 0.02
    assert float(mask.max()) == pytest.approx(1 / 0.7, rel=1e-6)
    first = mask.copy()
    lc, _ = loss_and_grad(a, x, y)
    assert lc != la and not bool((a.blocks[0].mlp.drop.mask == first).all())  # the generator moved on


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_gpu_run_checkpoints_numpy_and_resumes_on_the_cpu(tmp_path, arch):
    from mnemos.checkpoint import load_checkpoint
    from mnemos.trainer import Trainer

    text = tmp_path / "t.txt"
    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride".split()
    text.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(200)), encoding="utf-8")
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, arch=arch)
    train = TrainConfig(tokenizer_vocab=256, batch_size=4, max_steps=10, warmup_steps=2, eval_interval=5, eval_steps=1,
                        sample_tokens=4, device="cuda", workers=1)
    trainer = Trainer.new(cfg, train, text, out_dir=tmp_path / "run")
    assert trainer.run().reason == "finished"
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.model.xp is np
    np.testing.assert_array_equal(ckpt.model.params.data, to_numpy(trainer.model.params.data))
    x, _ = batch(2, 16, vocab=257)
    np.testing.assert_allclose(to_numpy(trainer.model.forward(x)[0]), ckpt.model.forward(x)[0], rtol=1e-4,
                               atol=1e-5)
    resumed = Trainer.from_checkpoint(tmp_path / "run", max_steps=12, device="cpu")
    assert resumed.run().reason == "finished" and resumed.model.xp is np
    back = Trainer.from_checkpoint(tmp_path / "run", max_steps=14, device="cuda")
    assert back.run().reason == "finished" and back.model.xp is cupy


def test_the_command_line_trains_on_the_device_and_generates_on_the_cpu(tmp_path, monkeypatch, capsys):
    from mnemos.cli import main

    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride".split()
    (tmp_path / "t.txt").write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(200)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4",
            "--vocab-size", "256", "--eval-steps", "1", "--warmup-steps", "2"]
    rc = main(["train", "--data", "t.txt", "--out", "run", "--device", "cuda", "--workers", "2", "--max-steps", "4",
               "--eval-interval", "2", *tiny])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "--workers 2 applies to --device cpu; one process drives the GPU" in out
    assert "done (finished) at step 4" in out
    rc = main(["generate", "--checkpoint", "run", "--prompt", "the king", "--max-new-tokens", "8", "--seed", "1"])
    out, err = capsys.readouterr()
    assert rc == 0 and out.startswith("the king"), err


def test_the_gpu_benchmark_trains_the_same_model_as_numpy():
    """benchmarks/gpu_speed.py's Mnemos side (a GPU session is too short to find its bugs)."""
    from benchmarks.gpu_speed import SHAPES, MnemosCuda, batches

    cfg, _ = SHAPES["baby"]
    state = GPT(cfg, seed=0).state_dict()
    runner = MnemosCuda(cfg, state)
    cpu = GPT(cfg)
    cpu.load_state_dict(state)
    opt = AdamW(cpu.params, lr=1e-3)
    for x, y in batches(cfg, 2, 2):
        loss = runner.step(x, y)
        _, expected = cpu.forward(x, y, train=True)
        cpu.backward(accumulate=False)
        clip_grad_norm(cpu.params.grad, 1.0)
        opt.step(1e-3)
        assert loss == pytest.approx(expected, rel=1e-5)
    runner.sync()
