"""--optimizer muon / sgd: Muon against a PyTorch reference written from the published
algorithm, the orthogonalised update's singular values, SGD against torch.optim.SGD, and
checkpoints with bit-exact resume for every optimizer."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from mnemos import memory
from mnemos.checkpoint import load_checkpoint
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError, ConfigError
from mnemos.muon import NS_COEFFICIENTS, Muon, hidden_matrices, newton_schulz5
from mnemos.nn import GPT
from mnemos.optim import SGD, STATE_FLOATS, make_optimizer, state_shapes
from mnemos.trainer import Trainer

CFG = ModelConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=24, block_size=8)  # 24: views padded to 16


# ---------------------------------------------------------------- the reference (PyTorch)

def zeropower_via_newtonschulz5(G, steps=5):
    """Keller Jordan's Muon (github.com/KellerJordan/Muon, muon.py), in float32 instead of
    bfloat16."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.float()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_update(grad, momentum, beta=0.95):
    """Jordan's muon_update (Nesterov), with Moonlight's scale 0.2 sqrt(max(A, B))."""
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp_(momentum, beta)
    update = zeropower_via_newtonschulz5(update)
    return update * 0.2 * max(grad.size(-2), grad.size(-1)) ** 0.5


def reference_steps(model, grads, lrs, wd):
    """Muon (the hidden matrices) + torch.optim.AdamW (the rest), as torch tensors."""
    hidden = set(hidden_matrices(model.params))
    weights = {n: torch.tensor(model.params.view(n).copy(), requires_grad=True) for n in model.params.names}
    adam = torch.optim.AdamW([weights[n] for n in weights if n not in hidden and model.params.decay_mask[
        model.params.offsets[n]]], lr=lrs[0], betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    adam.add_param_group({"params": [weights[n] for n in weights if n not in hidden and not model.params.decay_mask[
        model.params.offsets[n]]], "weight_decay": 0.0})
    momenta = {n: torch.zeros_like(weights[n]) for n in hidden}
    for g, lr in zip(grads, lrs):
        for group in adam.param_groups:
            group["lr"] = lr
        for n, w in weights.items():
            w.grad = torch.tensor(g[n])
        adam.step()
        with torch.no_grad():
            for n in hidden:
                update = muon_update(weights[n].grad.clone(), momenta[n])
                weights[n].mul_(1 - lr * wd)
                weights[n].add_(update, alpha=-lr)
    return {n: w.detach().numpy() for n, w in weights.items()}


def random_grads(model, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [{n: rng.standard_normal(model.params.shapes[n]).astype(np.float32) for n in model.params.names}
            for _ in range(steps)]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_muon_steps_match_the_pytorch_reference(arch):
    model = GPT(dataclasses.replace(CFG, arch=arch), seed=1)
    before = {n: model.params.view(n).copy() for n in model.params.names}
    grads, lrs, wd = random_grads(model, 3), [3e-3, 2e-3, 1e-3], 0.1
    opt = Muon(model.params, lr=lrs[0], weight_decay=wd)
    for g, lr in zip(grads, lrs):
        for n in model.params.names:
            model.params.grad_view(n)[...] = g[n]
        opt.step(lr)
    want = reference_steps(GPT(dataclasses.replace(CFG, arch=arch), seed=1), grads, lrs, wd)
    hidden = hidden_matrices(model.params)
    assert hidden and all(n.startswith("h.") for n in hidden)
    assert "wte" not in hidden and not any(n.endswith("bias") or "ln_" in n for n in hidden)
    for n in model.params.names:
        np.testing.assert_allclose(model.params.view(n), want[n], rtol=1e-4, atol=2e-6, err_msg=n)
        assert not np.array_equal(model.params.view(n), before[n]), n  # every parameter moved
    assert opt.t == 3


@pytest.mark.parametrize("cores", [2, 3, 4])
def test_muon_on_several_cores_is_bit_identical_to_one(monkeypatch, cores):
    """Each core takes a chunk of every stack of matrices; a matrix's arithmetic is the same
    whichever chunk it is in, so the weights and momentum match one core's bit for bit."""
    cfg = ModelConfig(vocab_size=40, n_layer=4, n_head=2, n_embd=24, block_size=8, arch="llama")
    grads = random_grads(GPT(cfg, seed=1), 3)
    results = []
    for n_cores in (1, cores):
        monkeypatch.setattr("mnemos.optim.os.cpu_count", lambda n=n_cores: n)
        model = GPT(cfg, seed=1)
        opt = Muon(model.params, lr=3e-3)
        for g in grads:
            for n in model.params.names:
                model.params.grad_view(n)[...] = g[n]
            opt.step()
        results.append((model.params.data.copy(), opt.momentum.copy()))
    assert max(len(s.names) for s in opt._stacks) >= cores  # some stack really was split
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_the_orthogonalised_update_has_singular_values_near_one():
    """NS5 maps each singular value s of U / ||U||_F through f(s) = a s + b s^3 + c s^5
    five times; every s in [0.0015, 1] lands in [0.68, 1.21]."""
    a, b, c = NS_COEFFICIENTS
    rng = np.random.default_rng(0)
    for shape in [(24, 72), (96, 24), (24, 24), (5, 40)]:
        for cond in (0.0, 2.0):  # a Gaussian matrix, and one with columns scaled over e^{+-4}
            G = rng.standard_normal(shape) * np.exp(cond * rng.standard_normal(shape[1]))
            wide = G.T if shape[0] > shape[1] else G
            X = (wide / (np.linalg.norm(wide) + 1e-7)).astype(np.float32)[None].copy()
            m, n = X.shape[1:]
            newton_schulz5(X, np.empty((1, m, m), np.float32), np.empty((1, m, m), np.float32),
                           np.empty((1, m, n), np.float32), np)
            s_in = np.linalg.svd(wide / np.linalg.norm(wide), compute_uv=False)
            s_out = np.linalg.svd(X[0].astype(np.float64), compute_uv=False)
            f = s_in.copy()
            for _ in range(5):
                f = a * f + b * f ** 3 + c * f ** 5
            np.testing.assert_allclose(np.sort(s_out), np.sort(f), rtol=2e-3, atol=2e-4)
            kept = s_out[s_in >= 0.002]
            assert kept.size and kept.min() >= 0.68 and s_out.max() <= 1.21, (shape, cond, s_out.min(), s_out.max())


def test_sgd_matches_torch_with_decoupled_weight_decay():
    model = GPT(CFG, seed=2)
    start = {n: model.params.view(n).copy() for n in model.params.names}
    grads, lrs, wd = random_grads(model, 3, seed=5), [0.1, 0.2, 0.05], 0.01
    opt = SGD(model.params, lr=0.1, momentum=0.9, weight_decay=wd)
    for g, lr in zip(grads, lrs):
        for n in model.params.names:
            model.params.grad_view(n)[...] = g[n]
        opt.step(lr)
    weights = {n: torch.tensor(start[n]) for n in start}
    sgd = torch.optim.SGD(list(weights.values()), lr=0.1, momentum=0.9)
    for g, lr in zip(grads, lrs):
        for group in sgd.param_groups:
            group["lr"] = lr
        for n, w in weights.items():
            if model.params.decay_mask[model.params.offsets[n]]:
                w.mul_(1 - lr * wd)  # decoupled, on the decaying parameters only
            w.grad = torch.tensor(g[n])
        sgd.step()
    for n in model.params.names:
        np.testing.assert_allclose(model.params.view(n), weights[n].numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_state_shapes_and_sizes():
    params = GPT(CFG).params
    hidden = sum(math.prod(params.shapes[n]) for n in hidden_matrices(params))
    assert state_shapes("adamw", params)["m"] == ((params.size,), np.float32)
    muon = state_shapes("muon", params)
    assert muon["momentum"][0] == (hidden,) and muon["m"][0][0] + hidden <= params.size
    assert state_shapes("sgd", params) == {"momentum": ((params.size,), np.float32), "t": ((), np.int64)}
    for name in STATE_FLOATS:
        opt = make_optimizer(TrainConfig(optimizer=name), params)
        assert opt.state_shapes() == state_shapes(name, params)
        assert memory.OPTIMIZER_STATE[name] == STATE_FLOATS[name]
    with pytest.raises(ConfigError, match="optimizer must be"):
        TrainConfig(optimizer="lion")
    assert TrainConfig.from_dict({"max_steps": 5}).optimizer == "adamw"  # a config.json from before the field


# ---------------------------------------------------------------- in the trainer

@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = "the king is dead long live the queen and all her men ride to the sea".split()
    path = tmp_path_factory.mktemp("data") / "train.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(200)) + "\n")
    return path


TRAIN = TrainConfig(tokenizer_vocab=256, batch_size=4, grad_accum=2, max_steps=16, warmup_steps=3, lr=3e-3,
                    eval_interval=8, eval_steps=2, sample_tokens=0, seed=4, workers=1)
MODEL = ModelConfig(n_layer=1, n_head=2, n_embd=24, block_size=16, dropout=0.1)


@pytest.mark.parametrize("optimizer, lr", [("muon", 3e-3), ("sgd", 0.1), ("adamw", 3e-3)])
def test_every_optimizer_resumes_bit_exact(text_file, tmp_path, optimizer, lr):
    cfg = dataclasses.replace(TRAIN, optimizer=optimizer, lr=lr, min_lr=lr / 10)
    evals = []
    straight = Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "straight",
                           callback=lambda e: e.kind == "eval" and evals.append(e.val_loss))
    assert straight.run().reason == "finished"
    assert evals[-1] < evals[0] - 0.3  # it learns

    holder = {}

    def stop_at_7(e):
        if e.kind == "step" and e.step == 7:
            holder["t"].stop()

    holder["t"] = Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "split", callback=stop_at_7)
    assert holder["t"].run().step == 7
    assert Trainer.from_checkpoint(tmp_path / "split").run().reason == "finished"
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    np.testing.assert_array_equal(a.model.params.data, b.model.params.data)
    sa, sb = a.optimizer_state(), b.optimizer_state()
    assert set(sa) == set(state_shapes(optimizer, a.model.params)) and sa["t"] == sb["t"] == 16
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    assert b.train_config.optimizer == optimizer
    with pytest.raises(ConfigError, match="cannot change the optimizer on resume"):
        Trainer.from_checkpoint(tmp_path / "split", optimizer="sgd" if optimizer != "sgd" else "adamw",
                                max_steps=20)


def test_an_optimizer_state_of_the_wrong_kind_is_refused(text_file, tmp_path):
    cfg = dataclasses.replace(TRAIN, optimizer="muon", max_steps=2)
    Trainer.new(MODEL, cfg, text_file, out_dir=tmp_path / "run").run()
    config = (tmp_path / "run" / "config.json")
    config.write_text(config.read_text().replace('"optimizer": "muon"', '"optimizer": "sgd"'))
    with pytest.raises(CheckpointError, match="optimizer.npz"):
        load_checkpoint(tmp_path / "run").optimizer_state()
