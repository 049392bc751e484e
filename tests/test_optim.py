"""AdamW, the warmup + cosine schedule and gradient clipping, against their formulas."""

import math

import numpy as np
import pytest

from mnemos.errors import CheckpointError
from mnemos.nn.params import ParamStore
from mnemos.optim import AdamW, clip_grad_norm, lr_at


def nanogpt_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """nanoGPT's get_lr, verbatim."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_lr_schedule_matches_nanogpt():
    for step in range(0, 130):
        assert lr_at(step, 1e-3, 1e-4, 10, 100) == pytest.approx(nanogpt_lr(step, 1e-3, 1e-4, 10, 100), rel=1e-12)


def test_lr_schedule_landmarks():
    lr, min_lr = 6e-4, 6e-5
    assert lr_at(0, lr, min_lr, 100, 1000) == pytest.approx(lr / 101)
    assert lr_at(100, lr, min_lr, 100, 1000) == pytest.approx(lr)
    assert lr_at(550, lr, min_lr, 100, 1000) == pytest.approx((lr + min_lr) / 2)
    assert lr_at(1000, lr, min_lr, 100, 1000) == pytest.approx(min_lr)
    assert lr_at(5000, lr, min_lr, 100, 1000) == min_lr
    assert lr_at(0, lr, min_lr, 0, 1000) == pytest.approx(lr)
    warm = [lr_at(s, lr, min_lr, 100, 1000) for s in range(101)]
    decay = [lr_at(s, lr, min_lr, 100, 1000) for s in range(100, 1001)]
    assert all(a < b for a, b in zip(warm, warm[1:]))
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_clip_grad_norm():
    g = np.array([3.0, 4.0, 0.0, 12.0], dtype=np.float32)  # norm 13
    assert clip_grad_norm(g, 1.0) == pytest.approx(13.0)
    assert np.linalg.norm(g) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g, np.array([3, 4, 0, 12]) / 13.0, rtol=1e-5)
    small = np.array([0.3, 0.4])
    assert clip_grad_norm(small, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(small, [0.3, 0.4])  # below the limit: untouched
    off = np.array([30.0, 40.0])
    assert clip_grad_norm(off, 0.0) == pytest.approx(50.0)
    np.testing.assert_array_equal(off, [30.0, 40.0])  # 0 disables clipping


def make_store(rng, dtype=np.float64):
    store = ParamStore([("w", (4, 3), True), ("b", (3,), False), ("e", (2, 5), True)], dtype=dtype)
    store.data[:] = rng.normal(size=store.size)
    return store


def reference_adamw(params, grads, steps_lrs, betas, eps, wd, decays):
    """Per-parameter AdamW, as torch.optim.AdamW computes it (float64)."""
    b1, b2 = betas
    params = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, (g_all, lr) in enumerate(zip(grads, steps_lrs), start=1):
        for k in params:
            g = g_all[k]
            if decays[k]:
                params[k] *= 1 - lr * wd
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            mhat = m[k] / (1 - b1 ** t)
            vhat = v[k] / (1 - b2 ** t)
            params[k] -= lr * mhat / (np.sqrt(vhat) + eps)
    return params


def test_adamw_matches_reference_formula():
    rng = np.random.default_rng(0)
    store = make_store(rng)
    start = {n: store.view(n).copy() for n in store.names}
    grads = [{n: rng.normal(size=store.shapes[n]) for n in store.names} for _ in range(5)]
    lrs = [1e-2, 2e-2, 3e-2, 2e-2, 1e-2]
    opt = AdamW(store, lr=0.5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for g, lr in zip(grads, lrs):
        for n in store.names:
            store.grad_view(n)[...] = g[n]
        opt.step(lr)
    assert opt.t == 5
    ref = reference_adamw(start, grads, lrs, (0.9, 0.95), 1e-8, 0.1, {"w": True, "b": False, "e": True})
    for n in store.names:
        np.testing.assert_allclose(store.view(n), ref[n], rtol=1e-13, atol=1e-15)


def test_decaying_parameters_lead_the_buffer():
    store = make_store(np.random.default_rng(4))
    assert store.names == ["w", "b", "e"]  # names keep the model's order
    assert store.decay_end >= 12 + 10
    assert not store.decay_mask[store.decay_end:].any()
    assert store.offsets["b"] >= store.decay_end
    assert store.offsets["w"] + 12 <= store.decay_end and store.offsets["e"] + 10 == store.decay_end


def test_weight_decay_only_where_masked():
    store = make_store(np.random.default_rng(1))
    before = {n: store.view(n).copy() for n in store.names}
    AdamW(store, weight_decay=0.5).step(0.1)  # zero gradients: only decay moves weights
    np.testing.assert_allclose(store.view("w"), before["w"] * (1 - 0.1 * 0.5), rtol=1e-15)
    np.testing.assert_allclose(store.view("e"), before["e"] * (1 - 0.1 * 0.5), rtol=1e-15)
    np.testing.assert_array_equal(store.view("b"), before["b"])


def test_state_dict_resume_is_bit_exact():
    rng = np.random.default_rng(2)
    a = make_store(rng, np.float32)
    b = make_store(rng, np.float32)
    b.data[:] = a.data
    grads = [rng.normal(size=a.size).astype(np.float32) for _ in range(6)]
    opt_a = AdamW(a, weight_decay=0.1)
    for g in grads:
        a.grad[:] = g
        opt_a.step(1e-2)
    opt_b = AdamW(b, weight_decay=0.1)
    for g in grads[:3]:
        b.grad[:] = g
        opt_b.step(1e-2)
    saved = opt_b.state_dict()
    resumed = AdamW(b, weight_decay=0.1)
    resumed.load_state_dict({k: (v.copy() if k != "t" else v) for k, v in saved.items()})
    assert resumed.t == 3
    for g in grads[3:]:
        b.grad[:] = g
        resumed.step(1e-2)
    np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_rejects_wrong_size():
    store = make_store(np.random.default_rng(3))
    opt = AdamW(store)
    with pytest.raises(CheckpointError):
        opt.load_state_dict({"m": np.zeros(3), "v": np.zeros(3), "t": 1})
    with pytest.raises(CheckpointError):
        opt.load_state_dict({"m": np.zeros(store.size), "t": 1})


def test_adamw_minimises_a_quadratic():
    store = ParamStore([("x", (10,), False)], dtype=np.float64)
    target = np.arange(10.0)
    opt = AdamW(store, weight_decay=0.0)
    for _ in range(2000):
        store.grad[:] = 2 * (store.data - target)
        opt.step(0.05)
    np.testing.assert_allclose(store.data, target, atol=1e-3)


def test_update_split_over_threads_is_bit_identical(monkeypatch):
    """AdamW runs its elementwise update in chunks on helper threads; each element sees
    the same operations, so the result must equal one pass over the buffer exactly
    (weight decay ends mid-chunk here)."""
    import mnemos.optim as optim

    rng = np.random.default_rng(5)
    specs = [("w", (300, 7), True), ("b", (1001,), False), ("u", (64, 9), True)]
    stores = [ParamStore(specs, np.float32) for _ in range(2)]
    init = rng.normal(size=stores[0].size).astype(np.float32)
    grads = [rng.normal(size=stores[0].size).astype(np.float32) for _ in range(3)]
    monkeypatch.setattr(optim.os, "cpu_count", lambda: 4)
    opts = []
    for store, min_chunk in zip(stores, (1 << 30, 256)):  # one pass, then 4 chunks
        monkeypatch.setattr(optim, "_MIN_CHUNK", min_chunk)
        store.data[:] = init
        opts.append(AdamW(store, weight_decay=0.1))
        for g in grads:
            store.grad[:] = g
            opts[-1].step(1e-2)
    assert 0 < stores[0].decay_end < stores[0].size
    assert not np.array_equal(stores[1].data, init)
    np.testing.assert_array_equal(stores[1].data, stores[0].data)
    np.testing.assert_array_equal(opts[1].m, opts[0].m)
    np.testing.assert_array_equal(opts[1].v, opts[0].v)
