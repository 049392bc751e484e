"""mnemos.backend: choosing the array module, one-line device errors, and the helpers
that hide the few calls where NumPy and CuPy differ (their NumPy side; tests/test_gpu.py
checks the CuPy side on a GPU)."""

import sys
import types

import numpy as np
import pytest

from mnemos import backend
from mnemos.backend import dropout_mask, fused_kernels, get_array_module, scatter_add, to_numpy
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import DeviceError
from mnemos.nn import GPT
from mnemos.optim import AdamW


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_cpu_is_numpy():
    assert get_array_module("cpu") is np and get_array_module() is np
    assert GPT(ModelConfig(vocab_size=11, n_layer=1, n_head=1, n_embd=8, block_size=4)).xp is np


def test_an_unknown_device_is_a_device_error():
    with pytest.raises(DeviceError) as exc:
        get_array_module("tpu")
    assert "'tpu'" in one_line(exc) and "--device cpu" in one_line(exc)


def test_cuda_without_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(DeviceError) as exc:
        get_array_module("cuda")
    msg = one_line(exc)
    assert "CuPy" in msg and "pip install 'mnemos[gpu]'" in msg and "--device cpu" in msg


def fake_cupy(get_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_cuda_without_a_gpu_is_a_device_error(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(no_driver))
    with pytest.raises(DeviceError) as exc:
        get_array_module("cuda")
    assert "no usable NVIDIA GPU" in one_line(exc) and "no CUDA-capable device" in one_line(exc)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lambda: 0))
    with pytest.raises(DeviceError, match="finds no NVIDIA GPU"):
        get_array_module("cuda")


