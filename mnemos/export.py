"""Hugging Face export: a Mnemos checkpoint as a ``transformers`` GPT-2 or Llama folder.

Mnemos is GPT-2 (or Llama) shaped on purpose, so the export is a renaming, not a
conversion. GPT-2 (``GPT2LMHeadModel``):

- Mnemos ``wte`` / ``wpe`` are ``transformer.wte.weight`` / ``transformer.wpe.weight``;
  every other parameter is ``transformer.`` + its Mnemos name (``h.0.attn.c_attn.weight``,
  ``ln_f.bias``, ...). Linear weights are stored ``(in, out)`` in both, which is the
  layout of GPT-2's ``Conv1D``, so no transpose is needed.
- The output head is tied to the token embedding (``lm_head.weight`` is ``wte``):
  ``to_hf_state_dict`` includes it, the safetensors file leaves it out as
  ``save_pretrained`` does (``transformers`` ties it back on load). An untied head
  (``lm_head``) is written as ``lm_head.weight``.
- The activation is GPT-2's tanh GELU (``"gelu_new"``), LayerNorm eps 1e-5.

Llama (``LlamaForCausalLM``): the table ``LLAMA_NAMES``. Hugging Face's ``nn.Linear``
stores ``(out, in)``, so linear weights are transposed, and Mnemos' fused ``c_attn``
(q | k | v) and ``c_fc`` (gate | up) are split along their output axis. Mnemos' rotary
embedding uses Hugging Face's ``rotate_half`` layout, so q and k need no permutation.

``export_hf(checkpoint, out)`` writes ``config.json``, ``generation_config.json``,
``model.safetensors`` (written here, in pure Python: an 8-byte little-endian header length,
a JSON header naming each tensor's dtype, shape and byte range, then the raw
little-endian data), the tokenizer (``tokenizer.json``, ``vocab.json``, ``merges.txt``,
``tokenizer_config.json``, ``special_tokens_map.json``) and a short ``README.md``, so that
``AutoModelForCausalLM.from_pretrained(out)`` and ``AutoTokenizer.from_pretrained(out)``
load it: the road to the Hugging Face stack for a run that outgrows one machine.

The tokenizer (``tokenizer_json``, ``write_tokenizer_json``, ``write_vocab_merges``):
Hugging Face (like GPT-2's ``encoder.py``) keys its vocabulary by strings, not bytes: each
byte is shown as one printable character (GPT-2's ``bytes_to_unicode``: printable Latin-1
bytes stand for themselves, the others, space included, are moved to U+0100 and up, so a
space is ``Ġ``). A token is the concatenation of its bytes' characters.

The ``tokenizers`` pipeline written here is the GPT-2 one: no normalizer, the ByteLevel
pre-tokenizer (GPT-2 pattern, no prefix space), a BPE model with the vocabulary and the
merges in rank order, the ByteLevel decoder, and the special tokens as added tokens. It
encodes to exactly Mnemos' ids; so do ``transformers``' ``GPT2TokenizerFast`` on it and
``GPT2Tokenizer`` on ``vocab.json`` + ``merges.txt``. Mind that Hugging Face always matches
special-token strings inside text (Mnemos only with ``allowed_special="all"``), unless
``encode_special_tokens`` is set on the ``tokenizers.Tokenizer``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

import mnemos
from mnemos.config import ModelConfig
from mnemos.errors import CheckpointError, MnemosError, TokenizerError
from mnemos.fileio import parse_json
from mnemos.tokenizer import BPETokenizer

EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "vocab.json",
                "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "README.md")

# --------------------------------------------------------------------------- names


def hf_name(name: str) -> str:
    """The ``GPT2LMHeadModel`` name of a Mnemos GPT-2 parameter name."""
    if name == "lm_head":
        return "lm_head.weight"
    return f"transformer.{name}.weight" if name in ("wte", "wpe") else f"transformer.{name}"


def mnemos_name(name: str) -> str:
    """Inverse of ``hf_name``."""
    if name == "lm_head.weight":
        return "lm_head"
    if not name.startswith("transformer."):
        raise KeyError(name)
    name = name[len("transformer."):]
    return name[: -len(".weight")] if name in ("wte.weight", "wpe.weight") else name


# (Mnemos name, Hugging Face LlamaForCausalLM names, transposed); ``{i}`` is the layer.
# Several HF names: the Mnemos tensor is theirs side by side along its output axis.
LLAMA_NAMES = (
    ("wte", ("model.embed_tokens.weight",), False),
    ("h.{i}.ln_1.weight", ("model.layers.{i}.input_layernorm.weight",), False),
    ("h.{i}.attn.c_attn.weight", ("model.layers.{i}.self_attn.q_proj.weight",
                                  "model.layers.{i}.self_attn.k_proj.weight",
                                  "model.layers.{i}.self_attn.v_proj.weight"), True),
    ("h.{i}.attn.c_proj.weight", ("model.layers.{i}.self_attn.o_proj.weight",), True),
    ("h.{i}.ln_2.weight", ("model.layers.{i}.post_attention_layernorm.weight",), False),
    ("h.{i}.mlp.c_fc.weight", ("model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"), True),
    ("h.{i}.mlp.c_proj.weight", ("model.layers.{i}.mlp.down_proj.weight",), True),
    ("ln_f.weight", ("model.norm.weight",), False),
    ("lm_head", ("lm_head.weight",), False),
)


def llama_names(config: ModelConfig) -> list[tuple[str, tuple[str, ...], bool]]:
    """``LLAMA_NAMES`` for every layer of ``config`` (``lm_head`` only when untied)."""
    rows = []
    for ours, theirs, transposed in LLAMA_NAMES:
        if ours == "lm_head" and config.tied_head:
            continue
        layers = range(config.n_layer) if "{i}" in ours else [None]
        rows += [(ours.format(i=i), tuple(t.format(i=i) for t in theirs), transposed) for i in layers]
    return rows


def to_hf_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights under ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` names,
    float32 copies, with ``lm_head.weight`` (for a tied head the same values as the
    token embedding)."""
    ours = model.state_dict()
    if model.config.arch == "gpt2":
        state = {hf_name(k): v for k, v in ours.items()}
        state.setdefault("lm_head.weight", state["transformer.wte.weight"])
        return state
    state = {}
    for name, theirs, transposed in llama_names(model.config):
        parts = np.split(ours[name], len(theirs), axis=-1)
        for hf, part in zip(theirs, parts):
            state[hf] = np.ascontiguousarray(part.T if transposed else part)
    state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    return state


