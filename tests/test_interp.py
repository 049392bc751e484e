"""The deeper views: activation cache, logit lens, head scores, in-context learning,
direct logit attribution and per-token losses, checked on hand-built models whose heads
do known things and against definitions computed here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnemos.activations import run_with_cache
from mnemos.attribution import direct_logit_attribution
from mnemos.config import ModelConfig
from mnemos.errors import MnemosError
from mnemos.evaluate import evaluate
from mnemos.heads import (KINDS, detection_patterns, head_scores, icl_bands, icl_score, pattern_scores,
                          repeated_random_tokens, token_pool)
from mnemos.lens import lens_logits, logit_lens, softmax
from mnemos.nn import GPT
from mnemos.token_loss import token_losses
from mnemos.tokenizer import BPETokenizer
from tests.handbuilt import induction_model, previous_token_model

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 6


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 300)


ARCHS = [pytest.param({}, id="gpt2"), pytest.param({"arch": "llama", "head": "untied"}, id="llama-untied")]


def _random_model(tok, dtype=np.float32, sharpen=4.0, **shape):
    config = ModelConfig(vocab_size=tok.vocab_size, **{"n_layer": 2, "n_head": 2, "n_embd": 32,
                                                      "block_size": 24, **shape})
    model = GPT(config, dtype=dtype, seed=5)
    model.params.data *= sharpen  # far from uniform: a stronger test
    for name in model.params.names:  # norm gains away from 1 (and biases from 0) too
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            model.params.view(name)[...] = 1 + 0.3 * np.sin(np.arange(32))
    return model


# --------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cache_reproduces_the_forward_and_sums_to_the_stream(tok, dtype, arch):
    model = _random_model(tok, dtype, **arch)
    idx = np.random.default_rng(0).integers(0, tok.vocab_size, (3, 20))
    cache = run_with_cache(model, idx)
    logits, _ = model.forward(idx)
    assert np.array_equal(cache.logits, logits)  # the same layer calls, bit for bit
    L = model.config.n_layer
    assert cache.resid.shape == (L + 1, 3, 20, 32) and cache.patterns.shape == (L, 3, 2, 20, 20)
    np.testing.assert_array_equal(cache.resid[0], cache.embed)
    for layer in range(L):  # each block adds exactly its attention and MLP outputs
        np.testing.assert_array_equal(cache.resid[layer + 1],
                                      cache.resid[layer] + cache.attn_out[layer] + cache.mlp_out[layer])
    np.testing.assert_allclose(cache.patterns, np.stack(model.attention_maps(idx)), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_matches_hugging_face_hidden_states(tok, arch):
    """The peer's residual stream after each block (``output_hidden_states``) and its
    own head read through its own final norm (attention maps: test_inspect)."""
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.export import hf_config, to_hf_state_dict

    model = _random_model(tok, np.float64, sharpen=2.0, **arch)
    cls = transformers.LlamaForCausalLM if arch else transformers.GPT2LMHeadModel
    peer_config = (transformers.LlamaConfig if arch else transformers.GPT2Config)(**hf_config(model.config))
    hf = cls(peer_config).double().eval()
    hf.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_hf_state_dict(model).items()}, strict=False)
    norm = hf.model.norm if arch else hf.transformer.ln_f
    idx = np.random.default_rng(4).integers(0, tok.vocab_size, (2, 16))
    cache = run_with_cache(model, idx)
    with torch.no_grad():
        out = hf(torch.from_numpy(idx), output_hidden_states=True)
        hidden = [h.numpy() for h in out.hidden_states]  # the last one has the final norm applied
        lens = [hf.lm_head(norm(h)).numpy() for h in out.hidden_states[:-1]]
    L = model.config.n_layer
    for layer in range(L):
        np.testing.assert_allclose(cache.resid[layer], hidden[layer], atol=1e-7)
        np.testing.assert_allclose(lens_logits(model, cache)[layer], lens[layer], atol=1e-6)
    np.testing.assert_allclose(cache.logits, out.logits.numpy(), atol=1e-6)


# --------------------------------------------------------------------------- logit lens


@pytest.mark.parametrize("arch", ARCHS)
def test_logit_lens_last_layer_is_the_models_next_token_distribution(tok, arch):
    model = _random_model(tok, **arch)
    ids = tok.encode(TEXT)[:20]
    cache = run_with_cache(model, np.array([ids]))
    lens = lens_logits(model, cache)
    assert lens.shape == (3, 1, 20, tok.vocab_size)
    np.testing.assert_allclose(softmax(lens[-1]), softmax(model.forward(np.array([ids]))[0]), atol=1e-6)
    view = logit_lens(model, tok, ids, k=4)
    probs = softmax(model.forward(np.array([ids]))[0][0])
    assert view.answer == probs.argmax(-1).tolist()
    np.testing.assert_allclose(view.top_probs[-1], -np.sort(-probs, -1)[:, :4], atol=1e-6)
    np.testing.assert_allclose(view.answer_probs[-1], probs.max(-1), atol=1e-6)
    # top lists are sorted, and the first layer whose guess is the answer is a real one
    assert (np.diff(view.top_probs, axis=-1) <= 0).all()
    for t, first in enumerate(view.first_layer):
        assert view.top_ids[first, t, 0] == view.answer[t]
        assert all(view.top_ids[l, t, 0] != view.answer[t] for l in range(first))
    assert view.top_labels[0][0][0] == view.to_dict()["top_labels"][0][0][0]


def test_logit_lens_layer_zero_reads_the_embeddings_alone(tok):
    model = _random_model(tok)
    ids = tok.encode(TEXT)[:10]
    cache = run_with_cache(model, np.array([ids]))
    wte, wpe = model.params.view("wte"), model.params.view("wpe")
    x = wte[ids] + wpe[:10]
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    by_hand = (xhat * model.params.view("ln_f.weight") + model.params.view("ln_f.bias")) @ wte.T
    np.testing.assert_allclose(lens_logits(model, cache)[0, 0], by_hand, rtol=1e-4, atol=1e-4)


def test_logit_lens_keeps_the_last_block_size_tokens(tok):
    model = _random_model(tok)
    ids = tok.encode(TEXT)[:30]
    view = logit_lens(model, tok, ids)
    assert view.ids == ids[-24:] and view.truncated == 6
    with pytest.raises(MnemosError):
        logit_lens(model, tok, [])


# --------------------------------------------------------------------------- head scores


def test_detection_patterns_match_transformerlens_definitions():
    tokens = np.array([[5, 7, 5, 9, 7, 5]])
    d = detection_patterns(tokens)
    T = 6
    for q in range(T):
        for k in range(T):
            assert d["previous_token"][0, q, k] == (k == q - 1)
            assert d["duplicate_token"][0, q, k] == (k < q and tokens[0, k] == tokens[0, q])
            assert d["induction"][0, q, k] == (1 <= k <= q and tokens[0, k - 1] == tokens[0, q])


def test_pattern_scores_is_share_of_attention_on_the_pattern():
    rng = np.random.default_rng(1)
    A = np.tril(rng.random((1, 2, 3, 5, 5)))
    A /= A.sum(-1, keepdims=True)
    D = rng.random((2, 5, 5)) < 0.4
    want = np.array([[np.mean([(A[0, b, h] * D[b]).sum() / A[0, b, h].sum() for b in range(2)])
                      for h in range(3)]])
    np.testing.assert_allclose(pattern_scores(A, D), want)


def test_random_tokens_come_from_the_training_text_when_it_is_known():
    seen = np.array([3, 3, 7, 9, 9, 9, 12])
    np.testing.assert_array_equal(token_pool(20, exclude=[12], seen=seen), [3, 7, 9])
    np.testing.assert_array_equal(token_pool(6, exclude=[5]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(token_pool(20, exclude=[3], seen=[3]), np.delete(np.arange(20), 3))  # too few
    t = repeated_random_tokens(20, 16, batch=30, pool=token_pool(20, seen=seen))
    assert set(np.unique(t)) <= {3, 7, 9, 12}
    model = previous_token_model(vocab=100)
    s = head_scores(model, exclude=[99], seen=np.arange(40))
    assert s.from_training and s.pool_size == 40 and s.tokens.max() < 40
    assert s.to_dict()["sequence"]["drawn_from"] == 40


def test_repeated_random_tokens_repeat_and_avoid_excluded_ids():
    t = repeated_random_tokens(10, 12, batch=50, exclude=[9], seed=3)
    assert t.shape == (50, 12)
    np.testing.assert_array_equal(t[:, :6], t[:, 6:])
    assert t.max() < 9 and t.min() >= 0
    assert np.array_equal(t, repeated_random_tokens(10, 12, batch=50, exclude=[9], seed=3))
    with pytest.raises(MnemosError):
        repeated_random_tokens(10, 3)


def test_a_previous_token_head_scores_one_on_previous_token_and_zero_on_induction():
    model = previous_token_model(vocab=100)  # chance matches (tok[q - 2] == tok[q]) are rare
    scores = head_scores(model, exclude=[99], batch=8)
    prev, ind = scores.scores["previous_token"], scores.scores["induction"]
    # a perfect head scores the rows that have a previous token: (T - 1) / T
    assert prev[0, 0] == pytest.approx(scores.ceiling["previous_token"], abs=0.01)
    assert prev[0, 0] > 0.9 and ind[0, 0] < 0.05 and scores.scores["duplicate_token"][0, 0] < 0.05
    assert prev[0, 1] < 0.2  # the untouched head spreads out
    assert scores.top("previous_token")[:2] == (0, 0)
    assert scores.entropy[0, 0] < 0.05 < 1.0 < scores.entropy[0, 1]
    assert scores.top("entropy")[:2] == (0, 0)


def test_a_hand_built_two_layer_induction_circuit_scores_high_on_induction():
    model = induction_model(vocab=60)
    scores = head_scores(model, exclude=[59], batch=8)
    ind = scores.scores["induction"]
    assert scores.top("induction")[:2] == (1, 0)
    assert scores.top("previous_token")[:2] == (0, 0)
    assert 0.4 < scores.ceiling["induction"] <= 0.6  # one repeat: about half the rows have a target
    assert ind[1, 0] > 0.9 * scores.ceiling["induction"]
    assert ind[0, 0] < 0.05 and scores.scores["previous_token"][1, 0] < 0.1
    d = scores.to_dict()
    assert d["top"]["induction"] == {"layer": 1, "head": 0, "score": pytest.approx(ind[1, 0], abs=1e-4)}
    assert set(KINDS) <= set(d)


def test_icl_score_is_late_minus_early_loss(tok):
    model = _random_model(tok)
    data = np.array(tok.encode(TEXT))
    x = np.stack([data[i:i + 24] for i in (0, 7, 30)])
    y = np.stack([data[i + 1:i + 25] for i in (0, 7, 30)])
    logits, _ = model.forward(x)
    p = softmax(logits)
    nll = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0]).mean(0)
    early, late = icl_bands(24)
    assert (early, late) == (slice(2, 4), slice(22, 24))
    assert icl_score(model, x, y) == pytest.approx(nll[late].mean() - nll[early].mean(), abs=1e-5)
    assert icl_bands(512) == (slice(51, 102), slice(461, 512))
    with pytest.raises(MnemosError):
        icl_bands(3)


def test_an_induction_circuit_learns_in_context():
    """The hand-built induction head predicts the second copy of a repeated sequence if
    its output is wired to the head: the late tokens' loss drops far below the early ones'."""
    model = induction_model()
    C = model.config.n_embd
    V = model.config.vocab_size
    proj = model.params.view("h.1.attn.c_proj.weight")
    proj[:V, :V] = 4 * np.eye(V)  # what the induction head reads (a value of the token) goes to TOK
    W = model.params.view("h.1.attn.c_attn.weight")
    W[:V, 2 * C:2 * C + V] = np.eye(V)
    tokens = repeated_random_tokens(V, model.config.block_size, batch=8, exclude=[V - 1], seed=4)
    x, y = tokens[:, :-1], tokens[:, 1:]
    assert icl_score(model, x, y) < -1.0


# --------------------------------------------------------------------------- attribution


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_attributions_sum_to_the_logit_minus_the_bias_term(tok, dtype, tol, arch):
    model = _random_model(tok, dtype, sharpen=2.0, **arch)
    if not arch:
        model.params.view("ln_f.bias")[...] = np.random.default_rng(0).normal(0, 0.5, 32)
    ids = tok.encode(TEXT)[:15]
    for position, token in [(-1, None), (3, 7), (0, None)]:
        a = direct_logit_attribution(model, tok, ids, position, token)
        logits = model.forward(np.array([ids]))[0][0, a.position]
        assert a.logit == pytest.approx(float(logits[a.token]), abs=tol)
        assert a.total + a.bias == pytest.approx(a.logit, abs=tol * max(1.0, abs(a.logit)))
        assert (a.bias == 0) == bool(arch)  # RMSNorm has no bias
        embeddings = ["token embedding"] if arch else ["token embedding", "position embedding"]
        assert [n for n, _ in a.parts] == embeddings + ["block 1 attention", "block 1 MLP", "block 2 attention",
                                                        "block 2 MLP"]
        assert a.rank == int((logits > logits[a.token]).sum())
    assert direct_logit_attribution(model, tok, ids).rank == 0
    with pytest.raises(MnemosError):
        direct_logit_attribution(model, tok, ids, position=15)
    with pytest.raises(MnemosError):
        direct_logit_attribution(model, tok, ids, token=tok.vocab_size)


def test_attribution_credits_the_induction_head():
    """With the induction head wired to the output, the predicted second-copy token's
    logit comes from block 2's attention."""
    model = induction_model()
    C, V = model.config.n_embd, model.config.vocab_size
    model.params.view("h.1.attn.c_proj.weight")[:V, :V] = 4 * np.eye(V)
    model.params.view("h.1.attn.c_attn.weight")[:V, 2 * C:2 * C + V] = np.eye(V)
    ids = [3, 8, 1, 5, 11, 3, 8, 1]
    a = direct_logit_attribution(model, _Ids(V), ids)
    assert a.token == 5
    parts = dict(a.parts)
    assert parts["block 2 attention"] == max(parts.values())


