"""Generation: the sampling distribution, the KV cache against full recomputation (also
across window slides), seeds, the stop token, and UTF-8 streaming of split characters."""

import math

import numpy as np
import pytest

from mnemos.config import ModelConfig
from mnemos.errors import ConfigError
from mnemos.generate import Generator, sample, sampling_distribution, top_candidates
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 8


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 300)


def peaky_model(tok, block_size=16, seed=0, dtype=np.float32):
    """A random GPT whose weights are scaled up so its distributions are far from uniform
    (a freshly initialised GPT predicts nearly uniformly, which tests nothing)."""
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=block_size),
                dtype=dtype, seed=seed)
    model.params.data *= 8
    for name in model.params.names:  # keep the LayerNorm gains at 1
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            model.params.view(name)[...] = 1
    return model


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- sampling_distribution


def test_temperature_one_is_softmax_and_temperature_scales_logits():
    logits = np.random.default_rng(0).normal(size=50).astype(np.float32)
    z = logits.astype(np.float64)  # the distribution is computed in float64
    np.testing.assert_allclose(sampling_distribution(logits, 1.0), softmax(z), rtol=1e-12)
    np.testing.assert_allclose(sampling_distribution(logits, 0.5), softmax(z / 0.5), rtol=1e-12)
    np.testing.assert_allclose(sampling_distribution(logits, 3.0), softmax(z / 3.0), rtol=1e-12)


def test_temperature_zero_is_one_hot_argmax_lowest_id_on_ties():
    p = sampling_distribution(np.array([0.1, 2.0, -1.0, 2.0]), 0)
    assert p.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_top_k_keeps_the_k_largest_renormalised_and_ties_with_the_kth():
    logits = np.array([1.0, 3.0, 2.0, 0.5, 2.5])
    p = sampling_distribution(logits, 1.0, top_k=2)
    expected = np.zeros(5)
    expected[[1, 4]] = softmax(logits[[1, 4]])
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    tied = sampling_distribution(np.array([1.0, 2.0, 2.0, 0.0]), 1.0, top_k=2)
    np.testing.assert_allclose(tied, [0, 0.5, 0.5, 0])
    tied3 = sampling_distribution(np.array([1.0, 2.0, 2.0, 0.0]), 1.0, top_k=1)
    np.testing.assert_allclose(tied3, [0, 0.5, 0.5, 0])  # nanoGPT keeps every logit >= the k-th
    assert np.array_equal(sampling_distribution(logits, 1.0, top_k=5), sampling_distribution(logits, 1.0))
    assert np.array_equal(sampling_distribution(logits, 1.0, top_k=0), sampling_distribution(logits, 1.0))


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.array([0.05, 0.5, 0.15, 0.3])
    logits = np.log(probs)
    p = sampling_distribution(logits, 1.0, top_p=0.79)  # 0.5 + 0.3 reaches 0.79
    np.testing.assert_allclose(p, [0, 0.5 / 0.8, 0, 0.3 / 0.8], rtol=1e-9)
    p = sampling_distribution(logits, 1.0, top_p=0.81)  # needs the 0.15 too
    np.testing.assert_allclose(p, [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95], rtol=1e-9)
    p = sampling_distribution(logits, 1.0, top_p=0.01)  # the most likely token always stays
    assert p.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_top_k_then_top_p_then_batched_rows_agree_with_single_rows():
    logits = np.random.default_rng(1).normal(size=(3, 4, 40)) * 2
    batch = sampling_distribution(logits, 0.7, top_k=10, top_p=0.6)
    assert batch.shape == logits.shape
    np.testing.assert_allclose(batch.sum(-1), 1.0, rtol=1e-12)
    for i in range(3):
        for j in range(4):
            np.testing.assert_array_equal(batch[i, j], sampling_distribution(logits[i, j], 0.7, top_k=10, top_p=0.6))
            assert (batch[i, j] > 0).sum() <= 10


def test_sampling_distribution_does_not_modify_its_input():
    logits = np.random.default_rng(2).normal(size=30).astype(np.float32)
    before = logits.copy()
    sampling_distribution(logits, 0.5, top_k=3, top_p=0.5)
    assert np.array_equal(logits, before)


