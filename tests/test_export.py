"""Hugging Face export: name mapping, parity of GPT2LMHeadModel with Mnemos, the
safetensors writer, and a full export loaded with AutoModelForCausalLM / AutoTokenizer."""

import json
import struct

import numpy as np
import pytest

from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError, MnemosError
from mnemos.export import (export_hf, from_hf_state_dict, hf_config, load_safetensors, save_safetensors,
                           to_hf_state_dict)
from mnemos.nn import GPT
from mnemos.tokenizer import BPETokenizer

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 6
UNICODE = "naïve café — 東京 🙂 emoji, ﬁ ligature, tabs\tand  spaces\n"


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT + UNICODE, 320)


@pytest.fixture(scope="module")
def model(tok):
    m = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=24), seed=3)
    m.params.data *= 4  # far from uniform, so parity checks more than near-constant logits
    for name in m.params.names:
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            m.params.view(name)[...] = 1 + 0.1 * np.arange(32) / 32
    return m


def hf_model(model):
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config(model.config)))
    state = {k: torch.from_numpy(v.copy()) for k, v in to_hf_state_dict(model).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(".attn.bias") for k in missing)  # a buffer in some versions
    return hf.eval(), torch


def test_names_follow_gpt2_and_round_trip(model):
    d = to_hf_state_dict(model)
    assert "transformer.wte.weight" in d and "transformer.wpe.weight" in d and "lm_head.weight" in d
    assert d["transformer.h.1.attn.c_attn.weight"].shape == (32, 96)  # Conv1D layout (in, out)
    assert d["transformer.h.0.mlp.c_proj.weight"].shape == (128, 32)
    np.testing.assert_array_equal(d["lm_head.weight"], d["transformer.wte.weight"])
    back = from_hf_state_dict(d, model.config)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value)


def test_from_hf_state_dict_refuses_foreign_or_untied_weights(model):
    d = to_hf_state_dict(model)
    with pytest.raises(CheckpointError, match="tied"):
        from_hf_state_dict(d | {"lm_head.weight": d["lm_head.weight"] + 1}, model.config)
    with pytest.raises(CheckpointError):
        from_hf_state_dict({k: v for k, v in d.items() if "ln_f" not in k}, model.config)
    with pytest.raises(CheckpointError):
        from_hf_state_dict(d | {"score.weight": np.zeros(3)}, model.config)
    bigger = ModelConfig(vocab_size=model.config.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    with pytest.raises(CheckpointError):
        from_hf_state_dict(d, bigger)


def test_gpt2lmheadmodel_gives_the_same_logits_and_loss(model, tok):
    hf, torch = hf_model(model)
    ids = np.array([tok.encode(TEXT)[:24], tok.encode(TEXT)[30:54]])
    targets = np.array([tok.encode(TEXT)[1:25], tok.encode(TEXT)[31:55]])
    logits, loss = model.forward(ids, targets)
    with torch.no_grad():
        out = hf(torch.from_numpy(ids))
    np.testing.assert_allclose(out.logits.numpy(), logits, atol=2e-5, rtol=1e-5)
    hf_loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]),
                                                torch.from_numpy(targets).reshape(-1))
    assert float(loss) == pytest.approx(float(hf_loss), abs=1e-5)


def test_hf_config_is_a_valid_gpt2config(model):
    transformers = pytest.importorskip("transformers", reason="checking GPT2Config needs transformers")
    cfg = transformers.GPT2Config(**hf_config(model.config, eot_id=7))
    assert (cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head) == (24, 32, 2, 2)
    assert cfg.vocab_size == model.config.vocab_size and cfg.activation_function == "gelu_new"
    assert cfg.eos_token_id == cfg.bos_token_id == 7 and cfg.tie_word_embeddings
    assert hf_config(model.config)["eos_token_id"] == model.config.vocab_size - 1


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"b.weight": rng.normal(size=(3, 5)).astype(np.float32), "a": np.arange(7, dtype=np.int64),
               "half": rng.normal(size=(2, 2, 2)).astype(np.float16), "scalar": np.array(2.5, dtype=np.float64),
               "empty": np.zeros((0, 4), np.float32), "mask": np.array([True, False])}
    path = tmp_path / "t.safetensors"
    save_safetensors(path, tensors, {"format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"format": "pt"}
    assert header["b.weight"] == {"dtype": "F32", "shape": [3, 5], "data_offsets": header["b.weight"]["data_offsets"]}
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == len(raw) - 8 - n
    back = load_safetensors(path)
    assert back.keys() == tensors.keys()
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and back[k].shape == tensors[k].shape
        np.testing.assert_array_equal(back[k], tensors[k])


def test_safetensors_library_reads_ours_and_we_read_its(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="cross-checking the format needs safetensors")
    tensors = {"x": np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32),
               "y": np.arange(10, dtype=np.int32)}
    save_safetensors(tmp_path / "ours.safetensors", tensors)
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    ours = load_safetensors(tmp_path / "theirs.safetensors")
    for k in tensors:
        np.testing.assert_array_equal(theirs[k], tensors[k])
        np.testing.assert_array_equal(ours[k], tensors[k])


def test_a_corrupt_safetensors_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError):
        load_safetensors(tmp_path / "bad.safetensors")


# --------------------------------------------------------------------------- export_hf


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, tok):
    from mnemos import checkpoint as checkpoint_mod
    from mnemos.optim import AdamW

    run = tmp_path_factory.mktemp("run") / "ckpt"
    train_cfg = TrainConfig(tokenizer_vocab=320, max_steps=10)
    checkpoint_mod.save_checkpoint(run, model, tok, model.config, train_cfg, AdamW(model.params),
                                   {"step": 10, "best_val_loss": None})
    return run


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export_hf(checkpoint, tmp_path_factory.mktemp("export") / "hf")


