"""Hugging Face import: random GPT-2s saved by ``transformers`` (and by hand, sharded)
come in with the same tokens, logits, loss and greedy text; bad folders get one line."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from mnemos.checkpoint import load_checkpoint
from mnemos.cli import main
from mnemos.errors import MnemosError
from mnemos.export import export_hf, save_safetensors
from mnemos.generate import Generator
from mnemos.hf_import import hf_tokenizer, import_hf
from mnemos.safetensors_io import read_header
from hf_models import TEXT, save_gpt2, save_llama

torch = pytest.importorskip("torch", reason="the import is checked against transformers, which needs torch")
transformers = pytest.importorskip("transformers", reason="the import is checked against transformers")
tokenizers = pytest.importorskip("tokenizers", reason="the test tokenizers are trained with Hugging Face tokenizers")



@pytest.fixture(scope="module")
def hf_dir(hf_gpt2_dir):
    return hf_gpt2_dir


@pytest.fixture(scope="module")
def run(hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "imported"
    import_hf(hf_dir, out)
    return load_checkpoint(out)


def _hf(folder):
    return transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()


def test_tokens_match_hugging_face_and_the_ids_are_permuted(hf_dir, run):
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    _, perm = hf_tokenizer(hf_dir)
    assert hf_tok.convert_tokens_to_ids("!") == perm[ord("!")] == 1  # HF numbers bytes by its own table
    texts = [TEXT[:2000], "Zebra QUIZ\n\n  tabs\tand ünïcödé ∑ 🙂 <|endoftext|> x"]
    sample = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "shakespeare.txt"
    if sample.is_file():
        texts.append(sample.read_text(encoding="utf-8")[:200_000])
    for text in texts:
        ours = run.tokenizer.encode(text)
        theirs = hf_tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert [int(perm[i]) for i in ours] == theirs
        assert run.tokenizer.decode(ours) == text


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def arch_pair(request, hf_dir, run, tmp_path_factory):
    """(Hugging Face folder, its import) for GPT-2 and for a Llama with grouped-query attention."""
    if request.param == "gpt2":
        return hf_dir, run
    src = save_llama(tmp_path_factory.mktemp("hf") / "llama")
    out = tmp_path_factory.mktemp("runs") / "llama"
    report = import_hf(src, out)
    assert "grouped-query attention (2 key/value heads) imported as 4 full heads" in report.notes
    return src, load_checkpoint(out)


def test_logits_loss_and_greedy_text_match_transformers(arch_pair):
    src, run = arch_pair
    hf = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    _, perm = hf_tokenizer(src)
    ids = np.asarray([run.tokenizer.encode(TEXT)[:48]])
    logits, _ = run.model.forward(ids)
    with torch.no_grad():
        theirs = hf(torch.from_numpy(perm[ids])).logits.numpy()[:, :, perm]
    np.testing.assert_allclose(logits, theirs, atol=1e-4, rtol=1e-4)
    # transformers' loss shifts inside: compare on the same 47 predictions
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(torch.from_numpy(theirs[0, :-1]), torch.from_numpy(ids[0, 1:]))
    _, ours = run.model.forward(ids[:, :-1], ids[:, 1:])
    assert abs(float(ours) - float(ref)) < 1e-5
    prompt = run.tokenizer.encode("the king and")
    text = Generator(run.model, run.tokenizer).generate(prompt, max_new_tokens=20, temperature=0)
    with torch.no_grad():
        greedy = hf.generate(torch.tensor([perm[prompt].tolist()]), max_new_tokens=20, do_sample=False,
                             use_cache=True, pad_token_id=0, eos_token_id=None)
    inverse = np.argsort(perm)
    assert run.tokenizer.decode(inverse[greedy[0, len(prompt):].numpy()].tolist()) == text


def test_vocab_merges_files_sharded_and_bf16_weights_import_alike(hf_dir, run, tmp_path):
    src = save_gpt2(tmp_path / "bf16", dtype=torch.bfloat16, max_shard_size="20KB")
    assert (src / "model.safetensors.index.json").is_file()
    tok = json.loads((src / "tokenizer.json").read_text())
    (src / "tokenizer.json").unlink()
    (src / "vocab.json").write_text(json.dumps(tok["model"]["vocab"]))
    (src / "merges.txt").write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in tok["model"]["merges"]))
    import_hf(src, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.tokenizer == run.tokenizer
    _, perm = hf_tokenizer(src)
    ids = np.asarray([run.tokenizer.encode(TEXT)[:32]])
    with torch.no_grad():
        theirs = _hf(src)(torch.from_numpy(perm[ids])).logits.numpy()[:, :, perm]
    np.testing.assert_allclose(ckpt.model.forward(ids)[0], theirs, atol=1e-4, rtol=1e-4)


def test_hand_written_shards_and_a_mnemos_round_trip_keep_every_tensor(arch_pair, tmp_path):
    run = arch_pair[1]
    exported = export_hf(run.path, tmp_path / "export")
    weights = {k: v for k, v in _read_all(exported / "model.safetensors").items()}
    (exported / "model.safetensors").unlink()
    names = sorted(weights)
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_safetensors(exported / shard, {k: weights[k] for k in keys})
    (exported / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    import_hf(exported, tmp_path / "back")
    back = load_checkpoint(tmp_path / "back")
    assert back.tokenizer == run.tokenizer
    for name, value in run.model.state_dict().items():
        np.testing.assert_array_equal(back.model.state_dict()[name], value)


def _read_all(path):
    from mnemos.safetensors_io import read_tensor

    return {name: read_tensor(info) for name, info in read_header(path).items()}


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize("damage, message", [
    ("pickle_only", "pickle"),
    ("truncated", "truncated"),
    ("huge_header", "past the end"),
    ("no_tokenizer", "no tokenizer"),
    ("bert", "model_type 'bert' is not supported"),
    ("relu", "activation_function"),
    ("int8", "cannot be read as float32"),
    ("not_a_folder", "is not a folder"),
    ("missing_weight", "lack"),
])
def test_bad_folders_get_one_line_and_exit_2(hf_dir, tmp_path, capsys, damage, message):
    src = _copy(hf_dir, tmp_path / "src")
    weights = src / "model.safetensors"
    if damage == "pickle_only":
        weights.unlink()
        torch.save({"x": torch.zeros(2)}, src / "pytorch_model.bin")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "huge_header":
        header = json.dumps({"transformer.wte.weight": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6],
                                                        "data_offsets": [0, 4 * 10 ** 12]}}).encode()
        weights.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    elif damage == "no_tokenizer":
        (src / "tokenizer.json").unlink()
    elif damage in ("bert", "relu"):
        cfg = json.loads((src / "config.json").read_text())
        cfg.update({"bert": {"model_type": "bert"}, "relu": {"activation_function": "relu"}}[damage])
        (src / "config.json").write_text(json.dumps(cfg))
    elif damage == "int8":
        tensors = _read_all(weights)
        tensors["transformer.ln_f.weight"] = tensors["transformer.ln_f.weight"].astype(np.int8)
        save_safetensors(weights, tensors)
    elif damage == "not_a_folder":
        src = weights
    elif damage == "missing_weight":
        tensors = _read_all(weights)
        del tensors["transformer.h.1.mlp.c_fc.bias"]
        save_safetensors(weights, tensors)
    code, err = _cli(["import", "--from", str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_refuses_to_import_into_a_folder_that_holds_something(hf_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(MnemosError, match="not empty"):
        import_hf(hf_dir, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_cli_import_then_generate(hf_dir, tmp_path, capsys):
    assert main(["import", "--from", str(hf_dir), "--out", str(tmp_path / "run")]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(tmp_path / "run"), "--prompt", "the", "--max-new-tokens", "5",
                 "--seed", "1"]) == 0


# --------------------------------------------------------------------------- fine-tuning: train --init-from


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT * 3, encoding="utf-8")
    return path


def _train(capsys, *argv):
    code = main(["train", "--workers", "1", "--eval-interval", "2", "--eval-steps", "1", "--sample-tokens", "0",
                 "--batch-size", "2", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


def test_init_from_starts_from_the_imported_weights_and_tokenizer(run, text_file, tmp_path, capsys):
    code, err = _train(capsys, "--init-from", run.path, "--data", text_file, "--out", tmp_path / "ft",
                       "--max-steps", "2", "--block-size", "16", "--lr", "1e-12", "--min-lr", "0")
    assert code == 0, err
    tuned = load_checkpoint(tmp_path / "ft")
    assert tuned.tokenizer == run.tokenizer  # not trained again on the new text
    assert tuned.model_config.block_size == 16 and tuned.state["init_from"] == str(run.path.resolve())
    for name, value in run.model.state_dict().items():  # an lr of 1e-12 leaves them as they were
        want = value[:16] if name == "wpe" else value
        np.testing.assert_allclose(tuned.model.state_dict()[name], want, atol=1e-6)


def test_a_fine_tuning_run_resumes_bit_for_bit(run, text_file, tmp_path, capsys):
    common = ("--init-from", run.path, "--data", text_file, "--block-size", "16", "--seed", "3")
    assert _train(capsys, *common, "--out", tmp_path / "straight", "--max-steps", "4")[0] == 0
    assert _train(capsys, *common, "--out", tmp_path / "split", "--max-steps", "2")[0] == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--max-steps", "4"]) == 0
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert b.state["step"] == 4
    for name, value in a.model.state_dict().items():
        np.testing.assert_array_equal(b.model.state_dict()[name], value)


@pytest.mark.parametrize("argv, message", [
    (("--n-layer", "3"), "cannot change n-layer of a trained model"),
    (("--block-size", "4096"), "can only shrink"),
    (("--preset", "auto"), "cannot go with --preset auto"),
])
def test_init_from_refuses_a_new_shape(run, text_file, tmp_path, capsys, argv, message):
    code, err = _train(capsys, "--init-from", run.path, "--data", text_file, "--out", tmp_path / "x", *argv)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_an_imported_model_is_fine_tuned_not_resumed(run, text_file, capsys):
    code, err = _train(capsys, "--resume", run.path, "--data", text_file)
    assert code == 2 and f"--init-from {run.path}" in err


def test_the_memory_is_said_before_loading_and_too_little_refuses(hf_dir, tmp_path, monkeypatch, capsys):
    import mnemos.hf_import as hf_import

    heard = []
    import_hf(hf_dir, tmp_path / "a", say=heard.append)
    assert "parameters" in heard[0] and "of memory" in heard[0]
    monkeypatch.setattr(hf_import, "available_bytes", lambda: 100_000)
    code, err = _cli(["import", "--from", str(hf_dir), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "needs about" in err and "100,000" not in err and not (tmp_path / "b").exists()
