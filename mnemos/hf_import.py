"""Hugging Face import: a ``transformers`` model folder as a Mnemos run folder.

The road back from :mod:`mnemos.export`. A folder written by ``save_pretrained`` (or
downloaded from the Hub) holds ``config.json``, the weights in ``model.safetensors``
(or shards listed by ``model.safetensors.index.json``) and the tokenizer
(``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``). ``import_hf`` checks
all of it before loading anything, then writes a run folder that ``eval``, ``generate``,
``inspect``, ``export`` and ``train --init-from`` use like any other.

Two translations are needed:

- **Token ids.** A Hugging Face byte-level BPE numbers its 256 byte tokens in the order of
  GPT-2's printable-character table (``"!"`` is id 0), Mnemos by byte value; merged tokens
  and special tokens may sit anywhere. The Mnemos tokenizer is rebuilt from the merges in
  rank order, and the embedding rows are permuted to match (``perm[mnemos_id] = hf_id``),
  so both models give the same distribution over the same texts.
- **Names.** GPT-2's are Mnemos' own (see ``mnemos.export.mnemos_name``); ``Conv1D``
  stores linear weights ``(in, out)`` as Mnemos does, so nothing is transposed.

``pytorch_model.bin`` is a pickle, which can run code when loaded: it is refused, with the
one-line ``transformers`` command that converts it to safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import ImportError_, MnemosError, TokenizerError
from mnemos.export import bytes_to_unicode
from mnemos.safetensors_io import TensorInfo, read_header, read_tensor

MAX_CONFIG_BYTES = 1 << 20  # config.json, index
MAX_TOKENIZER_BYTES = 64 << 20  # Llama 3's tokenizer.json is 9 MB, GPT-2's 1.4 MB
_CONVERT = ("python -c \"from transformers import AutoModelForCausalLM as M; "
            "M.from_pretrained('{src}').save_pretrained('{src}', safe_serialization=True)\"")


@dataclass
class ImportReport:
    """What was imported, for the CLI and the app to show."""

    out: Path
    model_type: str
    n_params: int
    vocab_size: int
    weight_bytes: int
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- folder


def _read_json(path: Path, what: str, limit: int = MAX_CONFIG_BYTES) -> dict:
    try:
        if path.stat().st_size > limit:
            raise ImportError_(f"{path} is {path.stat().st_size:,} bytes, too large for a {what}; is it the right file?")
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportError_(f"{path.parent} has no {path.name}; pass a Hugging Face model folder "
                           f"(written by save_pretrained)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ImportError_(f"{path} is not a readable JSON {what} ({type(exc).__name__}); download it again") from None
    if not isinstance(obj, dict):
        raise ImportError_(f"{path} is not a JSON object; it is not a {what}")
    return obj


def weight_files(src: Path) -> dict[str, TensorInfo]:
    """Every tensor of the folder's safetensors weights (one file or shards), headers only."""
    index = src / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ImportError_(f"{index} has no valid weight_map; download it again")
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            if Path(shard).name != shard:
                raise ImportError_(f"{index} names a shard outside the folder ({shard!r}); refusing it")
            if not (src / shard).is_file():
                raise ImportError_(f"{src} lacks the shard {shard} listed in {index.name}; download it")
    elif (src / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        shards = sorted(p.name for p in src.glob("*.safetensors"))
        if not shards:
            pickles = sorted(p.name for p in src.glob("*.bin")) + sorted(p.name for p in src.glob("*.pt"))
            if pickles:
                raise ImportError_(f"{src} has only {pickles[0]}, a pickle (loading it can run code), which Mnemos "
                                   f"never reads; convert it to safetensors: {_CONVERT.format(src=src)}")
            raise ImportError_(f"{src} has no model.safetensors; pass a Hugging Face model folder")
    tensors: dict[str, TensorInfo] = {}
    for shard in shards:
        for name, info in read_header(src / shard).items():
            if name in tensors:
                raise ImportError_(f"{src}: the tensor {name!r} is in two shards; the folder is inconsistent")
            tensors[name] = info
    return tensors


# --------------------------------------------------------------------------- tokenizer


def _byte_level(doc: dict, path: Path) -> None:
    """Refuse a tokenizer.json that is not GPT-2's byte-level BPE pipeline."""
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        raise ImportError_(f"{path}: the tokenizer is {model.get('type')!r}, not a byte-level BPE; Mnemos reads "
                           f"GPT-2 style tokenizers only")
    pre = doc.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or pre.get("use_regex", True) is not True:
        raise ImportError_(f"{path}: the pre-tokenizer is {pre.get('type')!r}, not GPT-2's ByteLevel with its "
                           f"pattern; Mnemos cannot encode like it")
    if pre.get("add_prefix_space"):
        raise ImportError_(f"{path}: the tokenizer adds a prefix space, which Mnemos does not do")
    if doc.get("normalizer") is not None:
        raise ImportError_(f"{path}: the tokenizer has a normalizer ({doc['normalizer'].get('type')!r}), which "
                           f"Mnemos does not apply")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ImportError_(f"{path}: the BPE uses {key} {model[key]!r}, which Mnemos does not support")
    for key in ("byte_fallback", "dropout", "ignore_merges"):
        if model.get(key):
            raise ImportError_(f"{path}: the BPE uses {key}, which Mnemos does not support")


def _merge_pairs(merges: list, path: Path) -> list[tuple[str, str]]:
    out = []
    for m in merges:
        pair = m.split(" ") if isinstance(m, str) else m
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) and s for s in pair)):
            raise ImportError_(f"{path}: merge {len(out)} ({m!r}) is not a pair of tokens; the file is corrupt")
        out.append((pair[0], pair[1]))
    return out


