"""fileio: one JSON parser for untrusted files, and JSON-lines logs read within bounds."""

from __future__ import annotations

import json

import pytest

from mnemos import fileio, memory
from mnemos.errors import CheckpointError, ConfigError
from mnemos.fileio import parse_json, read_jsonl

DEEP = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
HUGE_INT = '{"step": ' + "9" * 5000 + "}"


@pytest.mark.parametrize("text", [DEEP, HUGE_INT, "{not json", b"\xff\xfe{}", ""])
def test_parse_json_fails_only_with_value_error(text):
    with pytest.raises(ValueError) as err:
        parse_json(text)
    assert "\n" not in str(err.value)


def test_parse_json_reads_bytes_and_text():
    assert parse_json(b'{"a": [1, 2.5]}') == parse_json('{"a": [1, 2.5]}') == {"a": [1, 2.5]}


def test_read_jsonl_keeps_good_rows_around_hostile_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "MAX_JSONL_LINE", 64)
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": 1}), DEEP, HUGE_INT, "[1, 2]", '{"step": 2, "x": "' + "y" * 200 + '"}',
             "\x00garbage", json.dumps({"step": 3}), '{"step": 4, "lo']
    path.write_text("\n".join(lines))
    assert read_jsonl(path) == [{"step": 1}, {"step": 3}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_refuses_a_log_that_cannot_fit_before_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n" * 100_000)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)  # 100 KB of text could need 3 MB
    monkeypatch.setattr(fileio, "parse_json", lambda _: pytest.fail("read before its size was checked"))
    with pytest.raises(ConfigError, match="moving the file aside") as err:
        read_jsonl(path)
    assert "\n" not in str(err.value)


def test_read_jsonl_of_a_folder_is_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(CheckpointError, match="cannot read"):
        read_jsonl(tmp_path / "metrics.jsonl")
