"""The see-inside views (``mnemos.inspect``): their numbers must be the model's and the
tokenizer's own, checked against definitions computed here and against peers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnemos.config import ModelConfig
from mnemos.errors import MnemosError
from mnemos.cli_views import (format_anatomy, format_attention, format_merge_tree, format_next_token, format_replay,
                              format_tokens)
from mnemos.inspect import (anatomy, attention_view, merge_tree, next_token_distribution, next_token_logits,
                            next_token_view, token_label, tokenize_view)
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune. Café crème, naïveté, 東京, 😀😀! ") * 8
HARD = "To be or not\n\tto be: café 😀 東京<|endoftext|>x\x00y e\u0301"


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 330)


@pytest.fixture(scope="module")
def model(tok):
    config = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_embd=32, block_size=24)
    m = GPT(config, seed=3)
    # Sharpen the random init so attention and the next-token distribution are far from
    # uniform: a stronger test of row sums, masking and the sampling filters.
    m.params.data *= 8
    return m


# --------------------------------------------------------------------------- tokens


def test_tokenize_view_places_every_token_in_the_text(tok):
    view = tokenize_view(tok, HARD)
    data = HARD.encode("utf-8")
    assert view.ids == tok.encode(HARD, allowed_special="all")
    assert b"".join(t.bytes for t in view.tokens) == data
    assert view.n_bytes == len(data) and view.n_chars == len(HARD) and view.n_tokens == len(view.ids)
    assert view.bytes_per_token == pytest.approx(len(data) / len(view.ids))
    offset = 0
    for t in view.tokens:
        assert (t.start, t.end) == (offset, offset + len(t.bytes))
        assert data[t.start:t.end] == t.bytes
        # the characters it touches contain its bytes
        chars = HARD[t.char_start:t.char_end].encode("utf-8")
        assert t.bytes in chars
        offset = t.end
    specials = [t for t in view.tokens if t.special]
    assert [t.text for t in specials] == ["<|endoftext|>"] and specials[0].id == tok.eot_id
    # every character is covered by a token, and token_at finds it
    for i, ch in enumerate(HARD):
        t = view.token_at(i)
        assert t is not None and t.char_start <= i < t.char_end
    assert view.token_at(len(HARD)) is None


def test_labels_are_visible_and_one_line():
    assert token_label(b" the\n") == "␣the↵"
    assert token_label("é".encode()[:1]) == "\\xc3"  # half a character stays visible
    assert token_label(b"\x00\x7f") == "\\x00\\x7f"
    assert "\n" not in token_label(b"\r\n\t")


def test_tokenize_view_json_and_text(tok):
    view = tokenize_view(tok, "To be, or not")
    data = json.loads(json.dumps(view.to_dict()))
    assert data["n_tokens"] == view.n_tokens and len(data["tokens"]) == view.n_tokens
    assert bytes.fromhex(data["tokens"][0]["bytes"]) == view.tokens[0].bytes
    text = format_tokens(view)
    assert f"{view.n_tokens} tokens" in text and str(view.tokens[-1].id) in text


# --------------------------------------------------------------------------- merges


def test_merge_tree_of_every_token_rebuilds_its_bytes(tok):
    ranks = {new_id: rank for rank, (_, new_id) in enumerate(tok.merges)}
    specials = {i: s for s, i in tok.special_tokens.items()}
    assert len(ranks) > 40  # the tokenizer really learned merges
    for token_id in range(tok.vocab_size):
        tree = merge_tree(tok, token_id)
        leaves = tree.leaves()
        if token_id in specials:
            assert tree.kind == "special" and tree.bytes == specials[token_id].encode()
            continue
        assert b"".join(leaf.bytes for leaf in leaves) == tok.token_bytes(token_id)
        assert all(leaf.kind == "byte" and leaf.id < 256 and len(leaf.bytes) == 1 for leaf in leaves)
        for node in _walk(tree):
            if node.kind == "merge":
                assert node.rank == ranks[node.id]
                assert node.bytes == node.children[0].bytes + node.children[1].bytes
                # a merge is built from tokens that existed before it
                assert all(c.id < node.id for c in node.children)
        json.dumps(tree.to_dict())


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def test_merge_tree_follows_the_learned_merges():
    # minbpe's example: aaabdaaabac with 3 merges gives aa=256, then (256, a)=257 ("aaa"?)
    tok = BPETokenizer.train("aaabdaaabac", 259)
    pairs = dict((new, pair) for pair, new in tok.merges)
    top = max(pairs)
    tree = merge_tree(tok, top)
    assert [c.id for c in tree.children] == list(pairs[top])
    assert tree.rank == 2 and tree.depth >= 2
    assert "merge #2" in format_merge_tree(tree)
    with pytest.raises(MnemosError):
        merge_tree(tok, tok.vocab_size)


# --------------------------------------------------------------------------- next token


def _reference(logits, temperature, top_k, top_p):
    """Temperature, then top-k, then top-p, by their definitions (float64)."""
    z = logits.astype(np.float64) / temperature
    if top_k:
        z = np.where(z < np.sort(z)[-top_k], -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None:
        order = np.argsort(-p, kind="stable")
        keep = np.zeros_like(p, dtype=bool)
        mass = 0.0
        for i in order:  # the smallest set of most likely tokens whose mass reaches top_p
            keep[i] = True
            mass += p[i]
            if mass >= top_p:
                break
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    return p


SETTINGS = [(1.0, None, None), (0.7, None, None), (1.6, 20, None), (1.0, 5, None),
            (0.8, None, 0.9), (1.2, 50, 0.5), (0.5, 3, 0.99), (1.0, None, 0.05)]


@pytest.mark.parametrize("temperature,top_k,top_p", SETTINGS)
def test_next_token_probabilities_are_the_reshaped_softmax(tok, temperature, top_k, top_p):
    logits = (np.random.default_rng(7).standard_normal(tok.vocab_size) * 3).astype(np.float32)
    view = next_token_distribution(logits, tok, temperature, top_k, top_p, k=tok.vocab_size)
    want = _reference(logits, temperature, top_k, top_p)
    got = np.zeros(tok.vocab_size)
    for c in view.candidates:
        got[c.id] = c.prob
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    raw = _reference(logits, 1.0, None, None)
    np.testing.assert_allclose([c.raw_prob for c in view.candidates], raw[[c.id for c in view.candidates]],
                               rtol=1e-9)
    nz = want[want > 0]
    assert view.entropy == pytest.approx(-(nz * np.log2(nz)).sum(), rel=1e-9)
    assert view.raw_entropy == pytest.approx(-(raw * np.log2(raw)).sum(), rel=1e-9)
    assert view.kept == int((want > 0).sum())
    assert view.effective_choices == pytest.approx(2 ** view.entropy)
    # candidates come in the model's order: logits descending
    assert [c.logit for c in view.candidates] == sorted((c.logit for c in view.candidates), reverse=True)


@pytest.mark.parametrize("temperature,top_k,top_p", SETTINGS)
def test_next_token_probabilities_match_hugging_face_warpers(tok, temperature, top_k, top_p):
    torch = pytest.importorskip("torch", reason="PyTorch is the peer for the sampling filters")
    generation = pytest.importorskip("transformers.generation.logits_process",
                                     reason="transformers' logits warpers are the reference")
    logits = (np.random.default_rng(11).standard_normal(tok.vocab_size) * 3).astype(np.float32)
    scores = torch.tensor(logits, dtype=torch.float64)[None]
    scores = generation.TemperatureLogitsWarper(temperature)(None, scores)
    if top_k:
        scores = generation.TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = generation.TopPLogitsWarper(top_p)(None, scores)
    want = torch.softmax(scores, dim=-1)[0].numpy()
    view = next_token_distribution(logits, tok, temperature, top_k, top_p, k=tok.vocab_size)
    got = np.zeros(tok.vocab_size)
    for c in view.candidates:
        got[c.id] = c.prob
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_next_token_view_reads_the_last_position_of_the_context(model, tok):
    ids = tok.encode(TEXT[:400])
    T = model.config.block_size
    assert len(ids) > T  # longer than the context: only the last block_size ids count
    logits, _ = model.forward(np.array([ids[-T:]]))
    np.testing.assert_array_equal(next_token_logits(model, ids), logits[0, -1])
    view = next_token_view(model, tok, ids, temperature=0.9, top_k=10, k=5)
    assert len(view.candidates) == 5
    assert view.candidates[0].id == int(np.argmax(logits[0, -1]))
    assert sum(c.prob for c in view.candidates) <= 1.0 + 1e-9
    marked = next_token_distribution(logits[0, -1], tok, chosen=view.candidates[1].id, k=5)
    assert [c.chosen for c in marked.candidates] == [False, True, False, False, False]
    assert "entropy" in format_next_token(view) and view.candidates[0].label in format_next_token(view)
    json.loads(json.dumps(view.to_dict()))
    with pytest.raises(MnemosError):
        next_token_view(model, tok, [])


# --------------------------------------------------------------------------- attention


def test_attention_rows_sum_to_one_and_are_causal(model, tok):
    view = attention_view(model, tok, "To be, or not to be, that is the question")
    L, H = model.config.n_layer, model.config.n_head
    T = len(view.ids)
    assert view.weights.shape == (L, H, T, T) and view.weights.dtype == np.float32
    np.testing.assert_allclose(view.weights.sum(-1), 1.0, atol=1e-5)
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.all(view.weights[..., upper] == 0)
    assert np.all(view.weights >= 0)
    # far from uniform: the test would notice a map that ignores the scores
    assert view.weights[..., ~upper].std() > 0.05
    assert view.labels == [token_label(tok.token_bytes(i)) for i in view.ids]
    assert view.truncated == 0
    # the first query can only read itself
    np.testing.assert_allclose(view.weights[..., 0, 0], 1.0, atol=1e-6)
    dist = view.head_summary()
    assert dist.shape == (L, H) and np.all(dist >= 0) and np.all(dist <= T - 1)


def test_attention_keeps_the_last_block_size_tokens(model, tok):
    text = TEXT[:300]
    ids = tok.encode(text)
    view = attention_view(model, tok, text)
    T = model.config.block_size
    assert view.ids == ids[-T:] and view.truncated == len(ids) - T
    np.testing.assert_allclose(view.weights.sum(-1), 1.0, atol=1e-5)


def test_attention_and_logits_match_hugging_face_gpt2(model, tok):
    torch = pytest.importorskip("torch", reason="PyTorch runs the Hugging Face reference")
    transformers = pytest.importorskip("transformers", reason="GPT2LMHeadModel is the reference")
    from mnemos import export
    config = transformers.GPT2Config(**export.hf_config(model.config))
    hf = transformers.GPT2LMHeadModel._from_config(config, attn_implementation="eager")
    hf.load_state_dict({k: torch.tensor(v) for k, v in export.to_hf_state_dict(model).items()}, strict=False)
    hf.eval()
    view = attention_view(model, tok, "whether 'tis nobler in the mind")
    with torch.no_grad():
        out = hf(torch.tensor([view.ids]), output_attentions=True)
    want = np.stack([a[0].numpy() for a in out.attentions])
    np.testing.assert_allclose(view.weights, want, atol=2e-5)
    np.testing.assert_allclose(next_token_logits(model, view.ids), out.logits[0, -1].numpy(), rtol=1e-4, atol=1e-4)


def test_format_attention(model, tok):
    view = attention_view(model, tok, "To be, or not")
    summary = format_attention(view)
    assert len(summary.splitlines()) == 1 + model.config.n_layer * model.config.n_head
    heat = format_attention(view, layer=1, head=2).splitlines()
    assert len(heat) == 1 + 3 + len(view.ids)  # title, 3 rows of key labels, one row per query
    assert heat[0].startswith("layer 1 head 2")  # numbered from 1, as the app numbers them
    assert summary.splitlines()[1].split()[:2] == ["1", "1"]
    for layer, head in ((model.config.n_layer + 1, 1), (0, 1), (1, 0)):
        with pytest.raises(MnemosError, match="count from 1"):
            format_attention(view, layer=layer, head=head)
    data = json.loads(json.dumps(view.to_dict()))
    assert np.array(data["weights"]).shape == view.weights.shape


# --------------------------------------------------------------------------- anatomy


def test_anatomy_counts_add_up_to_the_model(model):
    root = anatomy(model)
    config = model.config
    assert root.params == model.params.count == config.num_params()
    leaves = [c for c in root.walk() if not c.children]
    tensors = [c for c in leaves if c.kind == "tensor"]
    assert sorted(c.name for c in tensors) == sorted(model.params.names)
    assert sum(c.params for c in leaves) == config.num_params()
    for node in root.walk():  # every inner node is the sum of its children
        if node.children:
            assert node.params == sum(c.params for c in node.children)
            assert node.flops == sum(c.flops for c in node.children)
    assert sum(c.share for c in root.children) == pytest.approx(1.0)
    names = [c.name for c in root.children]
    assert names == ["wte", "wpe", *(f"h.{i}" for i in range(config.n_layer)), "ln_f", "lm_head"]
    block = root.find("h.1")
    assert [c.name for c in block.children] == ["h.1.ln_1", "h.1.attn", "h.1.ln_2", "h.1.mlp"]
    C = config.n_embd
    assert block.params == 12 * C * C + 13 * C
    for t in tensors:
        assert t.shape == model.params.shapes[t.name]


def test_anatomy_flops_per_token(model):
    C, L, T, V = model.config.n_embd, model.config.n_layer, model.config.block_size, model.config.vocab_size
    root = anatomy(model)
    # 2 FLOPs per multiply-add: 12·C² weights per block, QKᵀ and A·V over T keys, the tied head
    assert root.flops == L * (2 * 12 * C * C + 4 * T * C) + 2 * C * V
    assert root.find("h.0.attn.c_attn").flops == 2 * C * 3 * C
    assert root.find("h.0.mlp").flops == 2 * 8 * C * C
    assert root.find("lm_head").flops == 2 * C * V and root.find("lm_head").params == 0


def test_anatomy_weight_statistics(model):
    root = anatomy(model)
    wte = model.params.view("wte").astype(np.float64)
    s = root.find("wte").stats
    assert s["norm"] == pytest.approx(np.linalg.norm(wte), rel=1e-6)
    assert s["mean"] == pytest.approx(wte.mean(), rel=1e-5, abs=1e-9)
    assert s["std"] == pytest.approx(wte.std(), rel=1e-5)
    assert s["absmax"] == pytest.approx(np.abs(wte).max(), rel=1e-6)
    attn = np.concatenate([model.params.view(n).astype(np.float64).ravel() for n in model.params.names
                           if n.startswith("h.0.attn.")])
    s = root.find("h.0.attn").stats
    assert s["norm"] == pytest.approx(np.linalg.norm(attn), rel=1e-6)
    assert s["std"] == pytest.approx(attn.std(), rel=1e-5)
    assert root.find("h.0.attn.scores").stats is None  # compute only: no weights


def test_anatomy_from_a_config_and_from_weights(model):
    config = model.config
    shapes_only = anatomy(config)
    assert shapes_only.params == config.num_params()
    assert all(c.stats is None for c in shapes_only.walk())
    full = anatomy(model)
    assert [(c.name, c.params, c.flops) for c in shapes_only.walk()] == \
        [(c.name, c.params, c.flops) for c in full.walk()]
    from_npz = anatomy(config, params=model.state_dict())
    assert from_npz.find("h.1.mlp").stats == pytest.approx(full.find("h.1.mlp").stats)
    text = format_anatomy(full)
    assert f"{config.num_params():,}" in text and "h.0.attn" in text
    json.loads(json.dumps(full.to_dict()))


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny run trained for a few steps: its metrics.jsonl holds the replay samples."""
    from mnemos.config import TrainConfig
    from mnemos.trainer import Trainer

    root = tmp_path_factory.mktemp("inspect-run")
    data = root / "train.txt"
    data.write_text(TEXT * 3, encoding="utf-8")
    model_cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)
    train_cfg = TrainConfig(tokenizer_vocab=280, batch_size=4, max_steps=12, warmup_steps=2, eval_interval=4,
                            eval_steps=1, sample_tokens=12, sample_prompt="To be", workers=1)
    done = Trainer.new(model_cfg, train_cfg, data, out_dir=root / "run").run()
    assert done.reason == "finished"
    return root / "run"


