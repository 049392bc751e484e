"""Text files -> token ids -> training batches.

The path from a user's file to the arrays the model eats:

1. :func:`read_text` checks the file (exists, is a file, not empty, not binary, valid
   UTF-8) and returns its text; every problem is a one-line :class:`DataError`.
2. :func:`train_tokenizer` trains the BPE (cached by the text's hash and the vocabulary
   size) and :func:`load_tokens` encodes the file with it, caching the ids as a ``.npy``
   file keyed by the file's content hash and the tokenizer's fingerprint, memory-mapped on
   the next run: a second run on the same file starts at once.
3. :func:`get_batch` draws random windows with a seeded ``np.random.Generator`` (nanoGPT
   style): ``x`` is a window, ``y`` the same window shifted by one token. :class:`EpochSampler`
   draws them in epochs instead: every window once per pass over the text (``--sampling epoch``).

:func:`inspect_text_file` gives the TUI the numbers (and the problem, if any) of a file
without raising. (The sample corpus is :mod:`mnemos.sample`'s.)
"""

from __future__ import annotations

import codecs
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mnemos.errors import DataError, MnemosError
from mnemos.fileio import why_missing, write_atomic

VAL_FRACTION = 0.1  # without --val-data, the last 10% of the training tokens validate
CACHE_FORMAT = 1  # bump when the cache layout changes; old files are then ignored
ENCODE_CHUNK = 1 << 20  # characters per encoding piece (progress and memory)
HEAD_BYTES = 1 << 16  # the start of a file that is checked for binary content

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- reading


def _check_path(path: Path) -> None:
    if not path.exists():
        if path.is_symlink():
            raise DataError(f"{path} {why_missing(path)}; point the link at a real file") from None
        raise DataError(f"{path}: no such file; check the path (or run `mnemos data sample` for a sample corpus)")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a text file; pass a file inside it")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file; pass a UTF-8 text file")


def _utf16_or_32(raw: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when the start of a file is text in one of them: a byte-order
    mark, or (no mark, "UTF-16LE"/"BE") a zero byte at every other position of mostly ASCII text."""
    if raw[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        return "UTF-32"
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "UTF-16"
    head = raw[:4096]
    if len(head) >= 8:
        odd, even = head[1::2], head[0::2]
        if odd.count(0) > 0.9 * len(odd) and not even.count(0):
            return "UTF-16LE"  # no mark: the order iconv must be told
        if even.count(0) > 0.9 * len(even) and not odd.count(0):
            return "UTF-16BE"
    return None


def _binary_problem(raw_head: bytes, text_head: str, path: Path) -> str | None:
    """Why the start of a file looks binary (a NUL byte, or many control characters)."""
    encoding = _utf16_or_32(raw_head)
    if encoding:
        return (f"{path} is {encoding} text, not UTF-8; convert it with `iconv -f {encoding} -t UTF-8 {path} > "
                f"{path.stem}-utf8{path.suffix}` and train on that")
    nul = raw_head.find(b"\x00")
    if nul >= 0:
        return f"{path} looks binary (NUL byte at offset {nul}); Mnemos learns from UTF-8 text files"
    control = sum(1 for c in text_head if ord(c) < 32 and c not in "\n\r\t\f\v")
    if control > 0.1 * len(text_head):
        return (f"{path} looks binary ({control} control characters in its first {len(text_head)}); "
                f"Mnemos learns from UTF-8 text files")
    return None


def _utf8_problem(raw: bytes, exc: UnicodeDecodeError, offset: int, path: Path) -> str:
    return (f"{path} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {offset + exc.start}); "
            f"re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`")


def _empty_problem(path: Path) -> str:
    return f"{path} is empty; put some text in it or choose another file"


def _check_head(raw: bytes, path: Path) -> None:
    """A one-line DataError if ``raw`` (a file's bytes, or their start) is empty or its
    first ``HEAD_BYTES`` look binary."""
    if not raw:
        raise DataError(_empty_problem(path))
    head = raw[:HEAD_BYTES]
    problem = _binary_problem(head, head.decode("utf-8", "replace"), path)
    if problem:
        raise DataError(problem)


def _read_bytes(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes of a checked path (all with -1); a DataError if unreadable."""
    _check_path(path)
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}); check its permissions") from None