class _Ids:
    """A stand-in tokenizer for ids only (labels are the ids)."""

    def __init__(self, vocab):
        self.vocab_size = vocab

    def token_bytes(self, i):
        return str(i).encode()


# --------------------------------------------------------------------------- per-token loss


def test_token_losses_match_the_evaluation(tok):
    model = _random_model(tok)
    view = token_losses(model, tok, TEXT)
    report = evaluate(model, tok, tok.encode(TEXT, allowed_special="all"))
    assert view.mean_loss == pytest.approx(report.loss, rel=1e-6)
    assert len(view.loss) == report.tokens
    np.testing.assert_allclose(view.prob, np.exp(-view.loss))
    assert (view.expected_prob >= view.prob - 1e-6).all()
    worst = view.worst(5)
    assert [w.loss for w in worst] == sorted(view.loss, reverse=True)[:5]
    assert worst[0].expected_label == view.expected_labels[worst[0].index]
    short = token_losses(model, tok, TEXT, max_tokens=10)
    assert len(short.loss) == 10 and short.tokens.text + TEXT[-short.unscored_chars:] == TEXT
    assert short.tokens.text == tok.decode(tok.encode(TEXT)[:10])
    np.testing.assert_allclose(short.loss, view.loss[:10], rtol=1e-5)  # the first window is the same
    with pytest.raises(MnemosError):
        token_losses(model, tok, "")


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def ckpt_dir(tok, tmp_path_factory):
    from mnemos.checkpoint import save_checkpoint
    from mnemos.config import TrainConfig
    from mnemos.optim import AdamW

    model = _random_model(tok)
    run = tmp_path_factory.mktemp("views") / "run"
    save_checkpoint(run, model, tok, model.config, TrainConfig(tokenizer_vocab=300), AdamW(model.params), {"step": 0})
    (run.parent / "text.txt").write_text(TEXT, encoding="utf-8")
    return run


