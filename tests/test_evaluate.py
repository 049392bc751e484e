"""Evaluation: every token scored exactly once by the sliding windows, the loss against a
slow per-token reference, bits per byte, the unigram baselines, checkpoints and reports."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import ConfigError, DataError
from mnemos.evaluate import (EvalCancelled, EvalReport, eval_history, evaluate, evaluate_checkpoint, save_report,
                             sliding_windows)
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo? 🙂 ça va\n") * 3


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 300)


def make_model(tok, block_size=16, dtype=np.float32, scale=4.0):
    m = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=block_size),
            dtype=dtype, seed=1)
    m.params.data *= scale  # away from the near-uniform predictions of a fresh model
    for name in m.params.names:
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            m.params.view(name)[...] = 1
    return m


# --------------------------------------------------------------------------- windows


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 300), block=st.integers(1, 40), stride=st.one_of(st.none(), st.integers(1, 50)))
def test_windows_score_every_prediction_exactly_once(n, block, stride):
    starts, first, W = sliding_windows(n, block, stride)
    assert W == min(block, n)
    seen = np.zeros(n + 1, dtype=int)  # predicted ids are 1..n
    for k, (a, f) in enumerate(zip(starts, first)):
        assert 0 <= a and a + W <= n  # inputs a..a+W-1 and targets a+1..a+W exist
        assert 0 <= f < W
        seen[a + 1 + f:a + W + 1] += 1
        if k > 0:  # every scored prediction sees at least W - stride + 1 tokens
            s = min(stride, W) if stride is not None else max(1, W // 2)
            assert f + 1 >= W - s + 1
            assert a - starts[k - 1] <= s
    assert seen[0] == 0 and np.all(seen[1:] == 1)
    assert first[0] == 0 and starts[0] == 0 and starts[-1] == n - W


def test_a_bad_stride_is_a_config_error():
    with pytest.raises(ConfigError):
        sliding_windows(100, 16, 0)
    with pytest.raises(ConfigError):
        sliding_windows(100, 16, 2.5)


def test_windows_of_a_short_text_are_one_window():
    starts, first, W = sliding_windows(5, 16)
    assert starts.tolist() == [0] and first.tolist() == [0] and W == 5


# --------------------------------------------------------------------------- scoring


def reference_loss(model, ids, W, stride):
    """The slow way: for each token, the context the method promises, one forward each."""
    n = len(ids) - 1
    starts = list(range(0, n - W, stride)) + [n - W]
    total = 0.0
    for j in range(1, n + 1):  # the first window covering prediction j scores it
        a = next(a for a in starts if a + W >= j)
        logits, _ = model.forward(np.array([ids[a:j]]))
        row = logits[0, -1].astype(np.float64)
        total += np.log(np.exp(row - row.max()).sum()) + row.max() - row[ids[j]]
    return total / n


@pytest.mark.parametrize("stride", [None, 1, 5, 16])
def test_loss_equals_the_per_token_reference(tok, stride):
    model = make_model(tok, dtype=np.float64)
    report = evaluate(model, tok, TEXT, stride=stride, batch_tokens=50)
    ids = [tok.eot_id] + tok.encode(TEXT)
    assert report.tokens == len(ids) - 1
    assert report.loss == pytest.approx(reference_loss(model, ids, 16, report.stride), rel=1e-12)
    assert report.stride == (stride or 8)
    assert report.min_context == 16 - report.stride + 1
    assert f"at least {report.min_context} tokens of context" in report.method


def test_stride_changes_the_context_not_the_coverage(tok):
    """Stride 1 gives each token the most context (the whole window), disjoint windows
    the least; both score the same tokens."""
    model = make_model(tok)
    full = evaluate(model, tok, TEXT, stride=1)
    disjoint = evaluate(model, tok, TEXT, stride=16)
    assert full.tokens == disjoint.tokens
    assert full.min_context == 16 and disjoint.min_context == 1
    assert full.loss != disjoint.loss


def test_batching_does_not_change_the_result(tok):
    model = make_model(tok)
    a = evaluate(model, tok, TEXT, batch_tokens=16)  # one window per batch
    b = evaluate(model, tok, TEXT, batch_tokens=100_000)  # all windows in one batch
    assert a.loss == pytest.approx(b.loss, rel=1e-6)


def test_bits_per_byte_perplexity_and_counts(tok):
    model = make_model(tok)
    report = evaluate(model, tok, TEXT)
    n_bytes = len(TEXT.encode("utf-8"))
    assert report.bytes == n_bytes != len(TEXT)  # the emoji and ç are several bytes
    assert report.bits_per_byte == pytest.approx(report.loss * report.tokens / math.log(2) / n_bytes, rel=1e-12)
    assert report.perplexity == pytest.approx(math.exp(report.loss))
    assert report.unigram_bits_per_byte == pytest.approx(
        report.unigram_loss * report.tokens / math.log(2) / n_bytes, rel=1e-12)
    same = evaluate(model, tok, np.array(tok.encode(TEXT)))
    assert same.loss == report.loss and same.bytes == report.bytes


def test_a_fresh_model_scores_about_ln_vocab(tok):
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=16))
    report = evaluate(model, tok, TEXT)
    assert report.loss == pytest.approx(math.log(tok.vocab_size), abs=0.05)


def test_unigram_baseline_own_frequencies_is_the_empirical_entropy():
    tok = BPETokenizer.train("", 256)
    text = "aaab"  # p(a) = 3/4, p(b) = 1/4
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=8, block_size=8))
    report = evaluate(model, tok, text)
    assert report.unigram_loss == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel=1e-12)
    assert "own frequencies" in report.unigram_method


def test_unigram_baseline_from_training_tokens_is_add_one_smoothed():
    tok = BPETokenizer.train("", 256)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=8, block_size=8))
    train = np.frombuffer(b"aaaaaab", dtype=np.uint8).astype(np.int64)  # 6 a, 1 b over 257 ids
    report = evaluate(model, tok, "abc", train_tokens=train)
    V, M = tok.vocab_size, 7
    p = {"a": 7 / (M + V), "b": 2 / (M + V), "c": 1 / (M + V)}
    assert report.unigram_loss == pytest.approx(-np.mean([math.log(p[c]) for c in "abc"]), rel=1e-12)
    assert "add-one" in report.unigram_method


def test_progress_and_cancel(tok):
    model = make_model(tok)
    calls = []
    report = evaluate(model, tok, TEXT, progress=lambda done, total: calls.append((done, total)), batch_tokens=32)
    assert len(calls) > 2 and calls[-1] == (report.tokens, report.tokens)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    asked = []
    with pytest.raises(EvalCancelled):
        evaluate(model, tok, TEXT, cancel=lambda: asked.append(1) or len(asked) > 2, batch_tokens=32)
    assert len(asked) == 3


def test_empty_text_is_a_data_error(tok):
    with pytest.raises(DataError):
        evaluate(make_model(tok), tok, "")


def test_one_token_text_is_scored_from_the_boundary(tok):
    report = evaluate(make_model(tok), tok, "R")
    assert report.tokens == 1 and report.bytes == 1


def test_report_dict_and_markdown(tok):
    report = evaluate(make_model(tok), tok, TEXT)
    d = report.to_dict()
    for key in ("loss", "perplexity", "bits_per_byte", "tokens", "bytes", "unigram_loss",
                "unigram_bits_per_byte", "seconds", "method"):
        assert key in d
    json.dumps(d, allow_nan=False)
    md = report.to_markdown()
    assert f"{report.loss:.4f}" in md and f"{report.unigram_bits_per_byte:.4f}" in md and "stride" in md


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture
def run(tmp_path, tok):
    from mnemos import checkpoint
    from mnemos.data import content_hash
    from mnemos.optim import AdamW

    train_file = tmp_path / "train.txt"
    train_file.write_text(TEXT, encoding="utf-8")
    test_file = tmp_path / "test.txt"
    test_file.write_text(TEXT[::-1][:200], encoding="utf-8")
    model = make_model(tok)
    state = {"step": 42, "data": str(train_file), "data_hash": content_hash(TEXT), "val_data": None}
    folder = tmp_path / "run"
    checkpoint.save_checkpoint(folder, model, tok, model.config, TrainConfig(tokenizer_vocab=299), AdamW(model.params),
                               state)
    return folder, test_file, train_file, model


def test_evaluate_checkpoint_uses_the_training_text_for_the_baseline(run, tok):
    folder, test_file, train_file, model = run
    report = evaluate_checkpoint(folder, test_file)
    direct = evaluate(model, tok, test_file.read_text(encoding="utf-8"))
    assert report.loss == pytest.approx(direct.loss, rel=1e-6)
    assert report.step == 42 and report.data == str(test_file) and report.checkpoint == str(folder)
    assert "training text" in report.unigram_method
    train_ids = np.array(tok.encode(TEXT))[: int(len(tok.encode(TEXT)) * 0.9)]  # the 90% it trained on
    counts = np.bincount(train_ids, minlength=tok.vocab_size)
    p = (counts + 1) / (counts.sum() + tok.vocab_size)
    test_ids = tok.encode(test_file.read_text(encoding="utf-8"))
    assert report.unigram_loss == pytest.approx(-np.mean(np.log(p[test_ids])), rel=1e-9)
    train_file.write_text("changed", encoding="utf-8")  # a changed training text is not used
    assert "own frequencies" in evaluate_checkpoint(folder, test_file).unigram_method


def test_evaluate_checkpoint_bad_data_is_a_data_error(run):
    folder, test_file, *_ = run
    with pytest.raises(DataError):
        evaluate_checkpoint(folder, test_file.parent / "missing.txt")
    with pytest.raises(DataError):
        evaluate_checkpoint(folder, test_file.parent)


def test_save_report_writes_markdown_and_history(run):
    folder, test_file, *_ = run
    assert eval_history(folder) == []
    first = evaluate_checkpoint(folder, test_file)
    path = save_report(folder, first)
    second = evaluate_checkpoint(folder, test_file, stride=1)
    save_report(folder, second)
    history = eval_history(folder)
    assert [h["stride"] for h in history] == [first.stride, 1]
    assert history[0]["loss"] == first.loss
    md = path.read_text(encoding="utf-8")
    assert md.startswith("# Evaluation") and "## History" in md and md.count(f"`{test_file}`") >= 3
    with open(folder / "evals.jsonl", "a", encoding="utf-8") as f:
        f.write('{"loss": "odd"}\n{"loss": 1.0, "torn')  # a hand-edited line, then a crash mid-write
    assert len(eval_history(folder)) == 3
    save_report(folder, first)  # the odd line shows as "?" in the table
    assert "| ? |" in path.read_text(encoding="utf-8") and len(eval_history(folder)) == 4
    assert EvalReport(**history[1]).to_dict() == history[1]