def test_replay_plays_back_every_evaluation(run_dir):
    from mnemos.checkpoint import read_metrics
    from mnemos.inspect import replay

    frames = replay(run_dir)
    rows = read_metrics(run_dir)
    samples = [r for r in rows if r["event"] == "sample"]
    evals = {r["step"]: r for r in rows if r["event"] == "eval"}
    assert len(frames) == len(samples) >= 3
    assert [f.step for f in frames] == sorted(r["step"] for r in samples)
    for f in frames:
        assert f.prompt == "To be" and f.text
        assert f.val_loss == pytest.approx(evals[f.step]["val_loss"])
        assert f.train_loss == pytest.approx(evals[f.step]["train_loss"])
    text = format_replay(frames)
    assert all(f"step {f.step}" in text for f in frames)
    assert replay(run_dir.parent) == [] and "no samples" in format_replay([])


def _cli(capsys, *args):
    from mnemos.cli import main

    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_inspect_json(run_dir, capsys):
    from mnemos.checkpoint import load_checkpoint

    code, out, err = _cli(capsys, "--checkpoint", run_dir, "--prompt", "To be, or not", "--top-k", 5,
                          "--top", 7, "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    ckpt = load_checkpoint(run_dir)
    assert [t["id"] for t in data["tokens"]["tokens"]] == ckpt.tokenizer.encode("To be, or not")
    cands = data["next_token"]["candidates"]
    assert len(cands) == 7 and data["next_token"]["kept"] == 5
    assert sum(c["prob"] for c in cands) == pytest.approx(1.0)
    w = np.array(data["attention"]["weights"])
    assert w.shape[:2] == (1, 2)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-3)
    assert data["anatomy"]["params"] == ckpt.model_config.num_params()


