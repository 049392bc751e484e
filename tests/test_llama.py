"""``arch="llama"``: RMSNorm, rotary embeddings and SwiGLU against float64 finite
differences and PyTorch, the assembled model against finite differences, its KV cache,
and Hugging Face's ``LlamaForCausalLM`` (same weights: same logits, loss, gradients)."""

import json
import math

import numpy as np
import pytest

from mnemos.config import ModelConfig, llama_intermediate_size
from mnemos.errors import ConfigError
from mnemos.nn import GPT, param_specs
from mnemos.nn.layers import MLP, CausalSelfAttention, Embedding, Linear
from mnemos.nn.llama import RMSNorm, Rotary, SwiGLU
from mnemos.nn.params import ParamStore
from mnemos.nn.workspace import Workspace

from gradcheck import numeric_grad
from test_layers import assert_close_grad, check_layer, make_params

TINY = ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6, arch="llama")


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


@pytest.fixture
def ws():
    return Workspace(np, np.float64)


# ---- layers against finite differences ----------------------------------------------


def test_rmsnorm(rng, ws):
    params = make_params([("n.weight", (8,))], rng)
    layer = RMSNorm(params, "n", ws)
    x = rng.normal(1.0, 2.0, size=(5, 8))
    check_layer(lambda: layer.forward(x), layer.backward, x, params, rng)


def test_rmsnorm_gives_unit_root_mean_square(rng, ws):
    params = ParamStore([("n.weight", (16,), False)], dtype=np.float64)
    params.view("n.weight")[...] = 1.0
    x = rng.normal(3.0, 0.01, size=(3, 16))  # not centred: RMSNorm does not subtract the mean
    y = RMSNorm(params, "n", ws, eps=1e-5).forward(x)
    ms = (x * x).mean(1)
    np.testing.assert_allclose((y * y).mean(1), ms / (ms + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(y, x / np.sqrt(ms + 1e-5)[:, None], rtol=1e-12)


def test_rotary(rng, ws):
    """Rotation in place on the (B, T, 2C) q | k columns of a fused projection, as attention does."""
    rope = Rotary(ws, n_head=3, head_dim=6, block_size=8, theta=10.0)
    qkv = rng.normal(size=(2, 5, 3 * 18))
    x0, v0 = qkv[:, :, :36].copy(), qkv[:, :, 36:].copy()
    x = qkv[:, :, :36]  # a strided view, as in attention

    def forward():
        x[...] = x0
        rope.forward(x, start=2)
        return x

    y = forward().copy()
    R = rng.normal(size=y.shape)
    dx = R.copy()
    rope.backward(dx, start=2)
    assert_close_grad(dx, numeric_grad(lambda: float(np.sum(forward() * R)), x0), "rotary")
    norms = [np.linalg.norm(a.reshape(2, 5, 6, 2, 3), axis=-2) for a in (y, x0)]  # each (x1_i, x2_i) pair
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-12)  # is rotated: its length is kept
    np.testing.assert_array_equal(qkv[:, :, 36:], v0)  # the values are not touched


def test_rotary_scores_depend_on_distance_only(rng, ws):
    rope = Rotary(ws, n_head=1, head_dim=8, block_size=16)
    q, k = rng.normal(size=8), rng.normal(size=8)

    def score(pq, pk):
        qk = np.zeros((1, 16, 16))
        qk[0, pq, :8], qk[0, pk, 8:] = q, k
        rope.forward(qk)
        return qk[0, pq, :8] @ qk[0, pk, 8:]

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-12)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-3)


def test_swiglu(rng, ws):
    layer = SwiGLU("s", ws)
    a = rng.normal(0.0, 2.0, size=(4, 10))
    check_layer(lambda: layer.forward(a), layer.backward, a, ParamStore([], np.float64), rng)
    g, u = a[:, :5], a[:, 5:]
    np.testing.assert_allclose(layer.forward(a, train=False), g / (1 + np.exp(-g)) * u, rtol=1e-13)


def test_linear_without_bias(rng, ws):
    params = make_params([("lin.weight", (5, 7))], rng)
    layer = Linear(params, "lin", ws)
    x = rng.normal(size=(6, 5))
    np.testing.assert_allclose(layer.forward(x), x @ params.view("lin.weight"), rtol=1e-13)
    check_layer(lambda: layer.forward(x), layer.backward, x, params, rng)


