"""Checkpoint files that are damaged, edited or hostile (issue 13 #1, #7, #8): every one is
refused with one line, before anything it claims is allocated, and never silently converted."""

import io
import json
import zipfile

import numpy as np
import pytest

from mnemos import memory
from mnemos.checkpoint import load_checkpoint, read_state, save_checkpoint
from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import CheckpointError, MnemosError
from mnemos.nn import GPT
from mnemos.optim import AdamW
from mnemos.tokenizer import BPETokenizer
from mnemos.trainer import Trainer

MODEL_CFG = ModelConfig(vocab_size=258, n_layer=1, n_head=2, n_embd=16, block_size=8)
TRAIN_CFG = TrainConfig(tokenizer_vocab=257, max_steps=10)


@pytest.fixture
def run(tmp_path):
    tok = BPETokenizer.train("ab ab ab ab", 257)
    model = GPT(MODEL_CFG, seed=0)
    opt = AdamW(model.params)
    return save_checkpoint(tmp_path / "run", model, tok, MODEL_CFG, TRAIN_CFG, opt,
                           {"step": 5, "best_val_loss": None, "tokenizer": tok.fingerprint()})


def refused(path, *words, load=load_checkpoint):
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for w in words:
        assert w in message, message
    return message


def npy_bytes(shape, dtype="<f4", payload=b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def rewrite_npz(path, change):
    """Rewrite the members of an npz through ``change(members: dict[name, bytes])``."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    change(members)
    path.unlink()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def edit_json(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def test_an_array_claiming_186_gb_is_refused_from_its_header(run):
    rewrite_npz(run / "model.npz", lambda m: m.update({"wte.npy": npy_bytes((50_000_000_000,))}))
    refused(run, "model.npz does not fit its config.json", "'wte'", "(50000000000,)")


def test_a_small_zip_that_would_inflate_far_beyond_its_array_is_refused(run):
    def bomb(members):  # the right header, then 30 MB of zeros (a few KB compressed)
        members["wte.npy"] = npy_bytes((258, 16), payload=bytes(258 * 16 * 4 + (30 << 20)))

    rewrite_npz(run / "model.npz", bomb)
    assert (run / "model.npz").stat().st_size < 1 << 20
    refused(run, "member 'wte.npy' is larger than the array it declares")


def test_a_model_npz_larger_than_the_model_is_refused_before_it_is_read(run):
    with open(run / "model.npz", "ab") as f:
        f.truncate(64 << 20)
    refused(run, "model.npz is 67,108,864 bytes, more than a checkpoint of this model can hold")


@pytest.mark.parametrize("dtype, words", [("<f8", "dtype float64"), (">f4", "dtype >f4"), ("<f2", "dtype float16"),
                                          ("|O", "dtype object"), ("<U4", "dtype <U4")])
def test_weights_of_another_dtype_are_refused_not_converted(run, dtype, words):
    def change(members):
        members["wpe.npy"] = npy_bytes((8, 16), dtype, bytes(8 * 16 * np.dtype(dtype).itemsize))

    rewrite_npz(run / "model.npz", change)
    refused(run, words, "expected float32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_weights_are_refused(run, bad):
    def change(members):
        arr = np.load(io.BytesIO(members["wpe.npy"]))
        arr[3, 4] = bad
        buf = io.BytesIO()
        np.save(buf, arr)
        members["wpe.npy"] = buf.getvalue()

    rewrite_npz(run / "model.npz", change)
    refused(run, "NaN or infinite values in 'wpe'")


def test_missing_and_unexpected_members(run):
    rewrite_npz(run / "model.npz", lambda m: m.pop("wpe.npy"))
    refused(run, "model.npz lacks wpe")
    rewrite_npz(run / "model.npz", lambda m: m.update({"wpe.npy": npy_bytes((8, 16), payload=bytes(512)),
                                                         "evil.npy": npy_bytes((1,), payload=bytes(4))}))
    refused(run, "unexpected member 'evil.npy'")


@pytest.mark.parametrize("name, words", [("model.npz", "model.npz is a folder, not a file"),
                                         ("state.json", "state.json is a folder, not a file"),
                                         ("tokenizer.json", "tokenizer.json is a folder, not a file"),
                                         ("config.json", "is not a Mnemos checkpoint (no config.json)")])
def test_a_checkpoint_file_that_is_a_folder(run, name, words):
    (run / name).unlink()
    (run / name).mkdir()
    refused(run, words)


def test_config_json_nested_very_deep_or_with_huge_numbers(run, monkeypatch):
    (run / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    refused(run, "config.json is corrupt")
    (run / "config.json").write_text('{"format_version": 1, "model": {"n_layer": ' + "9" * 10_000 + "}}")
    refused(run, "config.json is corrupt")
    (run / "config.json").write_text(" " * (2 << 20))
    refused(run, "config.json is 2,097,152 bytes")


def test_a_config_json_asking_for_more_than_memory_is_refused_before_building_the_model(run, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 << 30)
    edit_json(run / "config.json", lambda c: c["model"].update(block_size=1_000_000))
    with pytest.raises(MnemosError, match=r"the model in .* needs about 3\.6 TB .*masks 3\.6 TB.*--block-size"):
        load_checkpoint(run)
    edit_json(run / "config.json", lambda c: c["model"].update(block_size=10 ** 20))
    refused(run, "block_size must be at most")


def test_an_edited_n_head_is_detected(run):
    """n_head changes no array's shape: state.json's record of the shape catches it."""
    edit_json(run / "config.json", lambda c: c["model"].update(n_head=4))
    refused(run, "config.json says n_head 4 but the model was saved with n_head 2", "edited")


def test_an_edited_tokenizer_is_refused(run):
    edit_json(run / "tokenizer.json", lambda t: t.update(merges=[[98, 97]]))
    refused(run, "tokenizer.json is not the tokenizer this model was trained with")


@pytest.mark.parametrize("field, value, words", [
    ("step", "12", "step must be an integer >= 0"),
    ("step", -3, "step must be an integer >= 0"),
    ("step", 1.5, "step must be an integer >= 0"),
    ("best_val_loss", "low", "best_val_loss must be a number or null"),
    ("elapsed_s", [1], "elapsed_s must be a number of seconds"),
    ("batch_rng", 7, "batch_rng must be an object"),
    ("tokens_seen", True, "tokens_seen must be an integer"),
    ("windows_drawn", -1, "windows_drawn must be an integer >= 0 or null"),
    ("windows_drawn", 10 ** 30, "windows_drawn must be an integer >= 0 or null"),  # past int64 in the sampler
    ("windows_drawn", "3", "windows_drawn must be an integer >= 0 or null"),
])
def test_state_json_with_wrong_types_is_refused(run, field, value, words):
    edit_json(run / "state.json", lambda s: s.update({field: value}))
    refused(run, words)
    refused(run, words, load=read_state)


@pytest.mark.parametrize("change, words", [
    (lambda m: m.update({"t.npy": npy_bytes((3,), "<i8", bytes(24))}), "'t' has dtype int64 and shape (3,)"),
    (lambda m: m.update({"t.npy": npy_bytes((), "<i8", (-4).to_bytes(8, "little", signed=True))}),
     "the step count t is negative"),
    (lambda m: m.update({"m.npy": npy_bytes((4,), "<f4", bytes(16))}), "'m' has dtype float32 and shape (4,)"),
    (lambda m: m.pop("v.npy"), "optimizer.npz lacks v"),
])
def test_optimizer_state_with_wrong_types_or_shapes_is_refused(run, change, words):
    rewrite_npz(run / "optimizer.npz", change)
    refused(run, words, load=lambda r: load_checkpoint(r).optimizer_state())


def test_metrics_rows_of_the_wrong_type_do_not_stop_a_resume(run, tmp_path):
    (tmp_path / "t.txt").write_text("ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab\n" * 4)
    edit_json(run / "state.json", lambda s: s.update(batch_rng=np.random.default_rng(0).bit_generator.state,
                                                     dropout_rng=np.random.default_rng(1).bit_generator.state,
                                                     data=str(tmp_path / "t.txt")))
    (run / "metrics.jsonl").write_text('{"step": "x"}\n{"step": [1]}\n{"step": 2, "loss": 1.0}\n[]\n')
    trainer = Trainer.from_checkpoint(run, max_steps=6, eval_interval=100, workers=1)
    done = trainer.run()
    assert done.reason == "finished" and done.step == 6
