"""mnemos.data: reading and checking text files, the token cache, batches."""

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mnemos import data
from mnemos.data import (EpochSampler, FileInfo, check_length, encode_text, get_batch, inspect_text_file, load_tokens,
                         read_text, split_train_val, train_tokenizer)
from mnemos.errors import DataError
from mnemos.tokenizer import BPETokenizer

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n   indented  line  \n"
        "Ünïcödé — 東京 🙂 tabs\tand  double  spaces\n") * 8


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXT, 300)


# --------------------------------------------------------------------------- read_text


def test_read_text_returns_utf8_text(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(TEXT, encoding="utf-8")
    assert read_text(f) == TEXT


def test_read_text_drops_a_byte_order_mark(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbfhello\n")
    assert read_text(f) == "hello\n"


@pytest.mark.parametrize("make, words", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
    (lambda p: (p.write_bytes(b"abc\x00def" * 10), p)[1], "NUL byte at offset 3"),
    (lambda p: (p.write_bytes(bytes(range(1, 32)) * 50), p)[1], "looks binary"),
    (lambda p: (p.write_bytes("héllo ".encode() + b"\xff\xfe world"), p)[1], "offset 7"),
])
def test_read_text_bad_files_raise_one_line_data_errors(tmp_path, make, words):
    path = make(tmp_path / "bad.txt")
    with pytest.raises(DataError) as info:
        read_text(path)
    message = str(info.value)
    assert words in message
    assert "\n" not in message
    assert str(path) in message


def test_invalid_utf8_names_the_byte(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"byte 0xe9 at offset 3"):
        read_text(f)


def test_check_length_needs_one_window_plus_one_token():
    check_length(65, 64, "f.txt")
    with pytest.raises(DataError, match="shorter than one context window"):
        check_length(64, 64, "f.txt")


# --------------------------------------------------------------------------- inspect


def test_inspect_text_file_counts(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("ab\ncd\né", encoding="utf-8")
    info = inspect_text_file(f)
    assert info == FileInfo(str(f), 8, 7, 3, 6, 8, None)  # é is two bytes: 8 byte-level tokens


def test_inspect_text_file_reads_in_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "ENCODE_CHUNK", 5)  # split multi-byte characters between reads
    f = tmp_path / "a.txt"
    f.write_text("\ufeff" + TEXT, encoding="utf-8")
    info = inspect_text_file(f)
    assert (info.chars, info.lines, info.distinct_chars) == (len(TEXT), TEXT.count("\n"), len(set(TEXT)))
    assert info.problem is None
    bad = tmp_path / "bad.txt"
    bad.write_bytes(TEXT.encode() + b"\xc3(")
    assert f"offset {len(TEXT.encode())}" in inspect_text_file(bad).problem


def test_inspect_text_file_estimates_fewer_tokens_with_merges(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(TEXT, encoding="utf-8")
    assert inspect_text_file(f, vocab_size=1024).est_tokens < inspect_text_file(f).est_tokens


def test_inspect_text_file_reports_problems_instead_of_raising(tmp_path):
    f = tmp_path / "bin.dat"
    f.write_bytes(b"\x00\x01\x02")
    info = inspect_text_file(f)
    assert info.problem is not None and "binary" in info.problem
    assert inspect_text_file(tmp_path / "missing.txt").problem.endswith("sample corpus)")
    short = tmp_path / "short.txt"
    short.write_text("tiny text")
    assert "shorter than one context window" in inspect_text_file(short, block_size=64).problem
    assert inspect_text_file(short, block_size=4).problem is None


# --------------------------------------------------------------------------- tokens


def test_encode_text_in_blocks_equals_encoding_at_once(bpe, monkeypatch):
    monkeypatch.setattr(data, "ENCODE_CHUNK", 37)
    seen = []
    ids = encode_text(TEXT, bpe, progress=lambda done, total: seen.append((done, total)))
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, bpe.encode_array(TEXT))
    assert len(seen) > 5 and seen[-1] == (len(TEXT), len(TEXT))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_load_tokens_caches_and_memory_maps(tmp_path, bpe):
    f = tmp_path / "train.txt"
    f.write_text(TEXT, encoding="utf-8")
    cache = tmp_path / "cache"
    first = load_tokens(f, bpe, cache)
    files = list(cache.glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith("train-")
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not mkstemp's 0600
    calls = []
    monkey_encode = bpe.encode_array
    try:
        bpe.encode_array = lambda text: calls.append(text) or monkey_encode(text)
        second = load_tokens(f, bpe, cache)
    finally:
        del bpe.encode_array
    assert calls == []  # served from the cache, not re-encoded
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(first, bpe.encode_array(TEXT))
    np.testing.assert_array_equal(second, first)


def test_cache_key_follows_content_and_tokenizer(tmp_path, bpe):
    f = tmp_path / "train.txt"
    f.write_text(TEXT, encoding="utf-8")
    cache = tmp_path / "cache"
    load_tokens(f, bpe, cache)
    f.write_text(TEXT + "more", encoding="utf-8")
    changed = load_tokens(f, bpe, cache)
    np.testing.assert_array_equal(changed, bpe.encode_array(TEXT + "more"))
    byte_level = BPETokenizer.train(TEXT, 256)
    raw = load_tokens(f, byte_level, cache)
    np.testing.assert_array_equal(raw, np.frombuffer((TEXT + "more").encode(), np.uint8))
    assert len(list(cache.glob("*.npy"))) == 3


def test_damaged_cache_file_is_reencoded(tmp_path, bpe):
    f = tmp_path / "train.txt"
    f.write_text(TEXT, encoding="utf-8")
    cache = tmp_path / "cache"
    load_tokens(f, bpe, cache)
    (cached,) = cache.glob("*.npy")
    cached.write_bytes(b"garbage")
    np.testing.assert_array_equal(load_tokens(f, bpe, cache), bpe.encode_array(TEXT))


@pytest.mark.parametrize("replacement", [np.full(50, 60000, np.uint16), np.zeros(5, np.float32),
                                         np.zeros((3, 3), np.uint16), np.zeros(10 ** 6, np.uint16)])
def test_a_cache_file_of_the_wrong_ids_dtype_shape_or_size_is_reencoded(tmp_path, bpe, replacement):
    """Issue 13: ids beyond the vocabulary would fail mid-training; a cache that cannot be
    this text's ids is ignored."""
    f = tmp_path / "train.txt"
    f.write_text(TEXT, encoding="utf-8")
    cache = tmp_path / "cache"
    load_tokens(f, bpe, cache)
    (cached,) = cache.glob("*.npy")
    np.save(cached, replacement)
    np.testing.assert_array_equal(load_tokens(f, bpe, cache), bpe.encode_array(TEXT))


def test_default_cache_dir_is_next_to_the_file(tmp_path, bpe):
    f = tmp_path / "train.txt"
    f.write_text(TEXT, encoding="utf-8")
    load_tokens(f, bpe)
    assert len(list((tmp_path / ".cache").glob("train-*.npy"))) == 1


def test_trained_tokenizer_is_cached_by_text_and_size(tmp_path, monkeypatch):
    first = train_tokenizer(TEXT, 290, tmp_path, "train")
    assert first.vocab_size == 291 and len(list(tmp_path.glob("train-*-bpe290-*.json"))) == 1
    monkeypatch.setattr(BPETokenizer, "train", classmethod(lambda *a, **k: pytest.fail("retrained")))
    assert train_tokenizer(TEXT, 290, tmp_path, "train") == first
    monkeypatch.undo()
    assert train_tokenizer(TEXT + "x", 290, tmp_path, "train") is not None
    assert len(list(tmp_path.glob("train-*.json"))) == 2
    assert train_tokenizer(TEXT, 256, tmp_path).merges == []  # byte level needs no training


def test_read_only_data_folder_caches_in_the_home_cache(tmp_path, monkeypatch):
    folder = tmp_path / "corpora"
    folder.mkdir()
    (folder / "train.txt").write_text(TEXT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert data.default_cache_dir(folder / "train.txt") == folder / ".cache"
    folder.chmod(0o555)
    try:
        assert data.default_cache_dir(folder / "train.txt") == tmp_path / "home-cache" / "mnemos"
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- batches


def test_get_batch_windows_and_targets():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(tokens, 7, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (7, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)  # y is x shifted by one token
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous windows


def test_get_batch_is_seeded_and_covers_every_offset():
    tokens = np.arange(20, dtype=np.int32)
    a = get_batch(tokens, 4, 5, np.random.default_rng(42))
    b = get_batch(tokens, 4, 5, np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    x, y = get_batch(tokens, 5000, 5, np.random.default_rng(1))
    assert set(x[:, 0]) == set(range(15))  # every start 0 .. len - block - 1
    assert y.max() == 19


def test_epoch_sampler_visits_every_window_once_per_pass():
    tokens = np.arange(1000, dtype=np.uint16)
    sampler = EpochSampler(tokens, 16, seed=3)
    n = sampler.n
    assert n == (1000 - 17) // 16  # windows of 17 tokens (x and its shifted y) that fit with any offset
    passes = [sampler.starts(n) for _ in range(4)]
    for starts in passes:
        assert len(set(starts)) == n  # no window twice within a pass
        offsets = starts % 16
        assert len(set(offsets)) == 1  # one cut of the text per pass: the windows do not overlap
        assert starts.min() >= 0 and starts.max() <= 1000 - 17
        assert sorted(starts) == list(offsets[0] + 16 * np.arange(n))  # every window of that cut
    assert len({tuple(p) for p in passes}) == 4  # a new order each pass
    assert len({p[0] % 16 for p in passes}) > 1  # and the cuts move
    x, y = EpochSampler(tokens, 16, seed=3).batch(7)
    assert x.shape == y.shape == (7, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], passes[0][:7])
    np.testing.assert_array_equal(y, x + 1)


def test_epoch_sampler_resumes_from_the_count_alone():
    tokens = np.arange(300, dtype=np.int32)
    straight = EpochSampler(tokens, 8, seed=5).starts(200)  # ~5.7 passes of 35 windows
    pieces = EpochSampler(tokens, 8, seed=5)
    first = np.concatenate([pieces.starts(k) for k in (3, 50, 1, 46)])  # batch sizes may change
    resumed = EpochSampler(tokens, 8, seed=5, drawn=pieces.drawn)  # what a checkpoint restores
    np.testing.assert_array_equal(np.concatenate([first, resumed.starts(100)]), straight)
    assert not np.array_equal(EpochSampler(tokens, 8, seed=6).starts(200), straight)


@given(length=st.integers(1, 400), block=st.integers(1, 64), seed=st.integers(0, 2 ** 32), count=st.integers(1, 300))
def test_epoch_sampler_windows_always_fit(length, block, seed, count):
    """Any text at least one window long: every window lies inside it, none twice in a pass."""
    tokens = np.arange(block + length, dtype=np.int64)
    sampler = EpochSampler(tokens, block, seed)
    starts = sampler.starts(count)
    assert starts.min() >= 0 and starts.max() + block + 1 <= len(tokens)
    for lo in range(0, count, sampler.n):
        assert len(set(starts[lo:lo + sampler.n])) == len(starts[lo:lo + sampler.n])


def test_epoch_sampler_refuses_a_text_shorter_than_a_window():
    with pytest.raises(DataError, match="too few"):
        EpochSampler(np.arange(16), 16, seed=0)


def test_split_train_val_is_the_last_tenth():
    tokens = np.arange(1000)
    train, val = split_train_val(tokens)
    assert len(train) == 900 and len(val) == 100 and val[0] == 900