def test_swiglu_mlp(rng, ws):
    C, F = 6, 8
    params = make_params([("m.c_fc.weight", (C, 2 * F)), ("m.c_proj.weight", (F, C))], rng)
    layer = MLP(params, "m", ws, dropout=0.0, rng=None, activation=SwiGLU)
    x = rng.normal(size=(5, C))
    check_layer(lambda: layer.forward(x, True), layer.backward, x, params, rng)


@pytest.mark.parametrize("n_head", [1, 2])
def test_rotary_attention_without_biases(rng, ws, n_head):
    C, B, T = 8, 2, 5
    params = make_params([("a.c_attn.weight", (C, 3 * C)), ("a.c_proj.weight", (C, C))], rng)
    rope = Rotary(ws, n_head, C // n_head, block_size=8, theta=100.0)
    layer = CausalSelfAttention(params, "a", ws, n_head, block_size=8, dropout=0.0, rng=None, rope=rope)
    x = rng.normal(size=(B * T, C))
    check_layer(lambda: layer.forward(x, B, T, train=True), layer.backward, x, params, rng)


def test_embedding_without_positions(rng, ws):
    params = make_params([("wte", (7, 4))], rng)
    layer = Embedding(params, ws, dropout=0.0, rng=np.random.default_rng(0))
    idx = np.array([[1, 3, 3], [6, 1, 1]])
    out = ws.get("x", (6, 4))
    np.testing.assert_array_equal(layer.forward(idx, False, out), params.view("wte")[idx.reshape(-1)])

    def backward(R):
        layer.backward(R.copy())

    check_layer(lambda: layer.forward(idx, False, out), backward, None, params, rng)


# ---- layers against PyTorch ---------------------------------------------------------


def test_layers_match_pytorch(rng, ws):
    """RMSNorm and SwiGLU against PyTorch autograd, the rotary embedding against Hugging
    Face's ``apply_rotary_pos_emb`` (the rotate_half layout the export relies on)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the parity peer")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama", reason="HF Llama is the peer")
    N, C = 6, 8
    params = make_params([("n.weight", (C,))], rng)
    x, dy = rng.normal(size=(N, C)), rng.normal(size=(N, C))
    norm = RMSNorm(params, "n", ws, eps=1e-6)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(params.view("n.weight"), requires_grad=True)
    out = torch.nn.functional.rms_norm(tx, (C,), tw, eps=1e-6)  # (HF's LlamaRMSNorm runs in float32)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(norm.forward(x), out.detach().numpy(), rtol=1e-12, atol=1e-14)
    params.grad[:] = 0
    np.testing.assert_allclose(norm.backward(dy), tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(params.grad_view("n.weight"), tw.grad.numpy(), rtol=1e-10)

    a, dh = rng.normal(size=(N, 2 * C)), rng.normal(size=(N, C))
    ta = torch.tensor(a, requires_grad=True)
    th = torch.nn.functional.silu(ta[:, :C]) * ta[:, C:]
    th.backward(torch.tensor(dh))
    act = SwiGLU("s", ws)
    np.testing.assert_allclose(act.forward(a), th.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(act.backward(dh), ta.grad.numpy(), rtol=1e-10, atol=1e-13)

    B, T, H, hd = 2, 5, 3, 4
    rope = Rotary(ws, H, hd, block_size=8, theta=500.0)
    q, k = rng.normal(size=(B, H, T, hd)), rng.normal(size=(B, H, T, hd))
    angles = np.arange(T)[:, None] / 500.0 ** (np.arange(0, hd, 2) / hd)
    emb = np.concatenate([angles, angles], -1)[None]  # (1, T, hd), HF's cat(freqs, freqs)
    tq, tk = llama.apply_rotary_pos_emb(torch.tensor(q), torch.tensor(k), torch.tensor(np.cos(emb)),
                                        torch.tensor(np.sin(emb)))
    qk = np.stack([q, k], axis=2).transpose(0, 3, 2, 1, 4).reshape(B, T, 2 * H * hd)  # (B, T, 2C): q | k
    rope.forward(qk)
    qk = qk.reshape(B, T, 2, H, hd)
    np.testing.assert_allclose(qk[:, :, 0].transpose(0, 2, 1, 3), tq.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(qk[:, :, 1].transpose(0, 2, 1, 3), tk.numpy(), rtol=1e-12, atol=1e-14)
    hf_rope = llama.LlamaRotaryEmbedding(llama.LlamaConfig(hidden_size=H * hd, num_attention_heads=H,
                                                           max_position_embeddings=8,
                                                           rope_parameters={"rope_type": "default",
                                                                            "rope_theta": 500.0}))
    cos, _ = hf_rope(torch.zeros(1, dtype=torch.float32), torch.arange(T)[None])
    np.testing.assert_allclose(cos[0].numpy(), np.cos(emb[0]), atol=1e-6)  # HF's table, in float32


# ---- the assembled model ------------------------------------------------------------


def randomised(config, seed=1, dtype=np.float64):
    model = GPT(config, dtype=dtype, seed=seed)
    model.params.data[:] = np.random.default_rng(seed).normal(0.0, 0.3, model.params.size)
    return model


def batch(config, B, T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


def test_parameters_have_no_biases_and_no_position_table():
    names = [n for n, _, _ in param_specs(TINY)]
    assert "wpe" not in names and not any(n.endswith(".bias") for n in names) and "lm_head" not in names
    shapes = dict((n, s) for n, s, _ in param_specs(TINY))
    assert shapes["h.0.mlp.c_fc.weight"] == (8, 2 * TINY.intermediate_size)
    assert shapes["h.0.mlp.c_proj.weight"] == (TINY.intermediate_size, 8)
    untied = ModelConfig(**{**TINY.to_dict(), "head": "untied"})
    assert [n for n, _, _ in param_specs(untied)][-1] == "lm_head"
    for cfg in (TINY, untied, ModelConfig(), ModelConfig(head="untied")):
        assert cfg.num_params() == GPT(cfg).num_params()
    assert untied.num_params() - TINY.num_params() == 11 * 8


@pytest.mark.parametrize("tied, dropout", [(True, 0.0), (False, 0.0), (True, 0.2)])
def test_whole_model_gradient_matches_finite_differences(tied, dropout):
    config = ModelConfig(**{**TINY.to_dict(), "head": "tied" if tied else "untied", "dropout": dropout})
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
    for name in model.params.names:
        assert np.abs(model.params.grad_view(name)).max() > 1e-8, name


def test_untied_backward_can_overwrite_the_gradient():
    """accumulate=False (the data-parallel workers) must also clear wte, which the untied
    head no longer writes first."""
    config = ModelConfig(**{**TINY.to_dict(), "head": "untied"})
    model = randomised(config)
    idx, targets = batch(config, 3, 4)
    model.params.grad.fill(0)
    model.forward(idx, targets, train=True)
    model.backward()
    reference = {name: model.params.grad_view(name).copy() for name in model.params.names}
    for name in model.params.names:
        model.params.grad_view(name)[...] = np.nan
    model.forward(idx, targets, train=True)
    model.backward(scale=0.5, accumulate=False)
    for name in model.params.names:
        np.testing.assert_allclose(model.params.grad_view(name), 0.5 * reference[name], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("chunks", [[6], [1, 1, 1, 1, 1, 1], [3, 1, 2], [2, 4]])
def test_kv_cache_rotates_by_absolute_position(chunks):
    model = randomised(TINY)
    idx, _ = batch(TINY, 2, 6, seed=5)
    full, _ = model.forward(idx)
    cache = model.new_cache(batch=2)
    parts, start = [], 0
    for t in chunks:
        parts.append(model.forward_cached(idx[:, start:start + t], cache))
        start += t
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-12)


def test_learns_a_repeating_sequence():
    from mnemos.optim import AdamW

    config = ModelConfig(vocab_size=8, n_layer=1, n_head=2, n_embd=16, block_size=8, arch="llama")
    model = GPT(config, seed=0)
    opt = AdamW(model.params, lr=1e-2, weight_decay=0.0)
    seq = np.tile(np.arange(8), 3)
    idx, targets = np.stack([seq[i:i + 8] for i in range(8)]), np.stack([seq[i + 1:i + 9] for i in range(8)])
    first = None
    for _ in range(60):
        model.params.grad.fill(0)
        _, loss = model.forward(idx, targets, train=True)
        model.backward()
        opt.step()
        first = first if first is not None else loss
    assert first > math.log(8) - 0.2 and loss < 0.1


# ---- config ---------------------------------------------------------------------------


def test_intermediate_size_rule_and_config_round_trip():
    assert [llama_intermediate_size(c) for c in (32, 64, 128, 192)] == [96, 192, 352, 512]
    assert ModelConfig(n_embd=128, arch="llama").intermediate_size == 352
    assert ModelConfig(n_embd=128).intermediate_size == 512  # GPT-2: 4 n_embd
    assert ModelConfig(arch="llama", intermediate_size=100).intermediate_size == 100
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    old = {"vocab_size": 11, "n_layer": 2, "n_head": 2, "n_embd": 8, "block_size": 6, "dropout": 0.0}
    assert ModelConfig.from_dict(old) == ModelConfig(**old, arch="gpt2", intermediate_size=32)  # before arch


def test_arch_and_head_come_through_presets_and_overrides():
    from mnemos.config import Preset, configs_from

    model, _ = configs_from("small", {"arch": "llama", "head": "untied"})
    assert (model.arch, model.tied_head, model.n_embd, model.intermediate_size) == ("llama", False, 128, 352)
    model, _ = configs_from(Preset("mine", "a Llama preset", model={"arch": "llama", "n_embd": 64}))
    assert model.arch == "llama" and model.intermediate_size == 192
    assert configs_from("small")[0].arch == "gpt2"


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="bert"), "arch must be 'gpt2' or 'llama'"),
    (dict(arch="llama", n_embd=12, n_head=4), "even head size"),
    (dict(arch="llama", intermediate_size=0), "intermediate_size"),
    (dict(head="no"), "head must be 'tied' or 'untied'"),
    (dict(rope_theta=0), "rope_theta"),
    (dict(norm_eps=-1e-5), "norm_eps"),
])
def test_bad_llama_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


# ---- Hugging Face LlamaForCausalLM, the same weights ----------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_logits_loss_and_gradients_match_hugging_face_llama(tied):
    """float64; Hugging Face computes its rotary table in float32, hence ~1e-7."""
    torch = pytest.importorskip("torch", reason="PyTorch is the parity peer")
    transformers = pytest.importorskip("transformers", reason="Hugging Face Llama is the parity peer")
    from mnemos.export import from_hf_state_dict, hf_config, to_hf_state_dict

    config = ModelConfig(vocab_size=37, n_layer=2, n_head=4, n_embd=32, block_size=16, arch="llama",
                         head="tied" if tied else "untied", rope_theta=1000.0)
    model = randomised(config, seed=3)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config(config))).double()
    state = {k: torch.from_numpy(v.copy()) for k, v in to_hf_state_dict(model).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    idx, targets = batch(config, 3, 16, seed=2)
    model.params.grad.fill(0)
    logits, loss = model.forward(idx, targets, train=True)
    logits = logits.copy()
    model.backward()
    out = hf(torch.from_numpy(idx))
    tloss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 37), torch.from_numpy(targets).reshape(-1))
    tloss.backward()
    np.testing.assert_allclose(logits, out.logits.detach().numpy(), atol=1e-6 * np.abs(logits).max())
    assert loss == pytest.approx(tloss.item(), rel=1e-7)
    grads = {name: p.grad.numpy() for name, p in hf.named_parameters()}
    if tied:
        grads["lm_head.weight"] = grads["model.embed_tokens.weight"]
    theirs = from_hf_state_dict(grads, config, dtype=np.float64)  # their gradients in our layout
    for name in model.params.names:
        ref = theirs.params.view(name)
        err = np.abs(model.params.grad_view(name) - ref).max() / np.abs(ref).max()
        assert err < 1e-5, name


# ---- the see-inside views ---------------------------------------------------------------


@pytest.mark.parametrize("head", ["tied", "untied"])
def test_anatomy_describes_the_llama_blocks(head):
    from mnemos.inspect import anatomy

    config = ModelConfig(vocab_size=300, n_layer=2, n_head=4, n_embd=64, block_size=32, arch="llama", head=head)
    model = GPT(config)
    root = anatomy(model)
    assert root.role.startswith("Llama (MLP width 192): 2 blocks")
    assert root.params == config.num_params() == model.num_params()
    C, F, T, V = 64, 192, 32, 300
    per_block = 2 * (C * 3 * C + C * C + C * 2 * F + F * C) + 4 * T * C  # linears + attention scores
    assert root.flops == 2 * per_block + 2 * C * V
    assert "RMSNorm" in root.find("h.0.ln_1").role and "RMSNorm" in root.find("ln_f").role
    assert "RoPE" in root.find("h.1.attn").role and "SwiGLU" in root.find("h.1.mlp").role
    assert "gate and up" in root.find("h.0.mlp.c_fc").role
    assert root.find("wpe") is None and not [c for c in root.walk() if c.name.endswith(".bias")]
    lm_head = root.find("lm_head")
    assert lm_head.flops == 2 * C * V
    if head == "tied":
        assert lm_head.kind == "tied" and lm_head.params == 0 and "tied" in root.find("wte").role
    else:
        assert lm_head.kind == "tensor" and lm_head.params == V * C and "untied" in lm_head.role
        assert lm_head.stats is not None and "tied" not in root.find("wte").role


# ---- a whole run: train, resume, workers, generate, evaluate, export ------------------------

WORDS = "the king is dead long live the queen and all her men ride to the sea at dawn".split()
LLAMA_RUN = ["--arch", "llama", "--head", "untied", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
             "--block-size", "16", "--batch-size", "4", "--grad-accum", "2", "--dropout", "0.1", "--eval-interval", "3",
             "--eval-steps", "2", "--warmup-steps", "2", "--vocab-size", "280", "--seed", "3", "--sample-tokens", "4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of a tiny Llama on two workers: one straight from the command line, one
    with its settings stopped after step 4 and resumed to 6 with the CLI."""
    from mnemos.checkpoint import read_config
    from mnemos.cli import main
    from mnemos.trainer import Trainer

    root = tmp_path_factory.mktemp("llama-runs")
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(WORDS, size=9)) + "." for _ in range(200)) + "\n"
    (root / "train.txt").write_text(text, encoding="utf-8")
    common = ["train", "--data", str(root / "train.txt"), "--json", "--max-steps", "6", *LLAMA_RUN]
    assert main([*common, "--out", str(root / "two"), "--workers", "2"]) == 0
    model_cfg, train_cfg, _ = read_config(root / "two")
    holder = {}
    holder["t"] = Trainer.new(model_cfg, train_cfg, root / "train.txt", out_dir=root / "split",
                              callback=lambda e: e.kind == "step" and e.step == 4 and holder["t"].stop())
    assert holder["t"].run().reason == "stopped"
    assert main(["train", "--resume", str(root / "split"), "--json"]) == 0
    return root