def _from_llama(d: dict, config: ModelConfig) -> tuple[dict, object]:
    """Mnemos names for a ``LlamaForCausalLM`` state dict, and its ``lm_head.weight``."""
    rows = llama_names(config)
    known = {hf for _, theirs, _ in rows for hf in theirs} | {"lm_head.weight"}
    foreign = sorted(k for k in d if k not in known and not k.endswith("rotary_emb.inv_freq"))
    if foreign:
        raise CheckpointError(f"{foreign[0]!r} is not a weight of this Llama shape; "
                              f"pass a LlamaForCausalLM state dict made with the same config")
    state = {}
    for name, theirs, transposed in rows:
        if all(hf in d for hf in theirs):
            parts = [np.asarray(d[hf], dtype=np.float32) for hf in theirs]
            state[name] = np.concatenate([p.T if transposed else p for p in parts], axis=-1)
    return state, d.get("lm_head.weight")


def from_hf_state_dict(d: dict, config: ModelConfig, **gpt_kwargs):
    """A Mnemos ``GPT`` built from a ``GPT2LMHeadModel`` or (``config.arch == "llama"``)
    ``LlamaForCausalLM`` state dict (NumPy arrays or anything ``np.asarray`` takes, e.g.
    CPU torch tensors).

    The causal-mask buffers old ``transformers`` versions store (``attn.bias``,
    ``attn.masked_bias``, ``rotary_emb.inv_freq``) are ignored. With ``config.tied_head``
    an ``lm_head.weight`` that differs from the token embedding raises
    ``CheckpointError``, as do foreign or missing names and wrong shapes.
    """
    from mnemos.nn import GPT

    if config.arch == "llama":
        state, head = _from_llama(d, config)
    else:
        state, head = {}, d.get("lm_head.weight")
        for key, value in d.items():
            if key == "lm_head.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            try:
                state[mnemos_name(key)] = np.asarray(value, dtype=np.float32)
            except KeyError:
                raise CheckpointError(f"{key!r} is not a GPT-2 weight name; "
                                      f"pass a GPT2LMHeadModel state dict") from None
        if head is not None and not config.tied_head:
            state["lm_head"] = np.asarray(head, dtype=np.float32)
    if head is not None and config.tied_head and "wte" in state \
            and not np.array_equal(np.asarray(head, dtype=np.float32), state["wte"]):
        raise CheckpointError("lm_head.weight differs from the token embedding; "
                              "this model config has a tied output head (set head to untied)")
    model = GPT(config, **gpt_kwargs)
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- configs


def _eot(config: ModelConfig, eot_id: int | None) -> int:
    # special tokens take the ids after the merges, and <|endoftext|> is the only default one
    return config.vocab_size - 1 if eot_id is None else int(eot_id)


