"""The byte-level BPE tokenizer: its specification, read as tests.

Covers the classic ``aaabdaaabac`` example, incremental training against a naive
reference BPE, encoding against sequential merge application, round trips over
arbitrary Unicode, special tokens, save/load and bad files, determinism and the
tie-break rule, and exact parity with Hugging Face ``tokenizers`` / ``transformers``
on the exported files.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnemos.errors import MnemosError, TokenizerError
from mnemos.export import write_tokenizer_json, write_vocab_merges
from mnemos.tokenizer import EOT, GPT2_PATTERN, BPETokenizer, text_blocks

SAMPLE = (
    "Le cœur a ses raisons que la raison ne connaît point. L'été, où es-tu ? Ça va, à bientôt !\n"
    "The quick brown fox jumps over the lazy dog; it's 12345 times faster, isn't it?\r\n"
    "Ünïcödé ñ 日本語のテキスト 中文 한국어 Ελληνικά русский текст العربية\n"
    "Emoji: 🎉🎉 👩‍👩‍👧 🇫🇷 e\u0301 (e + combining acute)   spaces   and\ttabs\t\t\n\n"
    "    indented code: x = f(a, b) * 3.14159 # comment\n"
    "digits 0 7 42 1999 2026 007 3,000,000.50\u00a0€ 100%\n"
)
TEXT = SAMPLE * 8
ARBITRARY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
FIXED = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(TEXT, vocab_size=400)


# ---------------------------------------------------------------- references
def naive_merges(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Textbook BPE: recount every pair after every merge (slow, obviously right)."""
    words = Counter(tuple(c.encode("utf-8")) for c in regex.findall(GPT2_PATTERN, text))
    merges = []
    while len(merges) < num_merges:
        pairs = Counter()
        for w, n in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += n
        if not pairs:
            break
        _, best = min((-n, p) for p, n in pairs.items())  # most frequent, then smallest ids
        new = 256 + len(merges)
        merges.append(best)
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def sequential_encode(tok: BPETokenizer, text: str) -> list[int]:
    """Encode by applying every merge in rank order to every chunk."""
    ids = []
    for chunk in regex.findall(GPT2_PATTERN, text):
        w = list(chunk.encode("utf-8"))
        for (a, b), new in tok.merges:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            w = out
        ids.extend(w)
    return ids


# ---------------------------------------------------------------- training
def test_wikipedia_aaabdaaabac():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    # aa -> Z (count 4), then ab and Za tie at 2: the smaller ids (a, b) win, then ZY -> X
    assert tok.merges == [((97, 97), 256), ((97, 98), 257), ((256, 257), 258)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_vocab_size_convention_special_tokens_on_top():
    tok = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=(EOT, "<|pad|>"))
    assert len(tok.merges) == 44
    assert tok.vocab_size == 302
    assert tok.special_tokens == {EOT: 300, "<|pad|>": 301}
    assert tok.eot_id == 300
    assert [new for _, new in tok.merges] == list(range(256, 300))


def test_byte_level_256_has_no_merges():
    tok = BPETokenizer.train(TEXT, vocab_size=256)
    assert tok.merges == []
    assert tok.vocab_size == 257 and tok.eot_id == 256
    text = "héllo 🎉"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert BPETokenizer.train(TEXT, 256, special_tokens=()).vocab_size == 256


def test_incremental_training_matches_naive_bpe():
    assert BPETokenizer.train(TEXT, vocab_size=256 + 120).merges == [
        (p, 256 + i) for i, p in enumerate(naive_merges(TEXT, 120))
    ]


@FIXED
@given(st.text(st.sampled_from("aab c\n😀é"), max_size=60), st.integers(1, 25))
def test_incremental_training_matches_naive_bpe_on_random_text(text, n):
    tok = BPETokenizer.train(text, vocab_size=256 + n)
    expected = naive_merges(text, n)
    assert [pair for pair, _ in tok.merges] == expected
    learned = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    assert len(set(learned)) == len(learned)  # no two ids share bytes (see mnemos.bpe_train)


def test_small_text_gives_fewer_merges():
    tok = BPETokenizer.train("abab", vocab_size=1000)
    assert tok.merges == [((97, 98), 256), ((256, 256), 257)]
    assert tok.vocab_size == 259 and tok.eot_id == 258


def test_ties_broken_by_smallest_pair_ids():
    # every pair occurs once: " c" (32, 99) is the smallest, then "ab", then "cd"
    tok = BPETokenizer.train("ab cd", vocab_size=259)
    assert [pair for pair, _ in tok.merges] == [(32, 99), (97, 98), (256, 100)]