def _decode(raw: bytes, path: Path) -> str:
    """Decode UTF-8 (a leading BOM is dropped) or say exactly what is wrong."""
    _check_head(raw, path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(_utf8_problem(raw, exc, 0, path)) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | os.PathLike) -> str:
    """Return the text of a UTF-8 file, or raise a one-line :class:`DataError` naming the
    problem (missing, a directory, empty, binary, invalid UTF-8 with its byte offset)."""
    path = Path(path)
    return _decode(_read_bytes(path), path)


def check_text_head(path: str | os.PathLike) -> None:
    """The checks of :func:`read_text` that its first ``HEAD_BYTES`` allow (missing, a
    directory, empty, binary, invalid UTF-8 there), without reading a large file whole:
    a run refuses such a file before it claims a folder or starts workers."""
    path = Path(path)
    raw = _read_bytes(path, HEAD_BYTES)
    _check_head(raw, path)
    try:  # not final: a character cut at the end of the head is not an error
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
    except UnicodeDecodeError as exc:
        raise DataError(_utf8_problem(raw, exc, 0, path)) from None


def check_length(n_tokens: int, block_size: int, path: str | os.PathLike, what: str = "text") -> None:
    """A file must hold at least one context window plus the token it predicts."""
    if n_tokens < block_size + 1:
        raise DataError(
            f"{path}: the {what} is shorter than one context window ({n_tokens} tokens, need at least "
            f"{block_size + 1}); use more text or a smaller --block-size"
        )


# --------------------------------------------------------------------------- inspecting


@dataclass(frozen=True)
class FileInfo:
    """What the Datasets screen shows about a file. ``problem`` is None when it is usable."""

    path: str
    size: int  # bytes on disk
    chars: int
    lines: int
    distinct_chars: int
    est_tokens: int  # estimated tokens at the given vocabulary size
    problem: str | None


def bytes_per_token(vocab_size: int) -> float:
    """Rough bytes per token of a BPE trained on English-like text, for estimates shown
    before a tokenizer exists. Measured with Mnemos' BPE on Shakespeare: 1.89 at 512,
    2.28 at 1024, 2.90 at 4096 (and GPT-2's 50k gives about 4 on web English)."""
    if vocab_size <= 256:
        return 1.0
    if vocab_size < 512:
        return 1.0 + 0.89 * math.log2(vocab_size / 256)
    return 1.89 + 0.39 * math.log2(vocab_size / 512)


def inspect_text_file(path: str | os.PathLike, vocab_size: int = 256, block_size: int | None = None) -> FileInfo:
    """Numbers about a text file for a preview, never raising for a bad file: the reason
    it cannot be used goes in ``problem`` (also "too short" when ``block_size`` is given).
    Reads the file in pieces, so a huge file costs time but not memory."""
    path = Path(path)
    try:
        _check_path(path)
        size = path.stat().st_size
    except (DataError, OSError) as exc:
        return FileInfo(str(path), 0, 0, 0, 0, 0, str(exc))
    if size == 0:
        return FileInfo(str(path), 0, 0, 0, 0, 0, _empty_problem(path))
    decoder = codecs.getincrementaldecoder("utf-8")()
    chars = lines = offset = 0
    distinct: set[str] = set()
    last = ""
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(ENCODE_CHUNK)
                text = decoder.decode(raw, final=not raw)
                if offset == 0:
                    problem = _binary_problem(raw[:HEAD_BYTES], text[:HEAD_BYTES], path)
                    if problem:
                        return FileInfo(str(path), size, 0, 0, 0, 0, problem)
                    if text.startswith("\ufeff"):
                        text = text[1:]
                chars += len(text)
                lines += text.count("\n")
                distinct.update(text)
                last = text[-1:] or last
                offset += len(raw)
                if not raw:
                    break
    except UnicodeDecodeError:
        try:  # the rare bad file: read it whole for the exact byte offset
            read_text(path)
        except DataError as exc:
            return FileInfo(str(path), size, 0, 0, 0, 0, str(exc))
    except OSError as exc:
        return FileInfo(str(path), size, 0, 0, 0, 0, f"{path}: cannot read it ({exc.strerror}); check its permissions")
    est = math.ceil(size / bytes_per_token(vocab_size))
    problem = None
    if block_size is not None:
        try:
            check_length(est, block_size, path, "text (estimated)")
        except DataError as exc:
            problem = str(exc)
    return FileInfo(str(path), size, chars, lines + (last != "\n"), len(distinct), est, problem)