def test_cli_trains_a_llama_on_workers_and_resumes_it_bit_for_bit(runs, capsys):
    from mnemos.checkpoint import load_checkpoint

    capsys.readouterr()
    two, split = load_checkpoint(runs / "two"), load_checkpoint(runs / "split")
    saved = json.loads((runs / "two" / "config.json").read_text())["model"]
    assert saved["arch"] == "llama" and saved["head"] == "untied" and saved["intermediate_size"] == 64
    assert "lm_head" in two.model.params and "wpe" not in two.model.params
    assert split.state["step"] == two.state["step"] == 6
    np.testing.assert_array_equal(split.model.params.data, two.model.params.data)
    np.testing.assert_array_equal(split.optimizer_state()["v"], two.optimizer_state()["v"])
    assert not np.array_equal(two.model.params.data, GPT(two.model_config, seed=3).params.data)  # it trained


def test_data_parallel_workers_give_the_one_process_gradient():
    """Workers overwrite their gradient buffers (accumulate=False): with an untied head
    the token embedding must be cleared too."""
    from mnemos.parallel import DataParallel

    config = ModelConfig(vocab_size=61, n_layer=2, n_head=2, n_embd=16, block_size=8, arch="llama", head="untied")
    model = GPT(config, seed=3)
    x, y = batch(config, 7, 8, seed=1)
    model.params.grad.fill(0)
    _, ref_loss = model.forward(x, y, train=True)
    model.backward()
    reference = {name: model.params.grad_view(name).copy() for name in model.params.names}
    with DataParallel(model, 2, max_batch=8, seed=11) as dp:
        dp.loss_and_grad(*batch(config, 7, 8, seed=2))  # leaves gradients in the workers' buffers
        model.params.grad[:] = np.nan
        loss = dp.loss_and_grad(x, y, accumulate=False)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for name, ref in reference.items():
        np.testing.assert_allclose(model.params.grad_view(name), ref, rtol=1e-5, atol=1e-6, err_msg=name)


