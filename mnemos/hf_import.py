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

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import ImportError_, MnemosError, TokenizerError
from mnemos.export import bytes_to_unicode, llama_names, mnemos_name
from mnemos.fileio import open_regular, parse_json
from mnemos.memory import FLOAT, HEADROOM, available_bytes, format_bytes, inference_estimate
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


def _read_limited(path: Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file (a FIFO is refused, not waited on) of at most ``limit`` bytes."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ImportError_(f"{path} is {size:,} bytes, too large for a {what}; is it the right file?")
        return f.read(limit)


def _read_json(path: Path, what: str, limit: int = MAX_CONFIG_BYTES) -> dict:
    try:
        obj = parse_json(_read_limited(path, what, limit))
    except FileNotFoundError:
        raise ImportError_(f"{path.parent} has no {path.name}; pass a Hugging Face model folder "
                           f"(written by save_pretrained)") from None
    except (OSError, ValueError) as exc:
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
        lines = _read_limited(merges_path, "merges file", MAX_TOKENIZER_BYTES).decode("utf-8").splitlines()
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


# --------------------------------------------------------------------------- model configs


def _checker(cfg: dict, path: Path):
    def need(key, ok, what):
        if key in cfg and not ok(cfg[key]):
            raise ImportError_(f"{path}: {key} = {cfg[key]!r} is not supported ({what})")
    return need


def _model_config(path: Path, what: str, **fields) -> ModelConfig:
    try:
        return ModelConfig(dropout=0.0, **fields)
    except MnemosError as exc:
        raise ImportError_(f"{path}: {exc}") from None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def gpt2_model_config(cfg: dict, path: Path) -> ModelConfig:
    """The Mnemos shape of a ``GPT2Config``; options Mnemos does not implement are refused."""
    need = _checker(cfg, path)
    need("activation_function", lambda v: v in ("gelu_new", "gelu_pytorch_tanh"), "Mnemos uses the tanh GELU")
    need("layer_norm_epsilon", lambda v: _number(v) and v > 0, "a positive number is needed")
    need("scale_attn_weights", lambda v: v is True, "attention is scaled by 1/sqrt(head size)")
    need("scale_attn_by_inverse_layer_idx", lambda v: not v, "no per-layer attention scaling")
    need("add_cross_attention", lambda v: not v, "a decoder-only model is needed")
    try:
        return _model_config(path, "GPT-2", vocab_size=cfg["vocab_size"], n_layer=cfg["n_layer"],
                             n_head=cfg["n_head"], n_embd=cfg["n_embd"], block_size=cfg["n_positions"],
                             intermediate_size=cfg.get("n_inner"), norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
                             head="untied" if cfg.get("tie_word_embeddings", True) is False else "tied")
    except KeyError as exc:
        raise ImportError_(f"{path} lacks {exc.args[0]!r}; it is not a complete GPT-2 config") from None


LLAMA_MAX_BLOCK = 4096  # rotary positions have no table: a longer window is cropped losslessly for shorter texts


def llama_model_config(cfg: dict, path: Path) -> tuple[ModelConfig, int]:
    """The Mnemos shape of a ``LlamaConfig`` and its number of key/value heads (grouped-query
    attention is imported as full multi-head attention, each key/value head repeated)."""
    need = _checker(cfg, path)
    need("hidden_act", lambda v: v == "silu", "Mnemos' SwiGLU gate is SiLU")
    need("attention_bias", lambda v: not v, "Mnemos' Llama has no biases")
    need("mlp_bias", lambda v: not v, "Mnemos' Llama has no biases")
    need("pretraining_tp", lambda v: v in (None, 1), "tensor-parallel slicing")
    need("rope_scaling", lambda v: v is None or (isinstance(v, dict) and v.get("rope_type", v.get("type")) == "default"),
         "only plain rotary embeddings")
    rope = cfg.get("rope_parameters") if isinstance(cfg.get("rope_parameters"), dict) else {}
    need("rope_parameters", lambda v: not isinstance(v, dict) or v.get("rope_type", "default") == "default",
         "only plain rotary embeddings")
    try:
        heads, layers, width = cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["hidden_size"]
        kv = cfg.get("num_key_value_heads") or heads
        if not all(isinstance(v, int) and v > 0 for v in (heads, kv, width)) or heads % kv:
            raise ImportError_(f"{path}: {heads} attention heads cannot share {kv} key/value heads")
        if cfg.get("head_dim") not in (None, width // heads):
            raise ImportError_(f"{path}: head_dim {cfg['head_dim']} is not hidden_size / num_attention_heads, "
                               f"which Mnemos needs")
        config = _model_config(path, "Llama", vocab_size=cfg["vocab_size"], n_layer=layers, n_head=heads,
                               n_embd=width, block_size=min(cfg.get("max_position_embeddings", 2048), LLAMA_MAX_BLOCK),
                               arch="llama", intermediate_size=cfg["intermediate_size"],
                               rope_theta=rope.get("rope_theta", cfg.get("rope_theta", 10000.0)),
                               norm_eps=cfg.get("rms_norm_eps", 1e-6),
                               head="tied" if cfg.get("tie_word_embeddings", False) else "untied")
    except KeyError as exc:
        raise ImportError_(f"{path} lacks {exc.args[0]!r}; it is not a complete Llama config") from None
    return config, kv


# --------------------------------------------------------------------------- weight names


@dataclass(frozen=True)
class Source:
    """Where one Mnemos parameter comes from: Hugging Face tensors, each transposed from
    ``nn.Linear``'s ``(out, in)`` if ``transposed``, joined along the last axis; ``repeat``
    copies each key/value head's rows of a grouped-query projection that many times."""

    names: tuple[str, ...]
    transposed: bool = False
    repeat: tuple[int, ...] = ()  # per name: 1, or the heads sharing each key/value head

    def load(self, tensors: dict[str, TensorInfo], head_dim: int) -> np.ndarray:
        parts = []
        for i, name in enumerate(self.names):
            value = read_tensor(tensors[name])
            r = self.repeat[i] if self.repeat else 1
            if r > 1:  # (kv * hd, C) -> (kv * r * hd, C): query head j reads key/value head j // r, as repeat_kv
                value = np.repeat(value.reshape(-1, head_dim, value.shape[-1]), r, axis=0).reshape(-1, value.shape[-1])
            parts.append(value.T if self.transposed else value)
        return np.ascontiguousarray(np.concatenate(parts, axis=-1)) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def shape(self, tensors: dict[str, TensorInfo], head_dim: int) -> tuple[int, ...]:
        shapes = []
        for i, name in enumerate(self.names):
            shape = list(tensors[name].shape)
            if self.repeat and self.repeat[i] > 1 and shape:
                shape[0] *= self.repeat[i]
            shapes.append(shape[::-1] if self.transposed else shape)
        if len(shapes) == 1:
            return tuple(shapes[0])
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))