def hf_config(model_config: ModelConfig, eot_id: int | None = None) -> dict:
    """The ``GPT2Config`` (or ``LlamaConfig``) JSON of a Mnemos shape. ``eot_id``
    (default: the last id, where ``<|endoftext|>`` sits) is the bos, eos and pad token."""
    c, eot = model_config, _eot(model_config, eot_id)
    if c.arch == "llama":
        return _llama_config(c, eot)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.intermediate_size,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": None,
        "tie_word_embeddings": c.tied_head,
        "use_cache": True,
        "torch_dtype": "float32",
        "mnemos_version": mnemos.__version__,
    }


def _llama_config(c: ModelConfig, eot: int) -> dict:
    """The ``LlamaConfig`` JSON: full multi-head attention (as many key/value heads as
    heads), no biases, SiLU gate; ``rope_theta`` both where ``transformers`` 5 reads it
    (``rope_parameters``) and where earlier versions and other readers look. No
    ``pad_token_id``: Llama would make it the embedding's ``padding_idx``, which gets no
    gradient, and here it is ``<|endoftext|>``, a token the model reads between
    documents (generation_config.json still pads with it)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": c.dropout,
        "initializer_range": 0.02,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": None,
        "tie_word_embeddings": c.tied_head,
        "use_cache": True,
        "torch_dtype": "float32",
        "mnemos_version": mnemos.__version__,
    }


def generation_config(model_config: ModelConfig, eot_id: int | None = None) -> dict:
    """``generation_config.json``: sampling as ``mnemos generate`` does by default
    (temperature 1, no top-k / top-p), stopping at ``<|endoftext|>``. GPT-2 has learned
    positions and transformers no sliding window, so prompt + new tokens must fit in
    ``block_size``: the default length is ``max_new_tokens`` = half the window (what
    Mnemos keeps when its window slides), so the common calls (``generate(**inputs)``,
    ``pipeline("text-generation")(prompt)``) fit with a prompt of up to half the window,
    and a longer prompt fits with the pipeline's ``handle_long_generation="hole"`` (it
    keeps the prompt's end, by the tokenizer's ``model_max_length``). No ``max_length``:
    transformers warns whenever a caller's ``max_new_tokens`` overrides it."""
    eot = _eot(model_config, eot_id)
    return {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "do_sample": True,
            "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": max(1, model_config.block_size // 2)}


# --------------------------------------------------------------------------- safetensors

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
           "U64": np.uint64, "BOOL": np.bool_}
_CODES = {np.dtype(t): code for code, t in _DTYPES.items()}


def save_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` in the safetensors format, atomically.

    Layout: ``u64`` little-endian header size N, N bytes of JSON (padded with spaces to
    a multiple of 8 so every tensor is 8-byte aligned), then each tensor's C-order
    little-endian bytes back to back, in the order of the header (sorted by name).
    """
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    arrays, offset = [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        if a.dtype not in _CODES:
            raise TypeError(f"safetensors cannot store dtype {a.dtype} ({name})")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _CODES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file into NumPy arrays (the inverse of ``save_safetensors``)."""
    data = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = parse_json(data[8:8 + n])
        body = memoryview(data)[8 + n:]
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            if not 0 <= begin <= end <= len(body):
                raise ValueError("data offsets outside the file")
            array = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"])
            out[name] = array.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy
        return out
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- tokenizer files


def _tokenizer_config(tokenizer, block_size: int) -> tuple[dict, dict]:
    eot = next((s for s, i in tokenizer.special_tokens.items() if i == tokenizer.eot_id), None)
    special = {"bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot} if eot else {}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": block_size,
        "add_prefix_space": False,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    return config, special


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _model_card(model_cfg: ModelConfig, source: Path, state: dict, out: Path) -> str:
    step = state.get("step")
    shape = "GPT-2" if model_cfg.arch == "gpt2" else "Llama"
    context = ("GPT-2 has learned position embeddings, so keep `input_ids` at most that long"
               if model_cfg.arch == "gpt2" else
               "it was trained on windows of that length, so longer inputs leave what it learned")
    return (
        f"---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [{model_cfg.arch}, mnemos]\n---\n\n"
        f"# {source.name}\n\n"
        f"A {shape} shaped model trained from scratch with Mnemos {mnemos.__version__} "
        f"({model_cfg.n_layer} layers, {model_cfg.n_head} heads, {model_cfg.n_embd} wide, "
        f"{model_cfg.block_size} positions, vocabulary {model_cfg.vocab_size}, "
        f"{model_cfg.num_params():,} parameters"
        + (f", {step} training steps" if isinstance(step, int) else "") + ").\n\n"
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{out}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{out}")\n```\n\n'
        f"The context is {model_cfg.block_size} tokens: {context}.\n"
    )