def test_the_model_and_the_trainer_refuse_cuda_up_front(monkeypatch, tmp_path):
    from mnemos.trainer import Trainer

    monkeypatch.setitem(sys.modules, "cupy", None)
    cfg = ModelConfig(vocab_size=11, n_layer=1, n_head=1, n_embd=8, block_size=4)
    with pytest.raises(DeviceError):
        GPT(cfg, device="cuda")
    text = tmp_path / "t.txt"
    text.write_text("some text to train on\n" * 20, encoding="utf-8")
    with pytest.raises(DeviceError):  # before any tokenizer training or encoding
        Trainer.new(cfg, TrainConfig(device="cuda"), text, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cli_exits_2_with_one_line_for_cuda_without_cupy(monkeypatch, tmp_path, capsys):
    from mnemos.cli import main

    monkeypatch.setitem(sys.modules, "cupy", None)
    text = tmp_path / "t.txt"
    text.write_text("some text to train on\n" * 20, encoding="utf-8")
    assert main(["train", "--data", str(text), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CuPy" in err and "Traceback" not in err


def test_scatter_add_sums_repeated_indices():
    target = np.zeros(5, dtype=np.float32)
    idx = np.array([0, 3, 3, 1, 3, 0])
    vals = np.array([1, 2, 4, 8, 16, 32], dtype=np.float32)
    scatter_add(np, target, idx, vals)
    expect = np.zeros(5, dtype=np.float32)
    for i, v in zip(idx, vals):
        expect[i] += v
    np.testing.assert_array_equal(target, expect)
    assert target[3] == 22  # buffered fancy-index += would have kept only the last value


def test_dropout_mask_on_numpy_draws_from_the_generator_exactly():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    out = np.empty((64, 128), dtype=np.float32)
    dropout_mask(np, a, out, 0.25)
    u = b.random((64, 128), dtype=np.float32)
    np.testing.assert_array_equal(out, (u >= 0.25).astype(np.float32) / np.float32(0.75))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02  # 8192 draws: 5 standard deviations
    assert a.bit_generator.state == b.bit_generator.state  # the generator advanced alike


def test_to_numpy():
    a = np.arange(6, dtype=np.float32)
    assert to_numpy(a) is a

    class DeviceArray:  # what CuPy offers: .get() copies to the host
        def get(self):
            return np.ones(3)

    np.testing.assert_array_equal(to_numpy(DeviceArray()), np.ones(3))


def test_numpy_has_no_fused_kernels_and_the_layers_keep_their_numpy_code():
    assert fused_kernels(np) is None
    model = GPT(ModelConfig(vocab_size=11, n_layer=1, n_head=1, n_embd=8, block_size=4))
    block = model.blocks[0]
    assert block.ln_1.fused is None and block.mlp.act.fused is None and block.attn.fused is None
    assert model.ce.fused is None and AdamW(model.params)._fused is None
    assert np not in backend._KERNELS  # nothing compiled for the CPU (a GPU test may have filled CuPy's)


def test_optimizer_state_is_host_numpy_and_a_copy():
    model = GPT(ModelConfig(vocab_size=11, n_layer=1, n_head=1, n_embd=8, block_size=4))
    opt = AdamW(model.params)
    model.params.grad[...] = 1.0
    opt.step(1e-3)
    state = opt.state_dict()
    assert isinstance(state["m"], np.ndarray) and state["m"] is not opt.m
    state["m"][...] = 0.0
    assert opt.m.max() > 0


class NumpyKernels:
    """The interface of mnemos.cuda_kernels.CudaKernels, computed with NumPy, so the CPU
    suite checks how the layers and AdamW use the fused kernels (which buffers go in,
    which come out) without a GPU. The formulas are the CUDA kernels', written per row.
    ``calls`` records which kernels ran."""

    def __init__(self):
        self.calls = set()

    def __getattribute__(self, name):
        if not name.startswith("_") and name != "calls":
            object.__getattribute__(self, "calls").add(name)
        return object.__getattribute__(self, name)

    def gelu(self, x, y, dydx=None):
        c, a = np.sqrt(2 / np.pi), 0.044715
        t = np.tanh(c * (x + a * x ** 3))
        y[...] = 0.5 * x * (1 + t)
        if dydx is not None:
            dydx[...] = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * a * x * x)

    def layernorm_forward(self, x, w, b, eps, xhat, y, rstd):
        mean = x.mean(1, keepdims=True)
        rstd[...] = 1 / np.sqrt(((x - mean) ** 2).mean(1) + eps)
        xhat[...] = (x - mean) * rstd[:, None]
        y[...] = xhat * w + b

    def layernorm_backward(self, dy, xhat, w, rstd, dx, dy_xhat):
        g = dy * w
        dx[...] = rstd[:, None] * (g - g.mean(1, keepdims=True) - xhat * (g * xhat).mean(1, keepdims=True))
        dy_xhat[...] = dy * xhat

    def rmsnorm_forward(self, x, w, eps, xhat, y, rstd):
        rstd[...] = 1 / np.sqrt((x * x).mean(1) + eps)
        xhat[...] = x * rstd[:, None]
        y[...] = xhat * w

    def rmsnorm_backward(self, dy, xhat, w, rstd, dx, dy_xhat):
        g = dy * w
        dx[...] = rstd[:, None] * (g - xhat * (g * xhat).mean(1, keepdims=True))
        dy_xhat[...] = dy * xhat

    def swiglu(self, a, h, silu=None, u_dsilu=None):
        F = h.shape[1]
        g, u = a[:, :F], a[:, F:]
        s = 1 / (1 + np.exp(-g))
        h[...] = g * s * u
        if silu is not None:
            silu[...] = g * s
            u_dsilu[...] = u * s * (1 + g * (1 - s))

    def swiglu_backward(self, dh, silu, u_dsilu, da):
        F = dh.shape[1]
        da[:, :F], da[:, F:] = dh * u_dsilu, dh * silu

    def causal_softmax(self, S, P, scale):
        T = S.shape[-1]
        z = np.where(np.tril(np.ones((T, T), bool)), S * scale, -np.inf)
        e = np.exp(z - z.max(-1, keepdims=True))
        P[...] = e / e.sum(-1, keepdims=True)

    def softmax_backward(self, dP, P, scale):
        dP[...] = P * (dP - (dP * P).sum(-1, keepdims=True)) * scale

    def cross_entropy(self, z, targets, probs, nll, keep):
        m = z.max(1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(1)
        nll[...] = np.log(s) + m[:, 0] - z[np.arange(len(z)), targets]
        if keep:
            probs[...] = e / s[:, None]

    def cross_entropy_backward(self, dz, targets, scale=1.0):
        dz[np.arange(len(dz)), targets] -= 1
        dz *= scale / len(dz)

    def adamw(self, p, g, m, v, mask, lr, weight_decay, b1, b2, eps, t):
        p *= 1 - lr * weight_decay * mask
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        p -= lr / (1 - b1 ** t) * m / (np.sqrt(v / (1 - b2 ** t)) + eps)


def with_kernels(model, kernels):
    layers = [model.ln_f, model.ce]
    for block in model.blocks:
        layers += [block.ln_1, block.ln_2, block.attn, block.mlp.act]
    for layer in layers:
        assert layer.fused is None
        layer.fused = kernels
    return model


@pytest.mark.parametrize("arch, norm, act", [("gpt2", "layernorm", "gelu"), ("llama", "rmsnorm", "swiglu")])
def test_the_layers_and_adamw_use_fused_kernels_correctly(arch, norm, act):
    """The seam the GPU path takes, on the CPU: a model whose layers call the kernels'
    interface (NumPy stand-ins) trains like the plain NumPy model, in float64."""
    cfg = ModelConfig(vocab_size=31, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.0, arch=arch)
    plain = GPT(cfg, dtype=np.float64, seed=4)
    kernels = NumpyKernels()
    fused = with_kernels(GPT(cfg, dtype=np.float64, seed=4), kernels)
    opts = [AdamW(plain.params, lr=1e-2), AdamW(fused.params, lr=1e-2)]
    opts[1]._fused = kernels
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.integers(0, 31, (3, 7)), rng.integers(0, 31, (3, 7))
        losses = []
        for model, opt in zip((plain, fused), opts):
            model.params.grad.fill(0)
            _, loss = model.forward(x, y, train=True)
            model.backward()
            losses.append(loss)
            opt.step(1e-2)
        assert losses[1] == pytest.approx(losses[0], rel=1e-12)
        np.testing.assert_allclose(fused.params.grad, plain.params.grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fused.params.data, plain.params.data, rtol=1e-9, atol=1e-12)
    x = rng.integers(0, 31, (2, 8))
    np.testing.assert_allclose(fused.forward(x)[0], plain.forward(x)[0], rtol=1e-9, atol=1e-12)
    expected = {act, f"{norm}_forward", f"{norm}_backward", "causal_softmax", "softmax_backward", "cross_entropy",
                "cross_entropy_backward", "adamw"}
    assert kernels.calls == expected | ({"swiglu_backward"} if arch == "llama" else set())