def gpt2_sources(config: ModelConfig, tensors: dict[str, TensorInfo], path: Path) -> dict[str, Source]:
    """Mnemos name -> source, for a GPT-2 folder (``GPT2Model`` saves without ``transformer.``;
    old causal-mask buffers are left out; ``lm_head`` only for an untied head)."""
    out = {}
    for name in tensors:
        if name.endswith((".attn.bias", ".attn.masked_bias")) or (name == "lm_head.weight" and config.tied_head):
            continue
        full = name if name.startswith(("transformer.", "lm_head")) else "transformer." + name
        try:
            out[mnemos_name(full)] = Source((name,))
        except KeyError:
            raise ImportError_(f"{path}: {name!r} is not a GPT-2 weight name") from None
    return out


def llama_sources(config: ModelConfig, kv_heads: int, tensors: dict[str, TensorInfo]) -> dict[str, Source]:
    """Mnemos name -> source, for a Llama folder (:data:`mnemos.export.LLAMA_NAMES`)."""
    group = config.n_head // kv_heads
    out = {}
    for ours, theirs, transposed in llama_names(config):
        repeat = tuple(group if ".k_proj." in t or ".v_proj." in t else 1 for t in theirs)
        out[ours] = Source(theirs, transposed, repeat)
    known = {t for src in out.values() for t in src.names} | {"lm_head.weight"}
    foreign = sorted(n for n in tensors if n not in known and not n.endswith("rotary_emb.inv_freq"))
    if foreign:
        raise ImportError_(f"{tensors[foreign[0]].path}: unexpected weight {foreign[0]!r}; this is not a plain Llama")
    return out


