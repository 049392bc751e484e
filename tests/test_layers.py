"""Every layer's hand-written backward against central finite differences, in float64.

Each check builds the layer on a small random problem, takes the scalar
``L = sum(forward(x) * R)`` for a fixed random ``R`` (so ``dL/dy = R``), and compares
``backward(R)`` and the accumulated parameter gradients with ``(L(p + e) - L(p - e)) / 2e``
for every input and parameter entry.
"""

import numpy as np
import pytest

from mnemos.nn.layers import (MLP, GELU, CausalSelfAttention, CrossEntropy, Dropout, Embedding,
                              LayerNorm, Linear)
from mnemos.nn.params import ParamStore
from mnemos.nn.workspace import Workspace

from gradcheck import numeric_grad

TOL = 1e-7  # max abs error relative to the largest gradient entry


def assert_close_grad(analytic, numeric, what):
    scale = max(np.abs(numeric).max(), 1e-12)
    err = np.abs(analytic - numeric).max() / scale
    assert err < TOL, f"{what}: relative error {err:.2e}"
    assert np.abs(numeric).max() > 1e-6, f"{what}: gradient is trivially zero"


def make_params(specs, rng):
    """A float64 ParamStore with every parameter random (so biases and gains matter)."""
    store = ParamStore([(n, s, len(s) == 2) for n, s in specs], dtype=np.float64)
    store.data[:] = rng.normal(0.0, 0.5, store.size)
    return store


def check_layer(forward, backward, x, params, rng):
    """Finite-difference check of input and parameter gradients of one layer."""
    y = forward()
    R = rng.normal(size=y.shape)

    def loss():
        return float(np.sum(forward() * R))

    forward()
    params.grad[:] = 0
    dx = backward(R).copy() if x is not None else backward(R)
    if x is not None:
        assert_close_grad(dx, numeric_grad(loss, x), "input")
    for name in params.names:
        assert_close_grad(params.grad_view(name), numeric_grad(loss, params.view(name)), name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def ws():
    return Workspace(np, np.float64)


def test_linear(rng, ws):
    params = make_params([("lin.weight", (5, 7)), ("lin.bias", (7,))], rng)
    layer = Linear(params, "lin", ws)
    x = rng.normal(size=(6, 5))
    check_layer(lambda: layer.forward(x), layer.backward, x, params, rng)


def test_layernorm(rng, ws):
    params = make_params([("ln.weight", (8,)), ("ln.bias", (8,))], rng)
    layer = LayerNorm(params, "ln", ws)
    x = rng.normal(2.0, 3.0, size=(5, 8))
    check_layer(lambda: layer.forward(x), layer.backward, x, params, rng)


def test_layernorm_normalises_rows(rng, ws):
    params = ParamStore([("ln.weight", (16,), False), ("ln.bias", (16,), False)], dtype=np.float64)
    params.view("ln.weight")[...] = 1.0
    x = rng.normal(5.0, 0.01, size=(3, 16))  # small variance: eps visibly matters
    y = LayerNorm(params, "ln", ws).forward(x)
    np.testing.assert_allclose(y.mean(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(1), x.var(1) / (x.var(1) + 1e-5), rtol=1e-12)


def test_gelu(rng, ws):
    layer = GELU("gelu", ws)
    x = rng.normal(0.0, 2.0, size=(4, 9))
    check_layer(lambda: layer.forward(x), layer.backward, x, ParamStore([], np.float64), rng)


def test_gelu_matches_tanh_formula(rng, ws):
    x = np.linspace(-6, 6, 101).reshape(1, -1)
    ref = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(GELU("g", ws).forward(x), ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(GELU("g", ws).forward(x, train=False), ref, rtol=1e-13, atol=1e-15)


def test_embedding(rng, ws):
    params = make_params([("wte", (7, 4)), ("wpe", (5, 4))], rng)
    layer = Embedding(params, ws, dropout=0.0, rng=np.random.default_rng(0))
    idx = np.array([[1, 3, 3], [6, 1, 1]])  # repeated ids: gradients must add up
    out = ws.get("x", (6, 4))

    def forward():
        return layer.forward(idx, False, out)

    def backward(R):
        layer.backward(R.copy())

    check_layer(forward, backward, None, params, rng)
    # rows never used get no gradient; wpe rows past T get none
    assert not params.grad_view("wte")[[0, 2, 4, 5]].any()
    assert not params.grad_view("wpe")[3:].any()


@pytest.mark.parametrize("n_head", [1, 2, 4])
def test_causal_attention(rng, ws, n_head):
    C, B, T = 8, 2, 5
    specs = [("a.c_attn.weight", (C, 3 * C)), ("a.c_attn.bias", (3 * C,)),
             ("a.c_proj.weight", (C, C)), ("a.c_proj.bias", (C,))]
    params = make_params(specs, rng)
    layer = CausalSelfAttention(params, "a", ws, n_head, block_size=8, dropout=0.0, rng=None)
    x = rng.normal(size=(B * T, C))
    check_layer(lambda: layer.forward(x, B, T, train=True), layer.backward, x, params, rng)


def test_attention_is_causal(rng, ws):
    C, B, T = 8, 1, 6
    specs = [("a.c_attn.weight", (C, 3 * C)), ("a.c_attn.bias", (3 * C,)),
             ("a.c_proj.weight", (C, C)), ("a.c_proj.bias", (C,))]
    params = make_params(specs, rng)
    layer = CausalSelfAttention(params, "a", ws, 2, block_size=8, dropout=0.0, rng=None)
    x = rng.normal(size=(B * T, C))
    y0 = layer.forward(x, B, T, train=False).copy()
    x[-1] += 10.0  # change only the last position
    y1 = layer.forward(x, B, T, train=False)
    np.testing.assert_allclose(y0[:-1], y1[:-1], rtol=1e-13, atol=1e-14)
    assert np.abs(y0[-1] - y1[-1]).max() > 1e-3


def test_attention_with_dropout(rng, ws):
    """Backward through attention- and residual-dropout, with the masks held fixed."""
    C, B, T = 8, 2, 4
    specs = [("a.c_attn.weight", (C, 3 * C)), ("a.c_attn.bias", (3 * C,)),
             ("a.c_proj.weight", (C, C)), ("a.c_proj.bias", (C,))]
    params = make_params(specs, rng)
    drop_rng = np.random.default_rng(7)
    layer = CausalSelfAttention(params, "a", ws, 2, block_size=8, dropout=0.3, rng=drop_rng)
    state = drop_rng.bit_generator.state
    x = rng.normal(size=(B * T, C))

    def forward():
        drop_rng.bit_generator.state = state
        return layer.forward(x, B, T, train=True)

    check_layer(forward, layer.backward, x, params, rng)
    assert layer.attn_drop.mask is not None and (layer.attn_drop.mask == 0).any()


def test_mlp(rng, ws):
    C = 6
    specs = [("m.c_fc.weight", (C, 4 * C)), ("m.c_fc.bias", (4 * C,)),
             ("m.c_proj.weight", (4 * C, C)), ("m.c_proj.bias", (C,))]
    params = make_params(specs, rng)
    layer = MLP(params, "m", ws, dropout=0.0, rng=None)
    x = rng.normal(size=(5, C))
    check_layer(lambda: layer.forward(x, True), layer.backward, x, params, rng)


def test_cross_entropy(rng, ws):
    ce = CrossEntropy(ws)
    z = rng.normal(0.0, 3.0, size=(7, 5))
    targets = rng.integers(0, 5, size=7)
    loss = ce.forward(z, targets)
    ref = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(7), targets])
    assert loss == pytest.approx(ref, rel=1e-13)
    dz = ce.backward().copy()
    num = numeric_grad(lambda: ce.forward(z, targets, keep=False), z)
    assert_close_grad(dz, num, "logits")


def test_cross_entropy_is_stable_for_huge_logits(ws):
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32)  # rows 9000 apart
    loss = CrossEntropy(Workspace(np, np.float32)).forward(z, np.array([0, 1]))
    assert loss == pytest.approx(0.0, abs=1e-6)
    loss = CrossEntropy(ws).forward(z.astype(np.float64), np.array([2, 0]))
    assert loss == pytest.approx((2000.0 + 2e4) / 2)