# --------------------------------------------------------------------------- tokens


def content_hash(data: bytes | str) -> str:
    """Stable short hash of a file's content (hex), used in cache keys and checkpoints."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def _writable(folder: Path) -> bool:
    """Writable by us, and not marked read-only (root ignores the mode bits otherwise)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o200)
    except OSError:
        return False


def default_cache_dir(path: Path) -> Path:
    """``.cache/`` next to the data file, or ``~/.cache/mnemos`` if that folder is read-only."""
    local = Path(os.path.realpath(path)).parent / ".cache"
    if _writable(local) if local.exists() else _writable(local.parent):
        return local
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnemos"


def encode_text(text: str, tokenizer, progress: Progress | None = None) -> np.ndarray:
    """Encode a whole file's text to an int32 array, block by block with progress.

    The blocks are cut where the pre-tokenizer would cut anyway (``text_blocks``), so
    the ids are exactly those of encoding the text in one piece."""
    from mnemos.tokenizer import text_blocks

    if not tokenizer.merges:  # byte level: the ids are the UTF-8 bytes
        if progress is not None:
            progress(len(text), len(text))
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
    parts, done = [], 0
    for block in text_blocks(text, ENCODE_CHUNK):
        parts.append(np.asarray(tokenizer.encode_array(block), dtype=np.int32))
        done += len(block)
        if progress is not None:
            progress(done, len(text))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def train_tokenizer(text: str, vocab_size: int, cache_dir: str | os.PathLike | None = None, name: str = "text",
                    progress: Progress | None = None):
    """A BPE of ``vocab_size`` trained on ``text``, from the cache when the same text was
    trained on before (training is deterministic, so the cached one is identical)."""
    from mnemos.tokenizer import FORMAT_VERSION, BPETokenizer

    if vocab_size == 256:
        return BPETokenizer()
    cached = Path(cache_dir or ".") / f"{name}-{content_hash(text)}-bpe{vocab_size}-v{FORMAT_VERSION}.json"
    if cache_dir is not None and cached.is_file():
        try:
            tokenizer = BPETokenizer.load(cached)
            if progress is not None:
                progress(1, 1)
            return tokenizer
        except (MnemosError, ValueError, TypeError, KeyError, AttributeError, RecursionError, OSError):
            pass  # a damaged or foreign cache file is retrained below
    tokenizer = BPETokenizer.train(text, vocab_size, progress=progress)
    if cache_dir is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(cached)
        except (OSError, MnemosError):
            pass
    return tokenizer


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def load_tokens(path: str | os.PathLike, tokenizer, cache_dir: str | os.PathLike | None = None,
                progress: Progress | None = None, text: str | None = None) -> np.ndarray:
    """Token ids of a text file, memory-mapped from the cache when it is there.

    The cache file name holds the content hash of the file and the tokenizer's
    fingerprint, so an edited file or another tokenizer never reuses stale ids. A cache
    that cannot be written (read-only disk) only costs the re-encoding next time.
    """
    path = Path(path)
    if text is None:
        text = read_text(path)
    key = f"{path.stem}-{content_hash(text)}-{tokenizer.fingerprint()[:16]}-v{CACHE_FORMAT}.npy"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(path)
    cached = cache / key
    if cached.is_file():
        try:
            tokens = np.load(cached, mmap_mode="r", allow_pickle=False)
            # a cache file damaged or replaced (ids out of the vocabulary would fail mid-training)
            if (tokens.ndim == 1 and tokens.dtype == _token_dtype(tokenizer.vocab_size)
                    and len(tokens) <= 4 * len(text) and (not len(tokens) or tokens.max() < tokenizer.vocab_size)):
                if progress is not None:
                    progress(len(text), len(text))
                return tokens
        except (OSError, ValueError):
            pass  # a damaged cache file is re-encoded below
    tokens = encode_text(text, tokenizer, progress).astype(_token_dtype(tokenizer.vocab_size))
    try:
        write_atomic(cached, lambda f: np.save(f, tokens, allow_pickle=False))
    except OSError:
        return tokens
    return np.load(cached, mmap_mode="r", allow_pickle=False)