def test_training_is_deterministic_and_order_independent():
    docs = SAMPLE.split("\n")
    a = BPETokenizer.train(docs, vocab_size=350)
    b = BPETokenizer.train(list(reversed(docs)), vocab_size=350)
    assert a.merges == b.merges
    assert a.fingerprint() == b.fingerprint() == BPETokenizer.train(docs, vocab_size=350).fingerprint()


def test_special_token_strings_are_not_learned():
    text = f"one document{EOT}another document{EOT}" * 50
    tok = BPETokenizer.train(text, vocab_size=400)
    learned = [tok.token_bytes(new) for _, new in tok.merges]
    assert not any(b"<|" in t or b"|>" in t for t in learned)
    assert all(t != EOT.encode() for t in learned)


def test_progress_reports_merges():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyzéà"), size=rng.integers(2, 9))) for _ in range(3000)]
    calls = []
    BPETokenizer.train(" ".join(words), vocab_size=256 + 500, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 500) and calls[-1] == (500, 500)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and len(calls) <= 102


def test_progress_can_cancel_training():
    class Cancelled(Exception):
        pass

    def progress(done, total):
        if done >= 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        BPETokenizer.train(TEXT, vocab_size=400, progress=progress)


def test_progress_total_shrinks_when_text_runs_out():
    calls = []
    BPETokenizer.train("abab", vocab_size=300, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 44) and calls[-1] == (2, 2)


@pytest.mark.parametrize("bad", [255, 0, -1, 3.5, True, "4096"])
def test_bad_vocab_size(bad):
    with pytest.raises(TokenizerError, match="vocab_size"):
        BPETokenizer.train(TEXT, vocab_size=bad)


def test_train_rejects_non_text():
    with pytest.raises(TokenizerError, match="bytes"):
        BPETokenizer.train([b"bytes are not text"], vocab_size=300)


# ---------------------------------------------------------------- encoding
def test_encode_equals_sequential_merges(tok):
    assert tok.encode(TEXT) == sequential_encode(tok, TEXT)


@FIXED
@given(text=ARBITRARY_TEXT)
def test_encode_equals_sequential_merges_on_arbitrary_text(tok, text):
    assert tok.encode(text) == sequential_encode(tok, text)


def test_long_chunks_train_like_naive_bpe_and_encode_like_sequential_merges():
    rng = np.random.default_rng(1)
    dna = "".join(rng.choice(list("ACGT"), size=3000))  # one 3000-byte chunk
    text = dna + " " + "中文的段落没有空格" * 40  # and one long chunk of Chinese
    tok = BPETokenizer.train(text, vocab_size=256 + 80)
    assert [pair for pair, _ in tok.merges] == naive_merges(text, 80)
    assert tok.encode(text) == sequential_encode(tok, text)
    assert tok.decode(tok.encode(text)) == text


@FIXED
@given(text=ARBITRARY_TEXT | st.text(st.sampled_from("ACGT中文 "), max_size=300))
@example(text=SAMPLE)
def test_heap_path_for_long_chunks_gives_the_same_ids(tok, monkeypatch, text):
    import mnemos.tokenizer

    monkeypatch.setattr(mnemos.tokenizer, "_LONG_WORD", 1)  # every chunk takes the long-chunk path
    fresh = BPETokenizer([pair for pair, _ in tok.merges])
    assert fresh.encode(text) == sequential_encode(tok, text)


@FIXED
@given(text=ARBITRARY_TEXT)
@example("🎉 e\u0301\r\n\x00\x00  \t\n  x")
@example("")
@example("\U0010ffff\ufeff\u200b\u2028")
def test_round_trip_arbitrary_unicode(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_sample_round_trips_and_compresses(tok):
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    ratio = len(TEXT.encode()) / len(ids)
    smaller = BPETokenizer.train(TEXT, vocab_size=300)
    assert ratio > len(TEXT.encode()) / len(smaller.encode(TEXT)) > 1.2  # more merges, fewer tokens


def test_encode_array_matches_encode(tok):
    arr = tok.encode_array(TEXT)
    assert arr.dtype == np.int32
    assert arr.tolist() == tok.encode(TEXT)
    assert tok.decode(arr) == TEXT


@FIXED
@given(text=st.text(st.sampled_from(" \n\t\r\xa0ab1.'s"), max_size=80), block=st.integers(1, 12))
def test_text_blocks_keep_the_chunks(text, block):
    blocks = list(text_blocks(text, block))
    assert "".join(blocks) == text
    assert [c for b in blocks for c in regex.findall(GPT2_PATTERN, b)] == regex.findall(GPT2_PATTERN, text)


def test_long_text_is_encoded_in_blocks_identically(tok):
    long = TEXT * 400  # > 1 MB: several blocks
    assert len(list(text_blocks(long))) > 1
    assert tok.encode_array(long).tolist() == tok.encode(TEXT) * 400


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "ok " * 10 + "\ud83d"])
def test_lone_surrogates_are_rejected(tok, text):
    with pytest.raises(TokenizerError, match="surrogate") as err:
        tok.encode(text)
    assert "\n" not in str(err.value)
    with pytest.raises(TokenizerError, match="surrogate"):
        BPETokenizer.train(text, vocab_size=300)


