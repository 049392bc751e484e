"""The assembled GPT: gradients, KV cache, attention maps, dropout, weights, learning."""

import math
from collections import Counter

import numpy as np
import pytest

from mnemos.config import ModelConfig
from mnemos.errors import CheckpointError, ConfigError, ContextError, MnemosError
from mnemos.nn import GPT, param_specs
from mnemos.nn.workspace import Workspace
from mnemos.optim import AdamW, clip_grad_norm, lr_at

from gradcheck import numeric_grad

TINY = ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6)


def randomised(config, seed=1, dtype=np.float64):
    """A model whose every parameter (biases, LayerNorm gains too) is random."""
    model = GPT(config, dtype=dtype, seed=seed)
    model.params.data[:] = np.random.default_rng(seed).normal(0.0, 0.3, model.params.size)
    return model


def batch(config, B, T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


def test_whole_model_gradient_matches_finite_differences():
    model = randomised(TINY)
    idx, targets = batch(TINY, 2, 5)
    model.params.grad.fill(0)
    model.forward(idx, targets, train=True)
    model.backward()
    num = numeric_grad(lambda: model.forward(idx, targets)[1], model.params.data)
    err = np.abs(model.params.grad - num).max() / np.abs(num).max()
    assert err < 1e-7
    for name in model.params.names:  # every parameter gets a real gradient
        assert np.abs(model.params.grad_view(name)).max() > 1e-8, name


def test_gradient_with_dropout_matches_finite_differences():
    config = ModelConfig(vocab_size=9, n_layer=1, n_head=2, n_embd=8, block_size=5, dropout=0.2)
    model = randomised(config)
    idx, targets = batch(config, 2, 5)
    state = model.rng.bit_generator.state

    def loss():
        model.rng.bit_generator.state = state
        return model.forward(idx, targets, train=True)[1]

    model.params.grad.fill(0)
    loss()
    model.backward()
    num = numeric_grad(loss, model.params.data)
    assert np.abs(model.params.grad - num).max() / np.abs(num).max() < 1e-7


def test_backward_accumulates_over_micro_batches():
    model = randomised(TINY)
    idx, targets = batch(TINY, 4, 6)
    model.params.grad.fill(0)
    model.forward(idx, targets, train=True)
    model.backward()
    whole = model.params.grad.copy()
    model.params.grad.fill(0)
    for half in (slice(0, 2), slice(2, 4)):
        model.forward(idx[half], targets[half], train=True)
        model.backward()
    np.testing.assert_allclose(model.params.grad / 2, whole, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("T", [6, 4])  # T < block_size: wpe's later rows get no gradient
def test_backward_can_overwrite_and_scale_the_gradient(T):
    """accumulate=False writes every parameter's gradient over whatever the buffer held
    (here NaN), and scale=s gives s times the gradient, as zeroing the gradient + backward would."""
    model = randomised(TINY)
    idx, targets = batch(TINY, 3, T)
    model.params.grad.fill(0)
    model.forward(idx, targets, train=True)
    model.backward()
    reference = {name: model.params.grad_view(name).copy() for name in model.params.names}
    for scale in (1.0, 0.25):
        for name in model.params.names:
            model.params.grad_view(name)[...] = np.nan
        model.forward(idx, targets, train=True)
        model.backward(scale=scale, accumulate=False)
        for name in model.params.names:
            np.testing.assert_allclose(model.params.grad_view(name), scale * reference[name],
                                       rtol=1e-12, atol=1e-15, err_msg=name)
    assert model.params.accumulate  # the store is back in its default mode
    model.forward(idx, targets, train=True)  # and the next backward adds again
    model.backward(scale=0.75)
    for name in model.params.names:
        np.testing.assert_allclose(model.params.grad_view(name), reference[name], rtol=1e-12, atol=1e-15)


def test_replica_shares_weights_and_keeps_its_own_gradient():
    """The data-parallel seam: a replica built on the same data buffer, own grad buffer."""
    from mnemos.nn import ParamStore
    model = randomised(TINY)
    replica = GPT(TINY, dtype=np.float64, params=ParamStore(param_specs(TINY), np.float64,
                                                            data=model.params.data,
                                                            grad=np.zeros(model.params.size)))
    assert replica.params.data is model.params.data
    idx, targets = batch(TINY, 4, 6)
    model.params.grad.fill(0)
    model.forward(idx, targets, train=True)
    model.backward()
    whole = model.params.grad.copy()
    model.params.grad.fill(0)
    model.forward(idx[:2], targets[:2], train=True)
    replica.forward(idx[2:], targets[2:], train=True)  # interleaved: separate scratch buffers
    model.backward()
    replica.backward()
    np.testing.assert_allclose((model.params.grad + replica.params.grad) / 2, whole, rtol=1e-12, atol=1e-15)
    model.params.view("wte")[0, 0] = 5.0
    assert replica.params.view("wte")[0, 0] == 5.0


def test_backward_needs_a_training_forward():
    model = GPT(TINY)
    idx, targets = batch(TINY, 1, 4)
    with pytest.raises(RuntimeError):
        model.backward()
    model.forward(idx, targets, train=False)
    with pytest.raises(RuntimeError):
        model.backward()
    model.forward(idx, targets, train=True)
    model.backward()
    with pytest.raises(RuntimeError):  # one backward per forward
        model.backward()


def test_buffers_are_fully_written(monkeypatch):
    """Scratch buffers start as NaN: a read before write would poison the results."""
    idx, targets = batch(TINY, 3, 6)
    clean = randomised(TINY, dtype=np.float32)
    clean.params.grad.fill(0)
    logits, loss = clean.forward(idx, targets, train=True)
    clean.backward()

    def nan_get(self, name, shape, dtype=None):
        key = (name, shape, dtype)
        if key not in self._current:
            buf = self.xp.empty(shape, dtype=self.dtype if dtype is None else dtype)
            if buf.dtype.kind == "f":
                buf.fill(np.nan)
            self._current[key] = buf
        return self._current[key]

    monkeypatch.setattr(Workspace, "get", nan_get)
    model = randomised(TINY, dtype=np.float32)
    model.params.grad.fill(0)
    logits2, loss2 = model.forward(idx, targets, train=True)
    model.backward()
    assert np.isfinite(model.params.grad).all()
    assert loss2 == loss
    np.testing.assert_array_equal(logits2, logits)
    np.testing.assert_array_equal(model.params.grad, clean.params.grad)


def test_loss_is_mean_cross_entropy_of_logits():
    model = randomised(TINY)
    idx, targets = batch(TINY, 2, 6)
    logits, loss = model.forward(idx, targets)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ref = -np.take_along_axis(logp, targets[..., None], -1).mean()
    assert loss == pytest.approx(ref, rel=1e-12)
    assert model.forward(idx)[1] is None


def test_initial_loss_is_near_uniform():
    config = ModelConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=16)
    model = GPT(config)
    idx, targets = batch(config, 4, 16)
    _, loss = model.forward(idx, targets)
    assert abs(loss - math.log(256)) < 0.1


# ---- KV cache and attention maps -----------------------------------------------------

@pytest.mark.parametrize("chunks", [[6], [1, 1, 1, 1, 1, 1], [3, 1, 2], [2, 4]])
def test_kv_cache_matches_full_forward(chunks):
    model = randomised(TINY)
    idx, _ = batch(TINY, 2, 6, seed=5)
    full, _ = model.forward(idx)
    cache = model.new_cache(batch=2)
    parts, start = [], 0
    for t in chunks:
        parts.append(model.forward_cached(idx[:, start:start + t], cache))
        start += t
        assert cache.length == start
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-12)