@pytest.mark.parametrize("kwargs", [dict(temperature=-0.1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5),
                                    dict(temperature=float("nan"))])
def test_bad_sampling_settings_raise_config_error(kwargs):
    args = dict(temperature=1.0, top_k=None, top_p=None) | kwargs
    with pytest.raises(ConfigError):
        sampling_distribution(np.zeros(5), **args)


def test_matches_hugging_face_logits_warpers():
    torch = pytest.importorskip("torch", reason="parity with Hugging Face's warpers needs torch")
    lp = pytest.importorskip("transformers.generation.logits_process",
                             reason="parity with Hugging Face's warpers needs transformers")
    logits = np.random.default_rng(3).normal(size=(5, 64)).astype(np.float32) * 3
    for temperature, top_k, top_p in [(1.0, 8, None), (0.7, None, 0.9), (1.3, 20, 0.5), (0.5, 5, 0.95)]:
        scores = torch.tensor(logits) / temperature
        if top_k:
            scores = lp.TopKLogitsWarper(top_k)(None, scores)
        if top_p:
            scores = lp.TopPLogitsWarper(top_p)(None, scores)
        hf = torch.softmax(scores.double(), dim=-1).numpy()
        ours = sampling_distribution(logits, temperature, top_k, top_p)
        np.testing.assert_array_equal(hf > 0, ours > 0)
        np.testing.assert_allclose(ours, hf, atol=1e-6)