def test_cli_inspect_text_and_replay(run_dir, capsys):
    code, out, _ = _cli(capsys, "--checkpoint", run_dir, "--prompt", "To be", "--layer", 1, "--head", 2)
    assert code == 0
    for part in ("== tokens ==", "== next token ==", "== attention ==", "layer 1 head 2", "== anatomy =="):
        assert part in out
    code, out, _ = _cli(capsys, "--checkpoint", run_dir, "--replay", "--json")
    assert code == 0
    frames = json.loads(out)["replay"]
    assert len(frames) >= 3 and all(f["prompt"] == "To be" for f in frames)


@pytest.mark.parametrize("args", [("--checkpoint", "{missing}"), ("--layer", "0"),
                                  ("--layer", "9", "--head", "0"), ("--temperature", "-1"),
                                  ("--top-p", "1.5")])
def test_cli_inspect_user_errors(run_dir, capsys, tmp_path, args):
    args = [a.format(missing=tmp_path / "nope") for a in args]
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(run_dir), *args]
    code, out, err = _cli(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mnemos inspect: error:")


# --------------------------------------------------------------------------- the guide


def test_the_guide_names_code_that_exists():
    """Every file, class, method and function the how-it-works guide points to exists."""
    import importlib
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    guide = root / "docs" / "how-it-works.md"
    if not guide.is_file():
        pytest.skip("docs/ is not next to the tests (installed package)")
    text = guide.read_text(encoding="utf-8")
    bullets = re.findall(r"^- Code:(.*?)(?=^\S|^- |\Z)", text, flags=re.M | re.S)
    assert len(bullets) >= 9  # one per step at least
    checked = 0
    for bullet in bullets:
        tokens = re.findall(r"`([^`]+)`", bullet)
        paths = [t for t in tokens if re.fullmatch(r"[\w/]+\.py", t)]
        for path in paths:
            assert (root / path).is_file(), path
        modules = [importlib.import_module(p[:-3].replace("/", ".")) for p in paths if p.startswith("mnemos/")]
        owner = None
        for token in tokens:
            if re.fullmatch(r"[A-Z]\w*(\.\w+)?", token) or re.fullmatch(r"_?[a-z0-9]+(_[a-z0-9]+)+_?", token):
                name, _, attr = token.partition(".")
                found = [getattr(m, name) for m in modules if hasattr(m, name)]
                if not found and owner is not None and hasattr(owner, name):  # a method of the class before
                    found = [owner]
                assert found, f"{token} is in none of {paths}"
                owner = found[0] if found[0] is not owner else owner
                assert not attr or hasattr(owner, attr), token
                checked += 1
            elif re.fullmatch(r"\.\w+", token):
                assert owner is not None and hasattr(owner, token[1:]), token
                checked += 1
    assert checked >= 30