def test_kv_cache_float32_and_overflow():
    model = GPT(TINY)
    idx, _ = batch(TINY, 1, 6)
    full, _ = model.forward(idx)
    cache = model.new_cache()
    out = np.concatenate([model.forward_cached(idx[:, i:i + 1], cache) for i in range(6)], 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ContextError):
        model.forward_cached(idx[:, :1], cache)
    cache.reset()
    assert model.forward_cached(idx[:, :2], cache).shape == (1, 2, TINY.vocab_size)


def test_sequences_longer_than_block_size_are_refused():
    model = GPT(TINY)
    with pytest.raises(ContextError) as info:
        model.forward(np.zeros((1, 7), dtype=np.int64))
    assert isinstance(info.value, MnemosError) and "block_size" in str(info.value)


def test_any_integer_dtype_and_out_of_range_ids():
    model = randomised(TINY)
    idx, targets = batch(TINY, 2, 6)
    model.params.grad.fill(0)
    ref_logits, ref_loss = model.forward(idx, targets, train=True)
    ref_logits = ref_logits.copy()
    model.backward()
    ref_grad = model.params.grad.copy()
    for dtype in (np.uint8, np.uint16, np.int32):
        model.params.grad.fill(0)
        logits, loss = model.forward(idx.astype(dtype), targets.astype(dtype), train=True)
        model.backward()
        assert loss == ref_loss
        np.testing.assert_array_equal(logits, ref_logits)
        np.testing.assert_array_equal(model.params.grad, ref_grad)
    with pytest.raises(ValueError, match="outside"):
        model.forward(np.array([[1, 2, TINY.vocab_size]]))
    with pytest.raises(ValueError, match="outside"):
        model.forward(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="2-D"):
        model.forward(np.array([1, 2]))