def _hf_tokenizer_parts(src: Path) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int], Path]:
    """``(vocab, merges, added tokens, source)`` from tokenizer.json or vocab.json + merges.txt."""
    path = src / "tokenizer.json"
    if path.is_file():
        doc = _read_json(path, "tokenizer", MAX_TOKENIZER_BYTES)
        _byte_level(doc, path)
        model = doc["model"]
        added = {t.get("content"): t.get("id") for t in doc.get("added_tokens") or [] if isinstance(t, dict)}
        return model.get("vocab"), _merge_pairs(model.get("merges") or [], path), added, path
    vocab_path, merges_path = src / "vocab.json", src / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        raise ImportError_(f"{src} has no tokenizer (tokenizer.json, or vocab.json and merges.txt); copy the "
                           f"model's tokenizer files into it")
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"cannot read {merges_path} ({type(exc).__name__}); download it again") from None
    merges = [ln for ln in lines if ln and not ln.startswith("#version")]
    return _read_json(vocab_path, "vocabulary", MAX_TOKENIZER_BYTES), _merge_pairs(merges, merges_path), {}, vocab_path


def hf_tokenizer(src: str | os.PathLike):
    """The Mnemos tokenizer of a Hugging Face folder and ``perm``: ``perm[mnemos_id]`` is
    the Hugging Face id of the same token (the embedding row to take)."""
    from mnemos.tokenizer import BPETokenizer

    vocab, merges, added, path = _hf_tokenizer_parts(Path(src))
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                              for i in vocab.values()):
        raise ImportError_(f"{path}: the vocabulary is not a map of token strings to ids; the file is corrupt")
    byte_char = bytes_to_unicode()
    char_byte = {c: b for b, c in enumerate(byte_char)}
    ids = {c: b for b, c in enumerate(byte_char)}  # token string -> Mnemos id
    pairs = []
    for rank, (a, b) in enumerate(merges):
        if a not in ids or b not in ids:
            raise ImportError_(f"{path}: merge {rank} ({a} {b}) uses a token no earlier merge makes; Mnemos needs "
                               f"merges in rank order")
        if a + b in ids:
            raise ImportError_(f"{path}: merge {rank} ({a} {b}) makes a token that already exists, which Mnemos "
                               f"does not support")
        pairs.append((ids[a], ids[b]))
        ids[a + b] = 256 + rank
    missing = [c for c in byte_char if c not in vocab]
    if missing:
        raise ImportError_(f"{path}: the vocabulary lacks byte tokens ({missing[0]!r} ...); it is not byte level")
    specials: dict[str, int] = {}  # name -> Hugging Face id, in id order
    for string, hf_id in sorted({**vocab, **{k: v for k, v in added.items() if isinstance(k, str)}}.items(),
                                key=lambda kv: kv[1]):
        if string in ids and string not in added:
            continue
        name = string if string in added else _decode_bytes(string, char_byte)
        if name is None:
            raise ImportError_(f"{path}: the token {string!r} (id {hf_id}) is neither made by a merge nor a "
                               f"special token; Mnemos cannot represent it")
        specials.setdefault(name, hf_id)
    try:
        tokenizer = BPETokenizer(pairs, list(specials))
    except TokenizerError as exc:
        raise ImportError_(f"{path}: {exc}") from None
    perm = np.empty(tokenizer.vocab_size, dtype=np.int64)
    for string, mnemos_id in ids.items():
        if string not in vocab:
            raise ImportError_(f"{path}: the merged token {string!r} has no id in the vocabulary; the file is corrupt")
        perm[mnemos_id] = vocab[string]
    for name, hf_id in specials.items():
        perm[tokenizer.special_tokens[name]] = hf_id
    if len(set(perm.tolist())) != len(perm):
        raise ImportError_(f"{path}: two tokens share one id; the vocabulary is corrupt")
    return tokenizer, perm