def _inspect(capsys, *args):
    from mnemos.cli import main

    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("view,words", [
    ("lens", ["logit lens", "embed", "block 2", "first"]),
    ("heads", ["previous token", "induction", "top induction head: layer", "attention entropy"]),
    ("loss", ["tokens scored, mean loss", "expected instead"]),
    ("attribution", ["direct logit attribution", "block 2 MLP", "(= the logit)"]),
])
def test_cli_views_as_text_and_json(ckpt_dir, capsys, view, words):
    code, out, err = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", view, "--prompt", "To be, or not")
    assert code == 0 and err == ""
    assert all(w in out for w in words), out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, err = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", view, "--prompt", "To be, or not",
                              "--json")
    data = json.loads(out)
    assert code == 0 and data["view"] == view and view in data


def test_cli_views_numbers(ckpt_dir, tok, capsys):
    from mnemos.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt_dir).model
    ids = tok.encode("To be, or not")
    code, out, _ = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", "attribution", "--prompt", "To be, or not",
                            "--position", 2, "--token", "o", "--json")
    a = json.loads(out)["attribution"]
    assert a["position"] == 2 and a["token"] == tok.encode("o")[0]
    assert a["logit"] == pytest.approx(float(model.forward(np.array([ids]))[0][0, 2, a["token"]]), abs=1e-5)
    assert sum(p["logit"] for p in a["parts"]) + a["bias"] == pytest.approx(a["logit"], abs=1e-5)
    code, out, _ = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", "loss",
                            "--data", ckpt_dir.parent / "text.txt", "--json")
    assert json.loads(out)["loss"]["n_tokens"] == len(tok.encode(TEXT))
    code, out, _ = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", "heads", "--layer", 2, "--head", 1)
    assert "layer 2 head 1 (queries down" in out


