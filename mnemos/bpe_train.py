"""Learning byte-level BPE merges from a text, fast enough for 20 MB in pure Python.

The text is never merged as one long sequence. It is first cut into chunks by the
GPT-2 pattern (merges never cross a chunk boundary), and the *distinct* chunks are
counted once: 20 MB of French is 5 million chunks but only about 185,000 distinct
ones. Training then works on those distinct chunks ("words") weighted by their counts.

Each word is kept as a ``str`` with one character per token: ``chr(token_id)``. A
merge of the pair ``(a, b)`` into ``new`` is then ``word.replace(chr(a) + chr(b),
chr(new))``, done in C, and it has exactly BPE's semantics (occurrences merged left
to right, without overlap). A pair is the 2-character string ``chr(a) + chr(b)``, so
dictionaries are keyed by short strings and compare like ``(a, b)`` tuples.

The loop is the incremental algorithm of Sennrich et al. / Hugging Face ``tokenizers``:

- ``pair_counts``: how often each adjacent pair occurs in the corpus;
- ``where``: for each pair, the words it may occur in (entries are added, never removed:
  a stale entry costs one ``in`` test);
- a heap of ``(-count, pair)`` with lazy deletion: an entry whose count is out of date
  is skipped when popped. Its order is the tie-break rule (below).

After a merge only the words that contained the pair are rewritten, and only the pair
counts around each occurrence change, so a long word (a paragraph of Chinese, a DNA
sequence) costs per occurrence, not per character.

Tie-break rule (documented and deterministic): the most frequent pair is merged;
among pairs equally frequent, the one with the smallest ``(a, b)`` token ids.

Every token is a distinct byte string (vocabularies keyed by strings, like Hugging
Face's, need that): a span of a word between two token boundaries is always split as if
it were a word of its own, so once bytes are one token, no other pair can make them.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

BYTE_VOCAB = 256

Progress = Callable[[int, int], None]


def count_chunks(pieces: Iterable[str], findall: Callable[[str], list[str]], progress: Progress | None = None,
                 total: int = 1) -> Counter:
    """Count the distinct pre-tokenized chunks of ``pieces`` (text blocks).
    ``progress(0, total)`` is called after each block, so an exception raised in it
    (a cancel) stops a long count within one block."""
    counts: Counter = Counter()
    for piece in pieces:
        counts.update(findall(piece))
        if progress is not None:
            progress(0, total)
    return counts


def learn_merges(
    chunk_counts: dict[str, int], num_merges: int, progress: Progress | None = None
) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges; merge ``i`` creates token ``256 + i``.

    ``chunk_counts`` maps each distinct chunk (a ``str`` that encodes to UTF-8) to its
    count. Fewer merges are returned when the text runs out of pairs.
    ``progress(done, total)`` is called about 100 times, the last time with
    ``done == total`` (``total`` shrinks to ``done`` when the text runs out of pairs).
    """
    words: list[str] = []
    counts: list[int] = []
    for chunk, count in chunk_counts.items():
        word = chunk.encode("utf-8").decode("latin-1")  # one char per byte: chr(b)
        if len(word) > 1:
            words.append(word)
            counts.append(count)

    pair_counts: dict[str, int] = defaultdict(int)
    where: dict[str, set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        if progress is not None and i % 65536 == 65535:
            progress(0, num_merges)  # a cancel point in a long count
        count = counts[i]
        for k in range(len(word) - 1):
            pair = word[k : k + 2]
            pair_counts[pair] += count
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    report_every = max(1, num_merges // 100)
    if progress is not None:
        progress(0, num_merges)

    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts[pair] != -neg_count:
            continue  # stale heap entry: the count changed after it was pushed
        new = chr(BYTE_VOCAB + len(merges))
        merges.append((ord(pair[0]), ord(pair[1])))

        delta: dict[str, int] = defaultdict(int)
        for i in where.pop(pair):
            word = words[i]
            k = word.find(pair)
            if k < 0:
                continue  # stale index entry
            starts = []  # the occurrences replace() merges: left to right, no overlap
            while k >= 0:
                starts.append(k)
                k = word.find(pair, k + 2)
            new_word = word.replace(pair, new)
            words[i] = new_word
            count = counts[i]
            # Only pairs touching an occurrence change (a long word costs per occurrence):
            # the old pairs starting at k-1, k, k+1 go, the pairs around each new token come.
            last, end = -1, len(word) - 1
            for k in starts:
                for j in (k - 1, k, k + 1):
                    if last < j < end:
                        delta[word[j : j + 2]] -= count
                        last = j
            last, end = -1, len(new_word) - 1
            for n, k in enumerate(starts):
                for j in (k - n - 1, k - n):  # the new token sits at k - n in new_word
                    if last < j < end:
                        p = new_word[j : j + 2]
                        delta[p] += count
                        where[p].add(i)
                        last = j
        for p, d in delta.items():
            if d:
                c = pair_counts[p] + d
                pair_counts[p] = c
                if c > 0:
                    heapq.heappush(heap, (-c, p))

        if progress is not None and len(merges) % report_every == 0:
            progress(len(merges), num_merges)

    if progress is not None and (len(merges) < num_merges or len(merges) % report_every):
        progress(len(merges), len(merges))
    return merges