def test_cli_generates_and_evaluates_a_llama_run(runs, capsys):
    from mnemos.checkpoint import load_checkpoint
    from mnemos.cli import main
    from mnemos.generate import Generator

    capsys.readouterr()
    args = ["generate", "--checkpoint", str(runs / "two"), "--prompt", "the king", "--seed", "5",
            "--max-new-tokens", "40"]  # past the 16-token window: the cache restarts, positions from 0
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("the king")
    ckpt = load_checkpoint(runs / "two")
    gen = Generator(ckpt.model, ckpt.tokenizer)
    cached = [s.token_id for s in gen.stream("the king", max_new_tokens=40, seed=9)]
    assert gen.slides > 0
    assert [s.token_id for s in gen.stream("the king", max_new_tokens=40, seed=9, use_cache=False)] == cached
    assert main(["eval", "--checkpoint", str(runs / "two"), "--data", str(runs / "train.txt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["bits_per_byte"] < 8 and report["tokens"] > 0


def test_export_is_a_llama_for_causal_lm_with_the_same_logits(runs, tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.checkpoint import load_checkpoint
    from mnemos.cli import main

    assert main(["export", "--checkpoint", str(runs / "two"), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert (config["rope_theta"], config["rms_norm_eps"], config["intermediate_size"]) == (10000.0, 1e-5, 64)
    assert config["tie_word_embeddings"] is False
    assert config["attention_bias"] is False and config["mlp_bias"] is False
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ckpt = load_checkpoint(runs / "two")
    text = "the queen and all her men ride to the sea"
    ids = ckpt.tokenizer.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    idx = np.array([ids[:16]])
    logits, _ = ckpt.model.forward(idx)
    with torch.no_grad():
        theirs = hf(torch.from_numpy(idx)).logits.numpy()
    np.testing.assert_allclose(theirs, logits, atol=1e-4 * max(1.0, np.abs(logits).max()))


def test_an_untied_gpt2_head_exports_to_gpt2lmheadmodel_and_back():
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.export import from_hf_state_dict, hf_config, to_hf_state_dict

    config = ModelConfig(vocab_size=29, n_layer=1, n_head=2, n_embd=16, block_size=8, head="untied")
    model = randomised(config, seed=4, dtype=np.float32)
    state = to_hf_state_dict(model)
    assert not np.array_equal(state["lm_head.weight"], state["transformer.wte.weight"])
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config(config))).eval()
    assert hf.lm_head.weight is not hf.transformer.wte.weight
    missing, unexpected = hf.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=False)
    assert not unexpected and all(k.endswith(".attn.bias") for k in missing)
    idx = batch(config, 2, 8)[0]
    with torch.no_grad():
        theirs = hf(torch.from_numpy(idx)).logits.numpy()
    np.testing.assert_allclose(theirs, model.forward(idx)[0], atol=1e-5 * np.abs(theirs).max())
    back = from_hf_state_dict(state, config)
    np.testing.assert_array_equal(back.params.view("lm_head"), model.params.view("lm_head"))


def test_a_tied_llama_export_leaves_the_head_out_and_transformers_ties_it_back(tmp_path):
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.checkpoint import save_checkpoint
    from mnemos.config import TrainConfig
    from mnemos.export import export_hf, load_safetensors
    from mnemos.optim import AdamW
    from mnemos.tokenizer import BPETokenizer

    tok = BPETokenizer.train(" ".join(WORDS) * 10, 270)
    config = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=16, arch="llama",
                         rope_theta=500.0, norm_eps=1e-6)
    model = randomised(config, seed=6, dtype=np.float32)
    save_checkpoint(tmp_path / "run", model, tok, config, TrainConfig(tokenizer_vocab=270), AdamW(model.params),
                    {"step": 1, "best_val_loss": None})
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    assert "lm_head.weight" not in load_safetensors(out / "model.safetensors")
    saved = json.loads((out / "config.json").read_text())
    assert (saved["rope_theta"], saved["rms_norm_eps"], saved["tie_word_embeddings"]) == (500.0, 1e-6, True)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    idx = np.array([tok.encode("the queen and all her men ride to the sea")[:16]])
    with torch.no_grad():
        theirs = hf(torch.from_numpy(idx)).logits.numpy()
    ours = model.forward(idx)[0]
    np.testing.assert_allclose(theirs, ours, atol=1e-4 * np.abs(ours).max())