def test_sample_draws_by_the_distribution_and_never_a_zero_probability_token():
    p = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    rng = np.random.default_rng(0)
    draws = np.array([sample(p, rng) for _ in range(20000)])
    counts = np.bincount(draws, minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    sigma = np.sqrt(20000 * p * (1 - p))
    assert np.all(np.abs(counts - 20000 * p) <= 5 * sigma + 1e-9)


def test_top_candidates_are_sorted_most_likely_first():
    p = softmax(np.random.default_rng(4).normal(size=40))
    top = top_candidates(p, 10)
    assert [i for i, _ in top] == list(np.argsort(-p)[:10])
    assert all(a[1] >= b[1] for a, b in zip(top, top[1:]))
    assert len(top_candidates(p[:3] / p[:3].sum(), 10)) == 3


# --------------------------------------------------------------------------- the KV cache


def reference_tokens(model, prompt_ids, n, keep, temperature=0.0, top_k=None, top_p=None, seed=None):
    """Generation written the slow way: recompute the whole context at every step,
    sliding the window as documented (restart from the last `keep` tokens when full)."""
    ids, start, out = list(prompt_ids), max(0, len(prompt_ids) - model.config.block_size), []
    rng = np.random.default_rng(seed)
    for _ in range(n):
        logits, _ = model.forward(np.array([ids[start:]]))
        probs = sampling_distribution(logits[0, -1], temperature, top_k, top_p)
        t = sample(probs, rng)
        out.append(t)
        ids.append(t)
        if len(ids) - start > model.config.block_size:
            start = len(ids) - keep
    return out


@pytest.mark.parametrize("settings", [dict(temperature=0.0), dict(temperature=1.0, seed=7),
                                      dict(temperature=0.8, top_k=20, top_p=0.9, seed=3)])
def test_cached_generation_equals_full_recomputation_across_window_slides(tok, settings):
    model = peaky_model(tok, block_size=16)
    model_ids = tok.encode("To be, or not")
    eot = tok.eot_id
    model.params.view("wte")[eot] = 0  # keep <|endoftext|> from ending the run early
    g = Generator(model, tok)
    cached = [s.token_id for s in g.stream(model_ids, max_new_tokens=60, **settings)]
    assert g.slides >= 4 and g.stop_reason == "max_tokens"
    recomputed = [s.token_id for s in g.stream(model_ids, max_new_tokens=60, use_cache=False, **settings)]
    reference = reference_tokens(model, model_ids, 60, keep=8, **settings)
    assert cached == recomputed == reference
    assert len(set(cached)) > 3  # the test means something only if the text varies


def test_keep_block_size_is_nanogpts_sliding_window(tok):
    """With keep = block_size every step sees exactly the last block_size tokens, as in
    nanoGPT's generate (idx[:, -block_size:])."""
    model = peaky_model(tok, block_size=8, seed=1)
    model.params.view("wte")[tok.eot_id] = 0
    prompt = tok.encode("whether 'tis")
    ids = list(prompt)
    for _ in range(30):
        logits, _ = model.forward(np.array([ids[-8:]]))
        ids.append(int(np.argmax(logits[0, -1])))
    g = Generator(model, tok, keep=8)
    assert [s.token_id for s in g.stream(prompt, max_new_tokens=30, temperature=0)] == ids[len(prompt):]


def test_each_new_token_costs_one_position(tok):
    model = peaky_model(tok, block_size=16)
    model.params.view("wte")[tok.eot_id] = 0
    shapes = []
    forward_cached = model.forward_cached
    model.forward_cached = lambda idx, cache: (shapes.append(np.shape(idx)), forward_cached(idx, cache))[1]
    prompt = tok.encode("To be")
    g = Generator(model, tok, keep=6)
    list(g.stream(prompt, max_new_tokens=40, temperature=0))
    assert shapes[0] == (1, len(prompt))
    assert set(shapes[1:]) == {(1, 1), (1, 6)}  # one position per token, a `keep` prefill per slide
    assert shapes.count((1, 6)) == g.slides > 0
    assert len(shapes) == 40  # no forward pass after the last token


def test_logits_and_probabilities_of_each_step(tok):
    model = peaky_model(tok)
    prompt = tok.encode("To be")
    step = next(Generator(model, tok).stream(prompt, max_new_tokens=1, temperature=0.9, top_k=5, seed=0))
    logits, _ = model.forward(np.array([prompt]))
    np.testing.assert_allclose(step.logits, logits[0, -1], rtol=1e-4, atol=1e-4)
    probs = sampling_distribution(step.logits, 0.9, 5)
    assert step.prob == pytest.approx(probs[step.token_id])
    assert [i for i, _ in step.probs_top][:5] == list(np.argsort(-probs, kind="stable")[:5])
    assert len(step.probs_top) == 10 and sum(p for _, p in step.probs_top) == pytest.approx(1.0)
    np.testing.assert_array_equal(step.probs, probs)


def test_seeds_reproduce_and_differ(tok):
    model = peaky_model(tok)
    model.params.view("wte")[tok.eot_id] = 0
    g = Generator(model, tok)
    run = lambda seed: [s.token_id for s in g.stream("To", max_new_tokens=40, temperature=1.5, seed=seed)]
    assert run(11) == run(11)
    assert run(11) != run(12)
    assert g.generate("To", max_new_tokens=40, temperature=1.5, seed=11) == tok.decode(run(11))
    rng = np.random.default_rng(0)
    list(g.stream("To", max_new_tokens=10, temperature=0, seed=rng))  # greedy draws nothing
    assert rng.random() == np.random.default_rng(0).random()


def test_long_prompt_keeps_its_last_block_size_tokens(tok):
    model = peaky_model(tok, block_size=16)
    prompt = tok.encode(TEXT[:200])
    assert len(prompt) > 16
    g = Generator(model, tok)
    a = [s.token_id for s in g.stream(prompt, max_new_tokens=5, temperature=0)]
    b = [s.token_id for s in g.stream(prompt[-16:], max_new_tokens=5, temperature=0)]
    assert a == b


def test_empty_prompt_starts_from_end_of_text(tok):
    model = peaky_model(tok)
    g = Generator(model, tok)
    assert g.encode_prompt("") == [tok.eot_id]
    assert [s.token_id for s in g.stream("", 5, temperature=0)] == \
           [s.token_id for s in g.stream([tok.eot_id], 5, temperature=0)]


def test_stops_at_end_of_text(tok):
    model = peaky_model(tok)
    # logits = ln_f(x) . wte[i]; with ln_f = the constant 1 and wte[eot] = 5, <|endoftext|>
    # scores 5 * n_embd = 160 and every other token about 0
    model.params.view("ln_f.weight")[...] = 0
    model.params.view("ln_f.bias")[...] = 1.0
    model.params.view("wte")[tok.eot_id] = 5.0
    g = Generator(model, tok)
    steps = list(g.stream("To be", 50, temperature=1.0, seed=0))
    assert [s.token_id for s in steps] == [tok.eot_id] and steps[0].text == ""
    assert g.stop_reason == "eot"
    assert g.generate("To be", max_new_tokens=50) == ""


def test_should_stop_is_checked_before_every_token(tok):
    model = peaky_model(tok)
    model.params.view("wte")[tok.eot_id] = 0
    calls = []
    stop_after = 7
    g = Generator(model, tok)
    steps = list(g.stream("To", 100, temperature=1.0, seed=0,
                          should_stop=lambda: calls.append(1) or len(calls) > stop_after))
    assert len(steps) == stop_after and g.stop_reason == "stopped"


def test_bad_settings_raise_before_generation(tok):
    g = Generator(peaky_model(tok), tok)
    with pytest.raises(ConfigError):
        g.stream("x", temperature=-1)
    with pytest.raises(ConfigError):
        g.stream("x", max_new_tokens=-5)
    with pytest.raises(ConfigError):
        Generator(peaky_model(tok, block_size=8), tok, keep=9)


# --------------------------------------------------------------------------- UTF-8 streaming


class ScriptedModel:
    """A model that predicts a fixed token sequence (whatever the context), through both
    ``forward`` and ``forward_cached``, so streaming can be tested on chosen bytes."""

    class Cache:
        def __init__(self):
            self.length = 0

    def __init__(self, script, vocab_size, block_size=64):
        self.script = list(script)
        self.config = ModelConfig(vocab_size=vocab_size, n_layer=1, n_head=1, n_embd=4, block_size=block_size)
        self.emitted = 0  # tokens of the script consumed so far (one per forward)

    def _logits(self, B, T):
        logits = np.zeros((B, T, self.config.vocab_size), np.float32)
        logits[:, -1, self.script[min(self.emitted, len(self.script) - 1)]] = 10.0
        self.emitted += 1
        return logits

    def new_cache(self, batch=1):
        return self.Cache()

    def forward_cached(self, idx, cache):
        cache.length += idx.shape[1]
        return self._logits(*idx.shape)

    def forward(self, idx):
        return self._logits(*idx.shape), None


@pytest.fixture(scope="module")
def byte_tok():
    return BPETokenizer.train("", 256)  # pure byte level: one token per byte


def stream_texts(byte_tok, data: bytes, **kwargs):
    model = ScriptedModel(list(data), byte_tok.vocab_size)
    g = Generator(model, byte_tok)
    return [s.text for s in g.stream("a", max_new_tokens=kwargs.pop("n", len(data)), temperature=0, **kwargs)]


def test_multibyte_characters_split_across_tokens_are_held_back(byte_tok):
    texts = stream_texts(byte_tok, "a🙂bé€".encode())
    assert texts == ["a", "", "", "", "🙂", "b", "", "é", "", "", "€"]
    assert all("\ufffd" not in t for t in texts)


def test_invalid_bytes_become_replacement_characters_as_in_decode(byte_tok):
    data = b"x\xff" + "🙂".encode()[:2] + b"y"  # a stray byte and a truncated emoji
    texts = stream_texts(byte_tok, data)
    assert "".join(texts) == data.decode("utf-8", errors="replace") == byte_tok.decode(list(data))
    assert texts[1] == "\ufffd"


def test_a_character_cut_by_max_new_tokens_is_flushed(byte_tok):
    data = "ok🙂".encode()
    texts = stream_texts(byte_tok, data, n=4)  # the emoji's first two bytes only
    assert "".join(texts) == byte_tok.decode(list(data[:4])) == "ok\ufffd"


def test_stream_and_decode_agree_on_a_real_model(tok):
    model = peaky_model(tok)
    model.params.view("wte")[tok.eot_id] = 0
    g = Generator(model, tok)
    steps = list(g.stream("To be", 50, temperature=2.0, seed=5))
    assert "".join(s.text for s in steps) == tok.decode([s.token_id for s in steps if s.token_id != tok.eot_id])
    assert [s.index for s in steps] == list(range(len(steps)))
    assert len(steps) == 50 or g.stop_reason == "eot"
    assert math.isclose(sum(p for _, p in steps[0].probs_top), sum(sorted(
        sampling_distribution(steps[0].logits, 2.0), reverse=True)[:10]))