@pytest.mark.parametrize("args", [("--token", "To be"), ("--position", "99"), ("--data", "{missing}")])
def test_cli_view_user_errors(ckpt_dir, capsys, tmp_path, args):
    args = [a.format(missing=tmp_path / "nope.txt") for a in args]
    view = "loss" if "--data" in args else "attribution"
    code, out, err = _inspect(capsys, "--checkpoint", ckpt_dir, "--view", view, "--prompt", "To be", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mnemos inspect: error:")


# --------------------------------------------------------------------------- the induction bump, live


def test_each_evaluation_records_the_icl_score_and_the_best_induction_head(tmp_path):
    from mnemos import data as data_mod
    from mnemos.checkpoint import load_checkpoint, read_metrics
    from mnemos.config import TrainConfig
    from mnemos.heads import ICL_WINDOWS, induction_probe
    from mnemos.trainer import Trainer

    (tmp_path / "train.txt").write_text(TEXT * 4, encoding="utf-8")
    events = []
    model_cfg = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16)
    train_cfg = TrainConfig(tokenizer_vocab=260, batch_size=4, max_steps=6, warmup_steps=2, eval_interval=3,
                            eval_steps=1, sample_tokens=0, workers=1)
    trainer = Trainer.new(model_cfg, train_cfg, tmp_path / "train.txt", out_dir=tmp_path / "run",
                          callback=events.append)
    assert trainer.run().reason == "finished"
    rows = [r for r in read_metrics(tmp_path / "run") if r["event"] == "eval"]
    assert [r["step"] for r in rows] == [0, 3, 6]
    for r in rows:
        assert isinstance(r["icl_score"], float) and 0 <= r["induction_score"] <= 1
        assert len(r["induction_head"]) == 2 and 1 <= r["induction_head"][0] <= 2
    # the numbers are the probe's on the final weights, with the run's fixed windows
    ckpt = load_checkpoint(tmp_path / "run")
    x, y = data_mod.get_batch(trainer.val_tokens, ICL_WINDOWS, 16, np.random.default_rng([train_cfg.seed, 3]))
    probe = induction_probe(ckpt.model, x, y, exclude=ckpt.tokenizer.special_tokens.values(), seed=train_cfg.seed,
                            seen=trainer.train_tokens)
    assert probe["icl_score"] == pytest.approx(rows[-1]["icl_score"], abs=1e-6)
    assert probe["induction_score"] == pytest.approx(rows[-1]["induction_score"], abs=1e-6)
    assert probe["induction_head"] == rows[-1]["induction_head"]
    assert [e.induction_head for e in events if e.kind == "eval"] == [r["induction_head"] for r in rows]