def _decode_bytes(string: str, char_byte: dict[str, int]) -> str | None:
    """A vocabulary string in GPT-2's byte characters as text (``None`` if it is not one)."""
    try:
        return bytes(char_byte[c] for c in string).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- GPT-2


def gpt2_model_config(cfg: dict, path: Path) -> ModelConfig:
    """The Mnemos shape of a ``GPT2Config``; options Mnemos does not implement are refused."""
    def need(key, ok, what):
        if key in cfg and not ok(cfg[key]):
            raise ImportError_(f"{path}: {key} = {cfg[key]!r} is not supported ({what})")

    need("activation_function", lambda v: v in ("gelu_new", "gelu_pytorch_tanh"), "Mnemos uses the tanh GELU")
    need("layer_norm_epsilon", lambda v: isinstance(v, (int, float)) and abs(v - 1e-5) < 1e-12,
         "Mnemos' LayerNorm eps is 1e-5")
    need("scale_attn_weights", lambda v: v is True, "attention is scaled by 1/sqrt(head size)")
    need("scale_attn_by_inverse_layer_idx", lambda v: not v, "no per-layer attention scaling")
    need("add_cross_attention", lambda v: not v, "a decoder-only model is needed")
    need("tie_word_embeddings", lambda v: v is not False, "the GPT-2 head is tied to the token embedding")
    need("n_inner", lambda v: v is None or v == 4 * cfg.get("n_embd", 0), "the MLP is 4 x n_embd wide")
    try:
        return ModelConfig(vocab_size=cfg["vocab_size"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                           n_embd=cfg["n_embd"], block_size=cfg["n_positions"], dropout=0.0)
    except KeyError as exc:
        raise ImportError_(f"{path} lacks {exc.args[0]!r}; it is not a complete GPT-2 config") from None
    except MnemosError as exc:
        raise ImportError_(f"{path}: {exc}") from None


def gpt2_weight_names(tensors: dict[str, TensorInfo], path: Path) -> dict[str, str]:
    """Mnemos name -> Hugging Face name, for the tensors of a GPT-2 folder (the head, if
    stored, and old causal-mask buffers are left out)."""
    from mnemos.export import mnemos_name

    out = {}
    for name in tensors:
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        full = name if name.startswith("transformer.") else "transformer." + name  # GPT2Model saves without it
        try:
            out[mnemos_name(full)] = name
        except KeyError:
            raise ImportError_(f"{path}: {name!r} is not a GPT-2 weight name") from None
    return out


# --------------------------------------------------------------------------- import


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def plan_import(src: str | os.PathLike):
    """Everything checked, nothing loaded: ``(model_config, tokenizer, perm, names, tensors)``."""
    src = Path(src)
    if not src.is_dir():
        raise ImportError_(f"{src} is not a folder; pass a Hugging Face model folder (written by save_pretrained)")
    cfg = _read_json(src / "config.json", "model config")
    model_type = cfg.get("model_type")
    if model_type != "gpt2":
        raise ImportError_(f"{src}: model_type {model_type!r} is not supported; Mnemos imports gpt2")
    model_cfg = gpt2_model_config(cfg, src / "config.json")
    tensors = weight_files(src)
    tokenizer, perm = hf_tokenizer(src)
    if int(perm.max()) >= model_cfg.vocab_size:
        raise ImportError_(f"{src}: the tokenizer has ids up to {int(perm.max())} but the model only "
                           f"{model_cfg.vocab_size} embedding rows; the folder mixes two models")
    names = gpt2_weight_names(tensors, src)
    from mnemos.nn.gpt import param_specs

    hf_cfg = ModelConfig(**{**model_cfg.to_dict()})
    for name, shape, _ in param_specs(hf_cfg):
        if name not in names:
            raise ImportError_(f"{src}: the weights lack {name!r} (Hugging Face {('transformer.' + name)!r}); "
                               f"the folder is incomplete")
        info = tensors[names[name]]
        if info.shape != shape:
            raise ImportError_(f"{src}: {names[name]} has shape {list(info.shape)}, config.json implies "
                               f"{list(shape)}; the folder mixes two models")
    extra = sorted(set(names) - {n for n, _, _ in param_specs(hf_cfg)})
    if extra:
        raise ImportError_(f"{src}: unexpected weight {names[extra[0]]!r}; this is not a plain GPT-2")
    model_cfg = ModelConfig(**{**model_cfg.to_dict(), "vocab_size": tokenizer.vocab_size})
    return model_cfg, tokenizer, perm, names, tensors


def import_hf(src: str | os.PathLike, out: str | os.PathLike, seed: int = 1337) -> ImportReport:
    """Import the Hugging Face model folder ``src`` as the new run folder ``out``."""
    from mnemos.checkpoint import is_checkpoint, save_checkpoint
    from mnemos.nn import GPT
    from mnemos.nn.gpt import param_specs
    from mnemos.nn.params import ParamStore

    out = Path(out)
    if is_checkpoint(out) or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise ImportError_(f"{out} already exists and is not empty; choose a new --out folder")
    model_cfg, tokenizer, perm, names, tensors = plan_import(src)
    n_params = model_cfg.num_params()
    need = 3 * 4 * n_params  # the weights, their gradient buffer's pages, the copies written to model.npz
    avail = _available_bytes()
    if avail is not None and need > avail:
        raise ImportError_(f"importing {n_params:,} parameters needs about {need / 2**30:.1f} GiB of memory and "
                           f"{avail / 2**30:.1f} GiB is available; close other programs or use a smaller model")
    params = ParamStore(param_specs(model_cfg))
    model = GPT(model_cfg, params=params, seed=seed)
    weight_bytes = 0
    for name in params.names:
        info = tensors[names[name]]
        weight_bytes += info.nbytes
        value = read_tensor(info)
        if name == "wte":
            value = value[perm]
        if not np.isfinite(value).all():
            raise ImportError_(f"{info.path}: {names[name]} holds NaN or infinite values; the model is broken")
        params.view(name)[...] = value
    train_cfg = TrainConfig(tokenizer_vocab=tokenizer.vocab_size - len(tokenizer.special_tokens), seed=seed,
                            workers=1)
    rng = np.random.default_rng(seed)
    state = {"step": 0, "best_val_loss": None, "tokens_seen": 0, "elapsed_s": 0.0,
             "batch_rng": rng.bit_generator.state, "dropout_rng": model.rng.bit_generator.state,
             "tokenizer": tokenizer.fingerprint(), "imported_from": str(Path(src).resolve()),
             "imported_model_type": "gpt2"}
    notes = []
    rows = len(perm)
    hf_rows = tensors[names["wte"]].shape[0]
    if hf_rows > rows:
        notes.append(f"{hf_rows - rows} embedding rows have no token in the tokenizer and were left out")
    try:
        save_checkpoint(out, model, tokenizer, model_cfg, train_cfg, None, state, metrics=[], best="drop")
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return ImportReport(out, "gpt2", n_params, tokenizer.vocab_size, weight_bytes, notes)