def test_export_writes_the_hugging_face_files(exported, model):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "vocab.json",
            "merges.txt", "tokenizer_config.json", "special_tokens_map.json"} <= names
    weights = load_safetensors(exported / "model.safetensors")
    assert "lm_head.weight" not in weights  # tied, as save_pretrained writes it
    for name, value in to_hf_state_dict(model).items():
        if name != "lm_head.weight":
            np.testing.assert_array_equal(weights[name], value)
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_positions"] == 24


def test_exported_weights_load_with_the_safetensors_library(exported, model):
    st = pytest.importorskip("safetensors.numpy", reason="reading the export with safetensors needs it")
    weights = st.load_file(str(exported / "model.safetensors"))
    np.testing.assert_array_equal(weights["transformer.h.1.mlp.c_fc.weight"],
                                  model.state_dict()["h.1.mlp.c_fc.weight"])
    assert set(weights) == set(to_hf_state_dict(model)) - {"lm_head.weight"}


def test_auto_model_from_pretrained_scores_a_text_like_mnemos_evaluate(exported, model, tok):
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.evaluate import evaluate, sliding_windows

    hf = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    text = TEXT[:300] + UNICODE
    report = evaluate(model, tok, text)
    seq = np.array([tok.eot_id] + tok.encode(text))
    starts, first, W = sliding_windows(len(seq) - 1, 24)
    assert len(starts) > 3  # several windows: the comparison covers the sliding
    total = 0.0
    with torch.no_grad():
        for a, f in zip(starts, first):
            logits = hf(torch.from_numpy(seq[None, a:a + W])).logits[0].double()
            nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(seq[a + 1:a + W + 1]), reduction="none")
            total += float(nll[f:].sum())
    assert report.tokens == len(seq) - 1
    assert total / report.tokens == pytest.approx(report.loss, abs=1e-5)


def test_auto_tokenizer_gives_mnemos_ids(exported, tok):
    transformers = pytest.importorskip("transformers", reason="tokenizer parity needs transformers")
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
    for text in (TEXT[:200], UNICODE, "  leading spaces and 123 numbers!?"):
        assert hf_tok(text)["input_ids"] == tok.encode(text)
        assert hf_tok.decode(tok.encode(text)) == text
    assert hf_tok.eos_token_id == tok.eot_id


def test_hf_greedy_generate_equals_mnemos_generator(exported, model, tok):
    torch = pytest.importorskip("torch", reason="Hugging Face parity needs torch")
    transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs transformers")
    from mnemos.generate import Generator

    hf = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    prompt = tok.encode("First Citizen:\n")
    n = 24 - len(prompt)  # GPT-2 cannot go past its positions
    ours = [s.token_id for s in Generator(model, tok).stream(prompt, n, temperature=0)]
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, use_cache=True,
                          eos_token_id=None if tok.eot_id not in ours else tok.eot_id)
    assert out[0, len(prompt):].tolist() == ours


def test_the_common_generate_calls_neither_warn_nor_run_past_the_context(exported, tok, caplog):
    """generate(**inputs, max_new_tokens=n) without the max_length warning; generate(**inputs)
    and the text-generation pipeline with their defaults; a prompt longer than the window
    through the pipeline's handle_long_generation="hole". Every output fits in 24 positions."""
    torch = pytest.importorskip("torch", reason="generating with transformers needs torch")
    transformers = pytest.importorskip("transformers", reason="generating with transformers needs transformers")
    config = json.loads((exported / "generation_config.json").read_text())
    assert "max_length" not in config and config["max_new_tokens"] == 12
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
    inputs = hf_tok("First Citizen:", return_tensors="pt")
    n_prompt = inputs["input_ids"].shape[1]
    assert n_prompt <= 12
    caplog.clear()
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= n_prompt + 5 and "max_length" not in caplog.text
    with torch.no_grad():
        assert hf.generate(**inputs).shape[1] <= 24
    pipe = transformers.pipeline("text-generation", model=hf, tokenizer=hf_tok)
    assert pipe("First Citizen:")[0]["generated_text"].startswith("First Citizen:")
    long_prompt = TEXT[:200]
    assert len(hf_tok(long_prompt)["input_ids"]) > 24
    ids = pipe(long_prompt, handle_long_generation="hole", return_tensors=True)[0]["generated_token_ids"]
    assert 12 < len(ids) <= 24  # the prompt's end, then the new tokens, inside the window


def test_export_refuses_a_folder_with_other_files_but_replaces_a_previous_export(checkpoint, tmp_path, exported):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(MnemosError, match="notes.txt"):
        export_hf(checkpoint, busy)
    assert (busy / "notes.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1
    again = export_hf(checkpoint, exported)
    assert (again / "model.safetensors").is_file()
    assert not list(exported.parent.glob(".*exporting*"))


def test_export_of_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        export_hf(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_of_a_tokenizer_without_end_of_text(tmp_path):
    transformers = pytest.importorskip("transformers", reason="loading the export needs transformers")
    from mnemos.checkpoint import save_checkpoint
    from mnemos.optim import AdamW

    tok = BPETokenizer.train(TEXT, 260, special_tokens=())
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=16, block_size=8))
    save_checkpoint(tmp_path / "run", model, tok, model.config, TrainConfig(tokenizer_vocab=260), AdamW(model.params),
                    {"step": 0})
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] is None and config["vocab_size"] == 260
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(TEXT[:100])["input_ids"] == tok.encode(TEXT[:100])
    assert transformers.AutoModelForCausalLM.from_pretrained(out).config.n_positions == 8
