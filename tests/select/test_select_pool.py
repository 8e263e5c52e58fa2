"""Pool reading: clear errors naming the line for empty lines, bad JSON and missing or empty text fields."""

from __future__ import annotations

import pytest

from saelab.select.pool import read_records


def _write(tmp_path, text: str):
    p = tmp_path / "pool.jsonl"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"text": "a"}\n\n{"text": "b"}\n', r"pool.jsonl:2: empty line"),
        ('{"text": "a"}\n{"body": "b"}\n', r"pool.jsonl:2: missing text field 'text'"),
        ('{"text": "a"}\n{"text": "b"}\n{"text": ""}\n', r"pool.jsonl:3: text field 'text' is empty"),
        ('{"text": 3}\n', r"pool.jsonl:1: text field 'text' is int"),
        ('{"text": "a"}\n{"text": "b"\n', r"pool.jsonl:2: not valid JSON"),
        ('["text"]\n', r"pool.jsonl:1: expected a JSON object"),
    ],
)
def test_errors_name_the_line(tmp_path, content, match):
    with pytest.raises(ValueError, match=match):
        list(read_records(_write(tmp_path, content), "text"))


def test_records_keep_their_bytes(tmp_path):
    content = '{"text":"caf\\u00e9",  "x": 1}\r\n{"text": "b"}'
    recs = list(read_records(_write(tmp_path, content), "text"))
    assert [r.line for r in recs] == [1, 2]
    assert recs[0].text == "café" and recs[0].raw == b'{"text":"caf\\u00e9",  "x": 1}\r\n'
    assert recs[1].raw == b'{"text": "b"}'