def test_decode_invalid_utf8_replaces(tok):
    assert tok.decode([0xFF, 104, 105]) == "\ufffdhi"
    euro = tok.encode("€")
    assert tok.decode_bytes(euro) == "€".encode()
    cut = list("€".encode())[:2]  # a character cut in the middle, as sampling can do
    assert tok.decode(cut) == "\ufffd"
    assert tok.decode([]) == ""


@pytest.mark.parametrize("bad", [-1, "vocab_size", 10**9, 2.0])
def test_decode_unknown_id(tok, bad):
    bad = tok.vocab_size if bad == "vocab_size" else bad  # the first id past the end
    with pytest.raises(TokenizerError, match="not in this tokenizer"):
        tok.decode([1, bad])
    assert tok.decode([1, tok.vocab_size - 1]) == "\x01" + EOT


def test_token_bytes(tok):
    assert tok.token_bytes(65) == b"A"
    assert tok.token_bytes(tok.eot_id) == EOT.encode()
    for (a, b), new in tok.merges:
        assert tok.token_bytes(new) == tok.token_bytes(a) + tok.token_bytes(b)


# ---------------------------------------------------------------- special tokens
def test_special_tokens_are_plain_text_by_default(tok):
    text = f"hello{EOT}world"
    ids = tok.encode(text)
    assert tok.eot_id not in ids
    assert ids == tok.encode("hello") + tok.encode(EOT) + tok.encode("world")
    assert tok.encode(text, allowed_special="none") == ids


def test_special_tokens_when_allowed(tok):
    text = f"hello{EOT}world{EOT}"
    ids = tok.encode(text, allowed_special="all")
    assert ids == tok.encode("hello") + [tok.eot_id] + tok.encode("world") + [tok.eot_id]
    assert tok.encode(text, allowed_special={EOT}) == ids
    assert tok.decode(ids) == text
    assert tok.encode_array(text, allowed_special="all").tolist() == ids


def test_special_tokens_raise_when_asked(tok):
    with pytest.raises(TokenizerError, match="special token"):
        tok.encode(f"a{EOT}", allowed_special="none_raise")
    assert tok.encode("plain", allowed_special="none_raise") == tok.encode("plain")


def test_only_the_allowed_special_tokens_match():
    tok = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=(EOT, "<|pad|>"))
    ids = tok.encode(f"<|pad|>{EOT}", allowed_special={"<|pad|>"})
    assert ids == [301] + tok.encode(EOT)
    assert tok.encode("<|pad|>", allowed_special=set()) == tok.encode("<|pad|>")
    nested = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=("<|a|>", "<|a|><|b|>"))
    assert nested.encode("<|a|><|b|><|a|>", allowed_special="all") == [301, 300]
    assert nested.encode("<|a|><|b|>", allowed_special={"<|a|>"}) == [300] + nested.encode("<|b|>")
    with pytest.raises(TokenizerError, match="unknown special"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TokenizerError, match="allowed_special"):
        tok.encode("x", allowed_special="some")