# --------------------------------------------------------------------------- import


@dataclass
class ImportPlan:
    """Everything checked, nothing loaded."""

    src: Path
    model_type: str
    config: ModelConfig  # the Mnemos shape, vocab_size = the tokenizer's
    tokenizer: object
    perm: np.ndarray  # Mnemos token id -> Hugging Face embedding row
    sources: dict[str, Source]
    tensors: dict[str, TensorInfo]
    notes: list[str]


def plan_import(src: str | os.PathLike) -> ImportPlan:
    """Read and check a Hugging Face folder's config, tokenizer and weight headers.

    The folder's JSON is someone else's: the checks below name what they know to look for,
    and a value of a type no check foresaw (a normalizer that is a number, a context length
    that is a string) is still one line, not a traceback."""
    try:
        return _plan_import(Path(src))
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as exc:
        raise ImportError_(f"{src}: a file of the folder has values of an unexpected type or shape "
                           f"({type(exc).__name__}: {str(exc)[:60]}); download the model again") from None


def _plan_import(src: Path) -> ImportPlan:
    from mnemos.nn.gpt import param_specs

    if not src.is_dir():
        raise ImportError_(f"{src} is not a folder; pass a Hugging Face model folder (written by save_pretrained)")
    cfg = _read_json(src / "config.json", "model config")
    model_type, notes = cfg.get("model_type"), []
    if model_type == "gpt2":
        hf_cfg, kv = gpt2_model_config(cfg, src / "config.json"), None
    elif model_type == "llama":
        hf_cfg, kv = llama_model_config(cfg, src / "config.json")
        if kv != hf_cfg.n_head:
            notes.append(f"grouped-query attention ({kv} key/value heads) imported as {hf_cfg.n_head} full heads")
        if cfg.get("max_position_embeddings", 0) > hf_cfg.block_size:
            notes.append(f"context cropped from {cfg['max_position_embeddings']:,} to {hf_cfg.block_size:,} tokens")
    else:
        raise ImportError_(f"{src}: model_type {model_type!r} is not supported; Mnemos imports gpt2 and llama")
    tensors = weight_files(src)
    tokenizer, perm = hf_tokenizer(src)
    if int(perm.max()) >= hf_cfg.vocab_size:
        raise ImportError_(f"{src}: the tokenizer has ids up to {int(perm.max())} but the model only "
                           f"{hf_cfg.vocab_size} embedding rows; the folder mixes two models")
    sources = gpt2_sources(hf_cfg, tensors, src) if kv is None else llama_sources(hf_cfg, kv, tensors)
    specs = {name: shape for name, shape, _ in param_specs(hf_cfg)}
    for name, shape in specs.items():
        source = sources.get(name)
        missing = [t for t in source.names if t not in tensors] if source else [name]
        if missing:
            raise ImportError_(f"{src}: the weights lack {missing[0]!r}; the folder is incomplete")
        if source.shape(tensors, hf_cfg.head_dim) != shape:
            raise ImportError_(f"{src}: {', '.join(source.names)} has shape "
                               f"{list(source.shape(tensors, hf_cfg.head_dim))}, config.json implies {list(shape)}; "
                               f"the folder mixes two models")
    extra = sorted(set(sources) - set(specs))
    if extra:
        raise ImportError_(f"{src}: unexpected weight {sources[extra[0]].names[0]!r}; this is not a plain {model_type}")
    if hf_cfg.vocab_size > tokenizer.vocab_size:
        notes.append(f"{hf_cfg.vocab_size - tokenizer.vocab_size} embedding rows have no token in the tokenizer "
                     f"and were left out")
    config = ModelConfig(**{**hf_cfg.to_dict(), "vocab_size": tokenizer.vocab_size})
    return ImportPlan(src, model_type, config, tokenizer, perm, sources, tensors, notes)


