"""Hugging Face export of a Mnemos BPE: ``tokenizer.json``, ``vocab.json``, ``merges.txt``.

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
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mnemos.errors import TokenizerError

if TYPE_CHECKING:
    from mnemos.tokenizer import BPETokenizer


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


def write_tokenizer_json(tok: BPETokenizer, path: Path) -> None:
    path.write_text(json.dumps(tokenizer_json(tok), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_vocab_merges(tok: BPETokenizer, directory: Path) -> None:
    """GPT-2's ``vocab.json`` (string -> id, special tokens included) and ``merges.txt``."""
    vocab, merges = _vocab_and_merges(tok)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