def test_attention_maps():
    model = randomised(TINY)
    idx, _ = batch(TINY, 2, 5)
    maps = model.attention_maps(idx)
    assert len(maps) == TINY.n_layer
    for m in maps:
        assert m.shape == (2, TINY.n_head, 5, 5)
        np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-12)
        assert not np.triu(m, k=1).any()
        assert (m[(..., *np.tril_indices(5))] > 0).all()
    # the first position can only attend to itself
    np.testing.assert_allclose(maps[0][..., 0, 0], 1.0, rtol=1e-15)


def test_attention_maps_match_a_direct_computation():
    model = randomised(TINY)
    idx, _ = batch(TINY, 1, 4)
    p = model.params.view
    C, H = TINY.n_embd, TINY.n_head
    x = p("wte")[idx[0]] + p("wpe")[:4]
    xn = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    xn = xn * p("h.0.ln_1.weight") + p("h.0.ln_1.bias")
    qkv = xn @ p("h.0.attn.c_attn.weight") + p("h.0.attn.c_attn.bias")
    q, k = qkv[:, :C], qkv[:, C:2 * C]
    for h in range(H):
        sl = slice(h * C // H, (h + 1) * C // H)
        s = q[:, sl] @ k[:, sl].T / math.sqrt(C // H) + np.triu(np.full((4, 4), -np.inf), 1)
        ref = np.exp(s - s.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
        np.testing.assert_allclose(model.attention_maps(idx)[0][0, h], ref, rtol=1e-12)


# ---- dropout ----------------------------------------------------------------------------

def test_dropout_only_in_train_mode_and_deterministic_by_seed():
    config = ModelConfig(vocab_size=20, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.3)
    idx, targets = batch(config, 2, 8)
    a, b = GPT(config, seed=3), GPT(config, seed=3)
    eval1, loss1 = a.forward(idx, targets)
    eval2, loss2 = a.forward(idx, targets)
    np.testing.assert_array_equal(eval1, eval2)
    train_a1 = a.forward(idx, targets, train=True)[0].copy()
    train_a2 = a.forward(idx, targets, train=True)[0].copy()
    train_b1 = b.forward(idx, targets, train=True)[0].copy()
    assert not np.allclose(train_a1, eval1)  # dropout changes the training pass
    assert not np.array_equal(train_a1, train_a2)  # fresh masks each step
    np.testing.assert_array_equal(train_a1, train_b1)  # same seed, same masks
    c = GPT(config, seed=4)
    c.load_state_dict(a.state_dict())
    c.rng.bit_generator.state = b.rng.bit_generator.state
    np.testing.assert_array_equal(c.forward(idx, targets, train=True)[0], b.forward(idx, targets, train=True)[0])


def test_no_dropout_means_train_equals_eval():
    model = randomised(TINY)
    idx, targets = batch(TINY, 2, 6)
    np.testing.assert_array_equal(model.forward(idx, targets, train=True)[0], model.forward(idx, targets)[0])


# ---- parameters, init, weights ---------------------------------------------------------

def test_parameter_names_shapes_and_count():
    config = ModelConfig(vocab_size=50, n_layer=3, n_head=4, n_embd=16, block_size=12)
    model = GPT(config)
    names = model.params.names
    assert names[:2] == ["wte", "wpe"] and names[-2:] == ["ln_f.weight", "ln_f.bias"]
    assert model.params.shapes["h.2.attn.c_attn.weight"] == (16, 48)
    assert model.params.shapes["h.0.mlp.c_fc.weight"] == (16, 64)
    assert model.params.shapes["h.1.mlp.c_proj.weight"] == (64, 16)
    assert model.num_params() == config.num_params() == sum(v.size for v in model.state_dict().values())
    assert len(names) == 2 + 12 * 3 + 2
    for name, shape, decay in param_specs(config):
        assert model.params.view(name).shape == shape
        mask = model.params.decay_mask[model.params.offsets[name]:][:int(np.prod(shape))]
        assert (mask == (1.0 if decay else 0.0)).all(), name
        assert decay == (len(shape) == 2 and name != "wpe")
        assert np.shares_memory(model.params.view(name), model.params.data)
        assert np.shares_memory(model.params.grad_view(name), model.params.grad)


def test_gpt2_initialisation():
    config = ModelConfig(vocab_size=300, n_layer=4, n_head=4, n_embd=64, block_size=32)
    model = GPT(config, seed=0)
    sd = model.state_dict()
    assert model.dtype == np.float32 and sd["wte"].dtype == np.float32
    assert sd["wte"].std() == pytest.approx(0.02, rel=0.05)
    assert sd["h.0.mlp.c_fc.weight"].std() == pytest.approx(0.02, rel=0.05)
    assert sd["h.3.mlp.c_proj.weight"].std() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert sd["h.1.attn.c_proj.weight"].std() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert not sd["h.2.attn.c_attn.bias"].any()
    assert (sd["h.0.ln_1.weight"] == 1).all() and (sd["ln_f.weight"] == 1).all()
    np.testing.assert_array_equal(GPT(config, seed=0).params.data, model.params.data)
    assert not np.array_equal(GPT(config, seed=1).params.data, model.params.data)
    f64 = GPT(config, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(f64.params.data.astype(np.float32), model.params.data)


def test_state_dict_round_trip_and_errors():
    a, b = randomised(TINY, seed=1), GPT(TINY, dtype=np.float64, seed=2)
    sd = a.state_dict()
    sd["wte"][0, 0] = 123.0  # a copy, not a view
    assert a.params.view("wte")[0, 0] != 123.0
    b.load_state_dict(a.state_dict())
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.params.view(name), value)
    missing = a.state_dict()
    del missing["h.1.ln_2.bias"]
    with pytest.raises(CheckpointError, match="missing"):
        b.load_state_dict(missing)
    extra = a.state_dict()
    extra["lm_head.weight"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected"):
        b.load_state_dict(extra)
    bad = a.state_dict()
    bad["wpe"] = np.zeros((7, 8))
    with pytest.raises(CheckpointError, match="wpe"):
        b.load_state_dict(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=10, n_head=3), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(vocab_size=-1), "vocab_size"),
    (dict(block_size=2.5), "block_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
])
def test_model_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


# ---- learning -----------------------------------------------------------------------

def train(model, data, steps, batch_size, lr, seed=0, warmup=10, weight_decay=0.0):
    """Plain training loop over random windows of ``data`` (ids); returns the last loss."""
    rng = np.random.default_rng(seed)
    T = model.config.block_size
    opt = AdamW(model.params, lr=lr, weight_decay=weight_decay)
    for step in range(steps):
        starts = rng.integers(0, len(data) - T, batch_size)
        x = np.stack([data[s:s + T] for s in starts])
        y = np.stack([data[s + 1:s + T + 1] for s in starts])
        model.params.grad.fill(0)
        _, loss = model.forward(x, y, train=True)
        model.backward()
        clip_grad_norm(model.params.grad, 1.0)
        opt.step(lr_at(step, lr, lr / 10, warmup, steps))
    return loss


def test_tiny_model_overfits_200_characters():
    """Memorise one 200-character sequence (the whole text in one context window)."""
    text = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
            "How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow. "
            "Waltz, bad nymph, for quick jigs vex. Amazing!")[:200]
    assert len(text) == 200
    chars = sorted(set(text))
    data = np.array([[chars.index(c) for c in text]])
    config = ModelConfig(vocab_size=len(chars), n_layer=2, n_head=2, n_embd=32, block_size=256)
    model = GPT(config, seed=0)
    x, y = data[:, :-1], data[:, 1:]
    lr, steps = 1e-2, 100
    opt = AdamW(model.params, lr=lr, weight_decay=0.0)
    for step in range(steps):
        model.params.grad.fill(0)
        _, loss = model.forward(x, y, train=True)
        model.backward()
        clip_grad_norm(model.params.grad, 1.0)
        opt.step(lr_at(step, lr, lr / 10, 10, steps))
    _, loss = model.forward(x, y)
    assert loss < 0.01
    assert (model.forward(x)[0].argmax(-1) == y).all()


def english_text(n_sentences, seed):
    """Generated English-like prose: a tiny grammar over a small vocabulary."""
    rng = np.random.default_rng(seed)
    subjects = ["the old man", "a young woman", "the king", "my brother", "the little dog", "our teacher",
                "the sailor", "a tired horse", "the children", "her mother"]
    verbs = ["walked to", "looked at", "spoke with", "ran past", "waited for", "thought about",
             "sang to", "laughed at", "carried", "remembered"]
    objects = ["the river", "the quiet house", "a green field", "the market", "the castle", "an open window",
               "the evening sky", "a wooden boat", "the long road", "the garden"]
    tails = ["", " before dawn", " in the rain", " with great care", " and then went home", " once again"]
    out = []
    for _ in range(n_sentences):
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(tails)}."
        out.append(s[0].upper() + s[1:])
    return " ".join(out)


def test_training_on_english_beats_the_unigram_entropy():
    train_text, val_text = english_text(120, seed=1), english_text(30, seed=2)
    chars = sorted(set(train_text + val_text))
    enc = {c: i for i, c in enumerate(chars)}
    train_ids = np.array([enc[c] for c in train_text])
    val_ids = np.array([enc[c] for c in val_text])
    counts = Counter(train_text)
    unigram = -sum(math.log(counts[c] / len(train_text)) for c in val_text) / len(val_text)
    config = ModelConfig(vocab_size=len(chars), n_layer=2, n_head=4, n_embd=64, block_size=32)
    model = GPT(config, seed=0)
    _, loss0 = model.forward(val_ids[None, :32], val_ids[None, 1:33])
    train(model, train_ids, steps=150, batch_size=16, lr=3e-3, weight_decay=0.1)
    T = 32
    starts = np.arange(0, len(val_ids) - T - 1, T)
    x = np.stack([val_ids[s:s + T] for s in starts])
    y = np.stack([val_ids[s + 1:s + T + 1] for s in starts])
    _, val_loss = model.forward(x, y)
    assert loss0 > unigram
    assert val_loss < unigram - 0.5, (val_loss, unigram)