def import_hf(src: str | os.PathLike, out: str | os.PathLike, seed: int = 1337, say=None) -> ImportReport:
    """Import the Hugging Face model folder ``src`` as the new run folder ``out``;
    ``say(line)``, if given, hears what will be loaded and the memory it takes, before it is."""
    from mnemos.checkpoint import is_checkpoint, refuse_inside_run, save_checkpoint
    from mnemos.nn import GPT
    from mnemos.nn.gpt import param_specs
    from mnemos.nn.params import ParamStore

    out = Path(out)
    refuse_inside_run(out)
    if out.exists() and not out.is_dir():
        raise ImportError_(f"{out} exists and is not a folder; choose a new --out folder")
    if is_checkpoint(out) or (out.is_dir() and any(out.iterdir())):
        raise ImportError_(f"{out} already exists and is not empty; choose a new --out folder")
    plan = plan_import(src)
    config, tokenizer = plan.config, plan.tokenizer
    n_params = config.num_params()
    need = 3 * FLOAT * n_params + inference_estimate(config).masks  # weights, gradient pages, model.npz's copies
    avail = available_bytes()
    if say is not None:
        weights = sum(info.nbytes for info in plan.tensors.values())
        say(f"{plan.model_type}: {n_params:,} parameters, {format_bytes(weights)} of weights; importing takes "
            f"about {format_bytes(need)} of memory" + (f" ({format_bytes(avail)} free)" if avail else ""))
    if avail is not None and need > HEADROOM * avail:
        raise ImportError_(f"importing {n_params:,} parameters needs about {format_bytes(need)} of memory and "
                           f"{format_bytes(avail)} is available; close other programs or use a smaller model")
    params = ParamStore(param_specs(config))
    model = GPT(config, params=params, seed=seed)
    weight_bytes = 0
    for name in params.names:
        source = plan.sources[name]
        weight_bytes += sum(plan.tensors[t].nbytes for t in source.names)
        value = source.load(plan.tensors, config.head_dim)
        if name in ("wte", "lm_head"):
            value = value[plan.perm]  # rows in Mnemos' token order
        if not np.isfinite(value).all():
            raise ImportError_(f"{plan.src}: {', '.join(source.names)} holds NaN or infinite values; "
                               f"the model is broken")
        params.view(name)[...] = value
    train_cfg = TrainConfig(tokenizer_vocab=tokenizer.vocab_size - len(tokenizer.special_tokens), seed=seed,
                            workers=1)
    rng = np.random.default_rng(seed)
    state = {"step": 0, "best_val_loss": None, "tokens_seen": 0, "elapsed_s": 0.0,
             "batch_rng": rng.bit_generator.state, "dropout_rng": model.rng.bit_generator.state,
             "tokenizer": tokenizer.fingerprint(), "imported_from": os.path.realpath(plan.src),
             "imported_model_type": plan.model_type}
    try:
        save_checkpoint(out, model, tokenizer, config, train_cfg, None, state, metrics=[], best="drop")
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return ImportReport(out, plan.model_type, n_params, tokenizer.vocab_size, weight_bytes, plan.notes)