def test_dropout_mask_scale_and_backward():
    ws = Workspace(np, np.float64)
    d = Dropout("d", 0.25, ws, np.random.default_rng(0))
    x = np.ones((200, 100))
    y = d.forward(x.copy(), train=True)
    kept = y != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(y[kept], 1.0 / 0.75)
    dy = np.full_like(x, 2.0)
    np.testing.assert_array_equal(d.backward(dy.copy()), 2.0 * y)
    assert d.forward(x, train=False) is x


def test_exp_shifted_falls_back_per_row_when_a_row_would_underflow():
    """One shift per group is exact unless a row sits far below its group's maximum."""
    from mnemos.nn.layers import exp_shifted
    src = np.array([[[0.0, 1.0, 2.0], [-200.0, -199.0, -201.0]]], dtype=np.float32)  # 1 group, 2 rows
    out = np.empty_like(src)
    sums, shift = exp_shifted(src, out, 1, np.ones(3, np.float32), np)
    ref = np.exp(src - src.max(-1, keepdims=True))
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(sums, ref.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(np.log(sums).reshape(1, -1) + shift, np.log(np.exp(src.astype(np.float64)).sum(-1)),
                               rtol=1e-6)
    near = src.copy()
    near[0, 1] += 190.0  # now within range: the cheap path, same values
    sums, shift = exp_shifted(near, out, 1, np.ones(3, np.float32), np)
    assert shift.shape == (1, 1) and shift[0, 0] == 2.0