def test_the_probe_is_skipped_for_a_context_too_short_to_measure():
    from mnemos.heads import induction_probe

    model = GPT(ModelConfig(vocab_size=20, n_layer=1, n_head=1, n_embd=8, block_size=3))
    x = np.zeros((2, 3), dtype=np.int64)
    assert induction_probe(model, x, x) == {"icl_score": None, "induction_score": None, "induction_head": None}


def test_the_probe_does_not_change_training(tmp_path, monkeypatch):
    """Same run with and without the probe at each evaluation: the same weights, bit for bit."""
    from mnemos.checkpoint import load_checkpoint
    from mnemos.config import TrainConfig
    from mnemos.trainer import Trainer

    (tmp_path / "train.txt").write_text(TEXT * 4, encoding="utf-8")
    model_cfg = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, dropout=0.1)
    train_cfg = TrainConfig(tokenizer_vocab=260, batch_size=4, max_steps=6, warmup_steps=2, eval_interval=2,
                            eval_steps=1, sample_tokens=0, workers=1)
    weights = []
    for probe in (True, False):
        if not probe:
            monkeypatch.setattr(Trainer, "_induction_probe", lambda self: {})
        out = tmp_path / f"run-{probe}"
        assert Trainer.new(model_cfg, train_cfg, tmp_path / "train.txt", out_dir=out).run().reason == "finished"
        weights.append(load_checkpoint(out).model.state_dict())
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_command_line_prints_the_bump_with_each_evaluation():
    import io

    from mnemos.cli import ProgressPrinter
    from mnemos.events import EvalEvent

    out = io.StringIO()
    printer = ProgressPrinter(json_mode=False, stream=out)
    printer(EvalEvent(250, 2.4, 2.5, 2.5, True, 1.0, -0.4213, 0.317, [2, 3]))
    printer(EvalEvent(500, 2.3, 2.4, 2.4, True, 1.0))  # not measured (a context under 4 tokens)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("eval step 250: train loss 2.4000, val loss 2.5000; in-context -0.421, induction 0.32 "
                        "(layer 2 head 3)  (best)")
    assert lines[1] == "eval step 500: train loss 2.3000, val loss 2.4000  (best)"