# --------------------------------------------------------------------------- export


def _check_out(out: Path) -> None:
    """Refuse to write into a folder that holds anything but a previous export, or that
    lies inside a run folder."""
    from mnemos.checkpoint import refuse_inside_run

    refuse_inside_run(out)
    if out.exists() and not out.is_dir():
        raise MnemosError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES)
        if foreign:
            raise MnemosError(f"{out} already holds other files ({', '.join(foreign[:3])}); "
                              f"choose an empty or new --out folder")


def export_hf(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export a Mnemos checkpoint folder to a Hugging Face GPT-2 or Llama folder; returns it.

    ``out_dir`` must be new, empty, or a previous export (whose files are replaced).
    The files are written to a temporary folder first and moved in at the end, so a
    failed export leaves nothing half-written.
    """
    from mnemos.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint_dir)
    out = Path(out_dir)
    _check_out(out)
    eot = ckpt.tokenizer.eot_id
    cfg = ckpt.model_config
    tmp = out.parent / f".{out.name}.exporting-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()  # a read-only or missing place fails here: one line below
        configs = hf_config(cfg, eot), generation_config(cfg, eot)
        if eot is None:  # a tokenizer trained without <|endoftext|> has no bos / eos / pad
            for config in configs:
                config.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
        _write_json(tmp / "config.json", configs[0])
        _write_json(tmp / "generation_config.json", configs[1])
        weights = to_hf_state_dict(ckpt.model)
        if cfg.tied_head:
            del weights["lm_head.weight"]  # tied: transformers restores it from the embedding
        save_safetensors(tmp / "model.safetensors", weights, {"format": "pt"})
        write_tokenizer_json(ckpt.tokenizer, tmp / "tokenizer.json")
        write_vocab_merges(ckpt.tokenizer, tmp)
        tok_config, special = _tokenizer_config(ckpt.tokenizer, cfg.block_size)
        _write_json(tmp / "tokenizer_config.json", tok_config)
        _write_json(tmp / "special_tokens_map.json", special)
        (tmp / "README.md").write_text(_model_card(cfg, ckpt.path, ckpt.state, out), encoding="utf-8",
                                          errors="replace")  # a path of undecodable bytes
        out.mkdir(exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
    except OSError as exc:
        raise MnemosError(f"could not write the export to {out} ({exc.strerror or exc}); "
                          f"check the folder and free space") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- the tokenizer


@lru_cache(maxsize=1)
def bytes_to_unicode() -> tuple[str, ...]:
    """GPT-2's byte -> printable character table (index = byte value)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    moved = (b for b in range(256) if b not in table)
    for n, b in enumerate(moved):
        table[b] = chr(256 + n)
    return tuple(table[b] for b in range(256))


def token_strings(tok: BPETokenizer) -> list[str]:
    """Every id's Hugging Face string: byte-level characters, special tokens as is."""
    byte_char = bytes_to_unicode()
    specials = {i: s for s, i in tok.special_tokens.items()}
    return [specials.get(i) or "".join(byte_char[b] for b in tok.token_bytes(i)) for i in range(tok.vocab_size)]


def _vocab_and_merges(tok: BPETokenizer) -> tuple[dict[str, int], list[str]]:
    strings = token_strings(tok)
    vocab = {s: i for i, s in enumerate(strings)}
    if len(vocab) != len(strings):
        raise TokenizerError("a special token has the same text as a learned token; rename the special token")
    # byte-level strings never contain a space, so "a b" is unambiguous (and readable by
    # every tokenizers / transformers version, unlike the newer [a, b] list form)
    merges = [f"{strings[a]} {strings[b]}" for (a, b), _ in tok.merges]
    return vocab, merges


def tokenizer_json(tok: BPETokenizer) -> dict:
    """The ``tokenizers`` JSON document (as a dict)."""
    vocab, merges = _vocab_and_merges(tok)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for s, i in tok.special_tokens.items()
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def write_tokenizer_json(tok: BPETokenizer, path: str | os.PathLike) -> None:
    """Write a Hugging Face ``tokenizers`` ``tokenizer.json`` that encodes to the same ids."""
    Path(path).write_text(json.dumps(tokenizer_json(tok), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_vocab_merges(tok: BPETokenizer, directory: str | os.PathLike) -> None:
    """GPT-2's ``vocab.json`` (string -> id, special tokens included) and ``merges.txt``."""
    vocab, merges = _vocab_and_merges(tok)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
