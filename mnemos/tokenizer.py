"""Byte-level BPE tokenizer: train, encode, decode, save, load, Hugging Face export.

The design is GPT-2's:

- the 256 byte values are the base tokens, so every text (emoji and all) encodes and
  nothing is ever unknown; ``vocab_size=256`` is pure byte level;
- text is first cut into chunks by the GPT-2 pattern (contractions, letters with an
  optional leading space, digits, punctuation, whitespace), so merges never cross a
  word / space / punctuation boundary;
- merges are learned by frequency (``mnemos.bpe_train``); merge ``i`` creates token
  ``256 + i``; to encode a chunk, the adjacent pair with the lowest merge rank is merged
  until none is left;
- special tokens (``<|endoftext|>`` by default, separating documents) take the ids just
  after the merges. They are never produced by merges, and a special-token string inside
  user text is plain text unless ``encode(..., allowed_special=...)`` asks for it (so a
  web page that quotes ``<|endoftext|>`` cannot inject a document boundary).

Internally a token sequence is a ``str`` with one character per token (``chr(id)``):
merging a pair is then ``str.replace`` in C, an encoded chunk is a cached string, and a
whole file's ids come out of one ``"".join`` and one ``encode("utf-32-le")`` into NumPy.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import sys
from collections.abc import Collection, Iterable, Iterator
from itertools import repeat
from pathlib import Path

import numpy as np
import regex

from mnemos.bpe_train import BYTE_VOCAB, Progress, count_chunks, learn_merges
from mnemos.errors import TokenizerError
from mnemos.fileio import open_regular, parse_json, write_atomic

# The GPT-2 pre-tokenizer pattern (the same string as OpenAI's encoder.py and Hugging
# Face's ByteLevel pre-tokenizer). Alternatives are tried in order, so " hello" is one
# chunk and a run of spaces before a word leaves its last space to the word.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
FORMAT = "mnemos-bpe"
FORMAT_VERSION = 1
MAX_VOCAB = 1 << 20  # token ids are stored as characters internally (chr() stops at 0x10FFFF)

_BLOCK_CHARS = 1 << 20  # texts are split into ~1 MB blocks: bounded memory, same chunks
# A cut between a non-space and a space character never changes the GPT-2 chunks: no
# alternative matches across it except through ``\s+(?!\S)``, which starts after it.
_GPT2 = regex.compile(GPT2_PATTERN)
_SAFE_CUT = regex.compile(r"(?<=\S)(?=\s)")
_SURROGATE = regex.compile(r"[\ud800-\udfff]")
_NO_RANK = sys.maxsize
_CACHE_LIMIT = 500_000  # distinct chunks kept in the encoding cache
_LONG_WORD = 64  # bytes; longer chunks are encoded with a heap of pair ranks


def text_blocks(text: str, block_chars: int = _BLOCK_CHARS) -> Iterator[str]:
    """Cut ``text`` into blocks of about ``block_chars`` characters at points where the
    GPT-2 chunks of the blocks, concatenated, are exactly the chunks of the whole text."""
    start = 0
    while len(text) - start > block_chars:
        cut = _SAFE_CUT.search(text, start + block_chars)
        if cut is None:
            break
        yield text[start : cut.start()]
        start = cut.start()
    yield text[start:]


def _check_utf8(text: str) -> None:
    """Raise a one-line TokenizerError if ``text`` holds a lone surrogate (not UTF-8)."""
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise TokenizerError(
            f"text contains a lone surrogate U+{ord(bad.group()):04X} at character {bad.start()}, "
            "which is not valid Unicode text; decode your file with errors='replace' first"
        )


class BPETokenizer:
    """A trained byte-level BPE: ``merges`` (in rank order) and special tokens.

    ``BPETokenizer()`` is the pure byte-level tokenizer (256 bytes + ``<|endoftext|>``).
    """

    def __init__(self, merges: Iterable[tuple[int, int]] = (), special_tokens: Iterable[str] = (EOT,)) -> None:
        self._pairs: list[tuple[int, int]] = []
        self._bytes: list[bytes] = [bytes([b]) for b in range(BYTE_VOCAB)]
        seen = set(self._bytes)
        for a, b in merges:
            new_id = len(self._bytes)
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise TokenizerError(f"merge {len(self._pairs)} uses an unknown token id ({a}, {b})")
            merged = self._bytes[a] + self._bytes[b]
            if merged in seen:
                raise TokenizerError(f"merge {len(self._pairs)} repeats the token {merged!r}")
            seen.add(merged)
            self._pairs.append((a, b))
            self._bytes.append(merged)
        self._special: dict[str, int] = {}
        for name in special_tokens:
            if not isinstance(name, str) or not name:
                raise TokenizerError(f"special tokens must be non-empty strings, got {name!r}")
            if name in self._special:
                raise TokenizerError(f"special token {name!r} is listed twice")
            self._special[name] = len(self._bytes)
            self._bytes.append(name.encode("utf-8"))
        if len(self._bytes) > MAX_VOCAB:
            raise TokenizerError(f"vocabulary of {len(self._bytes)} tokens is too large (max {MAX_VOCAB})")
        self._pattern = _GPT2
        # rank of each merge, keyed by the pair as a 2-character string
        self._ranks = {chr(a) + chr(b): r for r, (a, b) in enumerate(self._pairs)}
        self._rank_pairs = list(self._ranks)
        self._cache: dict[str, str] = {}
        self._special_re = (
            regex.compile("|".join(regex.escape(s) for s in sorted(self._special, key=len, reverse=True)))
            if self._special
            else None
        )

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        text_or_iterable: str | Iterable[str],
        vocab_size: int,
        special_tokens: Iterable[str] = (EOT,),
        progress: Progress | None = None,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges from a text (or an iterable of texts).

        Special tokens get the ids ``vocab_size, vocab_size + 1, ...`` on top, so
        ``tokenizer.vocab_size == vocab_size + len(special_tokens)`` (GPT-2: 50256 + 1).
        A text too small to provide that many merges gives fewer (``vocab_size`` is then
        smaller). Special-token strings found in the text are cut out, not learned from.
        Ties are broken as documented in ``mnemos.bpe_train`` (count, then smallest ids).
        An iterable's texts are separate documents (no chunk spans two of them).
        ``progress(done, total)`` is called about 100 times during the merges; an
        exception raised in it stops the training (a way to cancel from a UI).
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < BYTE_VOCAB:
            raise TokenizerError(f"vocab_size must be an integer >= 256 (the byte alphabet), got {vocab_size!r}")
        special_tokens = tuple(special_tokens)
        if vocab_size + len(special_tokens) > MAX_VOCAB:
            raise TokenizerError(f"vocab_size {vocab_size} is too large (max {MAX_VOCAB - len(special_tokens)})")
        texts = [text_or_iterable] if isinstance(text_or_iterable, str) else text_or_iterable
        splitter = cls((), special_tokens)

        def blocks() -> Iterator[str]:
            for text in texts:
                if not isinstance(text, str):
                    raise TokenizerError(f"train() takes text (str), got {type(text).__name__}")
                _check_utf8(text)
                for piece in splitter._special_re.split(text) if splitter._special_re else (text,):
                    yield from text_blocks(piece)

        counts = count_chunks(blocks(), splitter._pattern.findall, progress, vocab_size - BYTE_VOCAB)
        merges = learn_merges(counts, vocab_size - BYTE_VOCAB, progress)
        return cls(merges, special_tokens)

    # ----------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: str) -> str:
        """BPE one chunk: merge the lowest-ranked adjacent pair until none is left."""
        word = chunk.encode("utf-8").decode("latin-1")
        if len(word) > _LONG_WORD:
            return self._encode_long(word)
        ranks_get = self._ranks.get
        while len(word) > 1:
            pairs = [word[k : k + 2] for k in range(len(word) - 1)]
            rank = min(map(ranks_get, pairs, repeat(_NO_RANK)))
            if rank == _NO_RANK:
                break
            word = word.replace(self._rank_pairs[rank], chr(BYTE_VOCAB + rank))
        return word

    def _encode_long(self, word: str) -> str:
        """The same BPE for a long chunk (a paragraph of Chinese, a DNA line) without
        rescanning every pair at each step: the ranks of the pairs present wait in a
        heap, and after a merge only the pairs around the new tokens are looked up.
        A pair made with the new token always ranks after it, so ranks pop in order."""
        ranks_get = self._ranks.get
        heap = list({r for k in range(len(word) - 1) if (r := ranks_get(word[k : k + 2])) is not None})
        heapq.heapify(heap)
        queued = set(heap)
        while heap:
            rank = heapq.heappop(heap)
            pair = self._rank_pairs[rank]
            if pair not in word:
                continue  # merged away by an earlier merge
            new = chr(BYTE_VOCAB + rank)
            word = word.replace(pair, new)
            k = word.find(new)
            while k >= 0:
                for p in (word[k - 1 : k + 1] if k else "", word[k : k + 2]):
                    r = ranks_get(p)
                    if r is not None and r not in queued:
                        queued.add(r)
                        heapq.heappush(heap, r)
                k = word.find(new, k + 1)
        return word

    def _encode_ordinary(self, text: str) -> str:
        """Token ids of ``text`` (no special tokens) as a string of ``chr(id)``."""
        cache = self._cache
        out = []
        for block in text_blocks(text):
            chunks = self._pattern.findall(block)
            if len(cache) > _CACHE_LIMIT:
                cache = self._cache = {}
            for chunk in set(chunks).difference(cache):
                cache[chunk] = self._encode_chunk(chunk)
            out.append("".join(map(cache.__getitem__, chunks)))
        return "".join(out)

    def _encode_str(self, text: str, allowed_special: str | Collection[str]) -> str:
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes text (str), got {type(text).__name__}")
        _check_utf8(text)
        if allowed_special == "none" or self._special_re is None:
            return self._encode_ordinary(text)
        if allowed_special == "none_raise":
            found = self._special_re.search(text)
            if found:
                raise TokenizerError(
                    f"text contains the special token {found.group()!r} at character {found.start()}; "
                    "pass allowed_special='all' to encode it as a special token or 'none' for plain text"
                )
            return self._encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self._special)
        elif isinstance(allowed_special, str):
            raise TokenizerError(
                f"allowed_special must be 'none', 'none_raise', 'all' or a set of special tokens, got {allowed_special!r}"
            )
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self._special)
            if unknown:
                raise TokenizerError(f"unknown special token(s) {sorted(unknown)}; this tokenizer has {list(self._special)}")
        if not allowed:
            return self._encode_ordinary(text)
        # longest first, so that a special token that extends another one wins
        allowed_re = regex.compile("|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)))
        out, start = [], 0
        for m in allowed_re.finditer(text):
            out.append(self._encode_ordinary(text[start : m.start()]))
            out.append(chr(self._special[m.group()]))
            start = m.end()
        out.append(self._encode_ordinary(text[start:]))
        return "".join(out)

    def encode(self, text: str, allowed_special: str | Collection[str] = "none") -> list[int]:
        """Token ids of ``text``.

        ``allowed_special``: ``"none"`` (default) treats special-token strings in the text
        as plain text; ``"all"`` encodes them as their special ids; a set of names allows
        just those; ``"none_raise"`` raises ``TokenizerError`` if one occurs.
        A lone surrogate (text that is not valid Unicode) raises ``TokenizerError``.
        """
        return list(map(ord, self._encode_str(text, allowed_special)))

    def encode_array(self, text: str, allowed_special: str | Collection[str] = "none") -> np.ndarray:
        """Like ``encode`` but returns an int32 NumPy array: the fast path for whole files."""
        ids = self._encode_str(text, allowed_special).encode("utf-32-le", "surrogatepass")
        return np.frombuffer(ids, dtype="<u4").astype(np.int32)

    # ----------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a token sequence (special tokens as their UTF-8 text)."""
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        elif not isinstance(ids, (list, tuple)):
            ids = list(ids)
        table = self._bytes
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join(map(table.__getitem__, ids))
        except (IndexError, TypeError):
            bad = next(i for i in ids if not (isinstance(i, (int, np.integer)) and 0 <= i < len(table)))
            raise TokenizerError(
                f"token id {bad!r} is not in this tokenizer (ids go from 0 to {len(table) - 1})"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of a token sequence; byte sequences that are not valid UTF-8 (a
        sampled token cut inside a character) become U+FFFD instead of failing."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (for showing token boundaries)."""
        return self.decode_bytes((token_id,))

    # ----------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens (rows of the embedding)."""
        return len(self._bytes)

    @property
    def merges(self) -> list[tuple[tuple[int, int], int]]:
        """``((a, b), new_id)`` in rank order."""
        return [(pair, BYTE_VOCAB + r) for r, pair in enumerate(self._pairs)]

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def eot_id(self) -> int | None:
        """Id of ``<|endoftext|>``, or ``None`` if the tokenizer was trained without it."""
        return self._special.get(EOT)

    @property
    def pattern(self) -> str:
        return self._pattern.pattern

    def fingerprint(self) -> str:
        """A short hash of what decides the ids (merges, special tokens, pattern)."""
        return hashlib.sha256(self._canonical().encode("utf-8")).hexdigest()[:16]

    def _canonical(self) -> str:
        return json.dumps(
            {"pattern": self.pattern, "merges": self._pairs, "special_tokens": self._special},
            separators=(",", ":"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self._canonical() == other._canonical()

    def __hash__(self) -> int:
        return hash(self._canonical())

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._pairs)}, "
            f"special_tokens={list(self._special)})"
        )

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "vocab_size": self.vocab_size,
            "special_tokens": dict(self._special),
            "merges": [list(pair) for pair in self._pairs],
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "tokenizer") -> BPETokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            hint = " (it looks like a Hugging Face tokenizer.json)" if isinstance(data, dict) and "model" in data else ""
            raise TokenizerError(f"{source} is not a Mnemos tokenizer file{hint}; train one with `mnemos train`")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise TokenizerError(f"{source} has format version {version!r}; this Mnemos reads version {FORMAT_VERSION}, upgrade it")
        try:
            merges = [(a, b) for a, b in data["merges"]]
            specials = data["special_tokens"]
            pattern = data["pattern"]
            if not isinstance(specials, dict) or not isinstance(pattern, str):
                raise TypeError
            if not all(type(a) is int and type(b) is int for a, b in merges):
                raise TypeError
            if pattern != GPT2_PATTERN:
                raise TokenizerError(f"{source} uses a pre-tokenizer pattern this Mnemos does not know: {pattern[:40]!r}")
        except (KeyError, TypeError, ValueError):
            raise TokenizerError(f"{source} is corrupt (missing or malformed merges / special_tokens / pattern)") from None
        try:
            tok = cls(merges, list(specials))
        except TokenizerError as e:
            raise TokenizerError(f"{source} is corrupt: {e}") from None
        if tok._special != specials or data.get("vocab_size", tok.vocab_size) != tok.vocab_size:
            raise TokenizerError(f"{source} is corrupt (special token ids or vocab_size do not match the merges)")
        return tok

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON (atomically: a crash leaves the old file whole)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        write_atomic(path, lambda f: f.write(text.encode("utf-8")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by ``save``; anything else raises a one-line TokenizerError."""
        try:
            with open_regular(path) as f:
                raw = f.read()
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file not found: {path}") from None
        except OSError as e:
            raise TokenizerError(f"cannot read tokenizer file {path}: {e.strerror}") from None
        try:
            data = parse_json(raw)
        except ValueError as e:
            raise TokenizerError(f"{path} is not valid JSON (corrupt or truncated file): {e}") from None
        return cls.from_dict(data, str(path))