# ---------------------------------------------------------------- files
def test_save_load_identity(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    assert back == tok
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    assert back.fingerprint() == tok.fingerprint()
    assert back.encode(TEXT, allowed_special="all") == tok.encode(TEXT, allowed_special="all")
    data = json.loads(path.read_text("utf-8"))
    assert data["format"] == "mnemos-bpe" and data["version"] == 1
    assert data["vocab_size"] == tok.vocab_size
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_fingerprint_tracks_what_decides_the_ids(tok):
    fp = tok.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert BPETokenizer.train(TEXT, vocab_size=399).fingerprint() != fp
    assert BPETokenizer.train(TEXT, vocab_size=400, special_tokens=("<|x|>",)).fingerprint() != fp
    assert BPETokenizer.train(TEXT, vocab_size=400).fingerprint() == fp


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


GOOD = {"format": "mnemos-bpe", "version": 1, "pattern": GPT2_PATTERN, "special_tokens": {}, "merges": []}


def _with(**changes):
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not valid JSON"),
        ('{"format": "mnemos-bpe", "version": 1, "merges": [[97, 9', "not valid JSON"),
        ("[1, 2, 3]", "not a Mnemos tokenizer"),
        ('{"version": "1.0", "model": {"type": "BPE"}}', "Hugging Face"),
        (_with(version=2), "version"),
        ('{"format": "mnemos-bpe", "version": 1}', "corrupt"),
        (_with(merges=[[1]]), "corrupt"),
        (_with(merges=[["a", "b"]]), "corrupt"),
        (_with(merges=[[97.0, 98]]), "corrupt"),
        (_with(merges=5), "corrupt"),
        (_with(merges=[[97, 300]]), "unknown token"),
        (_with(merges=[[97, 98], [97, 98]]), "repeats"),
        (_with(pattern=r"\w+|\s+"), "pattern"),
        (_with(special_tokens={"<|e|>": 7}), "corrupt"),
        (_with(special_tokens={"": 256}), "non-empty"),
        (_with(vocab_size=300), "corrupt"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = _write(tmp_path / "tokenizer.json", content)
    with pytest.raises(TokenizerError, match=message) as err:
        BPETokenizer.load(path)
    assert isinstance(err.value, MnemosError)
    assert "\n" not in str(err.value)


def test_good_minimal_file_loads(tmp_path):
    tok = BPETokenizer.load(_write(tmp_path / "tokenizer.json", _with(merges=[[97, 98]], special_tokens={EOT: 257})))
    assert tok.merges == [((97, 98), 256)] and tok.eot_id == 257


def test_truncated_saved_file(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(TokenizerError, match="corrupt or truncated"):
        BPETokenizer.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        BPETokenizer.load(tmp_path / "nope.json")
    with pytest.raises(TokenizerError, match="cannot read"):
        BPETokenizer.load(tmp_path)


# ---------------------------------------------------------------- Hugging Face parity
@pytest.fixture(scope="module")
def hf_tok(tok, tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers", reason="HF parity needs the `tokenizers` peer (pip install tokenizers)")
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    write_tokenizer_json(tok, path)
    return tokenizers.Tokenizer.from_file(str(path))


def test_hf_parity_multilingual(tok, hf_tok):
    assert hf_tok.encode(TEXT).ids == tok.encode(TEXT)
    assert hf_tok.decode(tok.encode(TEXT)) == TEXT
    assert hf_tok.get_vocab_size() == tok.vocab_size


@FIXED
@given(text=ARBITRARY_TEXT)
@example("Ça   va\r\n\r\n  🎉🎉 123456789 l'été ’s 's 'S n't\u00a0\u3000\u2003x\x1c\x1d\x1e\x1f\x85y")
def test_hf_parity_arbitrary_text(tok, hf_tok, text):
    hf_tok.encode_special_tokens = True  # HF would otherwise match <|endoftext|> in text
    assert hf_tok.encode(text).ids == tok.encode(text)


def test_hf_parity_special_tokens(tok, hf_tok):
    text = f"first document{EOT}second document"
    hf_tok.encode_special_tokens = False
    assert hf_tok.encode(text).ids == tok.encode(text, allowed_special="all")
    hf_tok.encode_special_tokens = True
    assert hf_tok.encode(text).ids == tok.encode(text)


def test_transformers_gpt2_tokenizers_parity(tok, tmp_path):
    transformers = pytest.importorskip("transformers", reason="needs the `transformers` peer")
    write_tokenizer_json(tok, tmp_path / "tokenizer.json")
    write_vocab_merges(tok, tmp_path / "gpt2")
    fast = transformers.GPT2TokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    slow = transformers.GPT2Tokenizer.from_pretrained(tmp_path / "gpt2")  # vocab.json + merges.txt only
    ids = tok.encode(TEXT)
    assert fast.encode(TEXT) == ids
    assert slow.encode(TEXT) == ids
    assert slow.decode(ids) == TEXT and fast.decode(ids) == TEXT
    assert fast.convert_tokens_to_ids(EOT) == slow.convert_tokens_to_ids(EOT) == tok.eot_id


def test_hf_export_byte_level_strings(tok, tmp_path):
    write_tokenizer_json(tok, tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text("utf-8"))
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    assert vocab["Ġ"] == 32 and vocab["A"] == 65 and vocab["Ā"] == 0 and vocab[EOT] == tok.eot_id
    assert len(merges) == len(tok.merges)
    assert data["pre_tokenizer"] == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert data["added_tokens"][0]["content"] == EOT and data["added_tokens"][0]["special"]