def test_the_views_on_the_device_match_the_cpu(tok, simulated_gpu):
    """The device path (CuPy; here tests/cuda_sim.py) gives the CPU's numbers: the cache
    moves to the host, the final norm and head run where the model is."""
    from mnemos.heads import induction_probe

    cpu = _random_model(tok)
    gpu = GPT(cpu.config, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    assert gpu.xp is simulated_gpu
    ids = tok.encode(TEXT)[:20]
    a, b = logit_lens(cpu, tok, ids), logit_lens(gpu, tok, ids)
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_allclose(a.top_probs, b.top_probs, atol=1e-5)
    a, b = direct_logit_attribution(cpu, tok, ids), direct_logit_attribution(gpu, tok, ids)
    assert [v for _, v in a.parts] == pytest.approx([v for _, v in b.parts], abs=1e-4) and a.token == b.token
    x = np.array([tok.encode(TEXT)[i:i + 24] for i in (0, 9)])
    p, q = induction_probe(cpu, x, x, exclude=[tok.eot_id]), induction_probe(gpu, x, x, exclude=[tok.eot_id])
    assert p["induction_head"] == q["induction_head"]
    assert p["icl_score"] == pytest.approx(q["icl_score"], abs=1e-4)
    np.testing.assert_allclose(token_losses(cpu, tok, TEXT).loss, token_losses(gpu, tok, TEXT).loss, atol=1e-4)