def split_train_val(tokens: np.ndarray, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The first ``1 - val_fraction`` of the tokens train, the rest validate (views)."""
    n = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:n], tokens[n:]


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``block_size`` tokens (nanoGPT's ``get_batch``):
    ``x[b]`` starts at a uniform offset, ``y[b]`` is ``x[b]`` shifted by one. int64."""
    return _windows(tokens, rng.integers(0, len(tokens) - block_size, size=batch_size), block_size)


def _windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``x``: the ``block_size`` tokens from each start; ``y``: the same shifted by one. int64."""
    windows = np.asarray(tokens[starts[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    return windows[:, :-1], windows[:, 1:]


class EpochSampler:
    """Training windows drawn in epochs: each pass over the text cuts it into ``n`` windows of
    ``block_size + 1`` tokens, starting at a random offset (so the cuts move from pass to pass),
    and visits all ``n`` once, in a random order; then the next pass.

    Random windows (:func:`get_batch`) are drawn with replacement: after 3 passes' worth of
    windows the times a token has been seen follow a Poisson law of mean 3, so 5% of the text
    has not been seen and 8% six times or more. Epochs show every token 3 times. When the text
    is repeated, that trains a better model (docs/auto.md: Shakespeare at 3.3 passes, 1.4% and
    1.9% lower validation bits per byte at two seeds).

    The sampler holds no generator state: window ``k`` (counted from the start of the run,
    :attr:`drawn`) is a function of the seed and ``k`` alone, so a checkpoint that stores
    ``drawn`` resumes it exactly, whatever the batch size afterwards."""

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int, drawn: int = 0):
        self.tokens, self.block_size, self.seed, self.drawn = tokens, block_size, seed, drawn
        span = len(tokens) - block_size - 1  # the last start a window may have
        if span < 0:
            raise DataError(f"{len(tokens)} tokens are too few for one window of {block_size + 1}")
        self.n = max(1, span // block_size)  # windows per epoch
        self._slack = span - (self.n - 1) * block_size  # room left to shift the cuts
        self._epoch = None  # (epoch, offset, order) of the last epoch drawn from

    def _order(self, epoch: int) -> tuple[int, np.ndarray]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, 4, epoch])
            offset = int(rng.integers(min(self.block_size, self._slack + 1)))
            self._epoch = (epoch, offset, rng.permutation(self.n))
        return self._epoch[1], self._epoch[2]

    def starts(self, count: int) -> np.ndarray:
        """The start offsets of the next ``count`` windows (and counts them drawn)."""
        k = self.drawn + np.arange(count, dtype=np.int64)
        self.drawn += count
        epochs, index = np.divmod(k, self.n)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):  # one, or a few when a batch spans the end of an epoch
            mask = epochs == epoch
            offset, order = self._order(int(epoch))
            out[mask] = offset + order[index[mask]] * self.block_size
        return out

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``x``, ``y`` as :func:`get_batch` returns them, from the next ``batch_size`` windows."""
        return _windows(self.tokens, self.starts(batch_size), self.block_size)
