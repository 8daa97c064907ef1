"""shared.avro's generated writer: the same bytes as fastavro.schemaless_writer, or fastavro itself."""

from __future__ import annotations

import enum
import io
import random
from typing import Any

import fastavro
import pytest

from shared import avro
from shared.avro import HEADER_LEN, AvroCodec, codec
from tests.unit.test_avro import MINIMAL, SAMPLES

TEXTS = ["", "a", "ü", "✓ done", "😀" * 3, "x" * 63, "y" * 64, "é" * 40, "z" * 4095, "w" * 4096, "q" * 9000,
         "line\nbreak\x00nul", "中文字符"]
LONGS = [0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31 - 1, -(2**31), 2**31, 1_700_000_000_123, -1_700_000_000_123,
         2**62, 2**63 - 1, -(2**63)]
INTS = [0, 1, -1, 64, -65, 300, 2**31 - 1, -(2**31)]
DOUBLES = [0.0, -0.0, 9.99, -4.5, 1e-300, 5e-324, 1.7976931348623157e308, -1e308, 3, -7, 2**53 + 1]


def fastavro_bytes(name: str, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, codec()._by_name[name], record)
    return buf.getvalue()


def body(name: str, record: Any) -> bytes:
    return codec().encode(name, record)[HEADER_LEN:]


def random_value(schema: Any, rng: random.Random) -> Any:
    """A value of a parsed schema, from edge-case pools; optional and defaulted fields are sometimes left out."""
    if isinstance(schema, list):
        return None if rng.random() < 0.3 else random_value(schema[1], rng)
    if isinstance(schema, dict):
        if schema["type"] == "record":
            record = {}
            for field in schema["fields"]:
                if "default" in field and rng.random() < 0.2:
                    continue
                record[field["name"]] = random_value(field["type"], rng)
            return record
        if schema["type"] == "map":
            keys = [rng.choice(TEXTS)[:20] + str(i) for i in range(rng.randrange(4))]
            return {key: random_value(schema["values"], rng) for key in keys}
        return random_value(schema["type"], rng)
    pools: dict[str, list[Any]] = {"string": TEXTS, "long": LONGS, "int": INTS, "double": DOUBLES,
                                   "boolean": [True, False]}
    return rng.choice(pools[schema])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_are_fastavro_bytes(name: str) -> None:
    assert body(name, SAMPLES[name]) == fastavro_bytes(name, SAMPLES[name])
    assert body(name, MINIMAL[name]) == fastavro_bytes(name, MINIMAL[name])


def test_random_records_are_fastavro_bytes() -> None:
    rng = random.Random(20250101)
    for _ in range(300):
        name = rng.choice(sorted(SAMPLES))
        record = random_value(codec()._by_name[name], rng)
        encoded = codec().encode(name, record)
        assert encoded[HEADER_LEN:] == fastavro_bytes(name, record), record
        assert codec().encode(name, codec().decode_as(name, encoded)) == encoded


def test_plain_records_do_not_need_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {name: codec().encode(name, record) for name, record in SAMPLES.items()}

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the generated writer handed a plain record to fastavro")

    monkeypatch.setattr(avro.fastavro, "schemaless_writer", refuse)
    for name, record in SAMPLES.items():
        assert codec().encode(name, record) == expected[name]
        assert codec().encode(name, MINIMAL[name])  # defaults written without fastavro too


class Level(enum.StrEnum):
    HIGH = "high"


@pytest.mark.parametrize(("field", "value"), [
    ("sandbox", 1),  # fastavro writes any truthy value as true
    ("event_time_ms", True),
    ("event_time_ms", 1.0),
    ("revenue_amount", float("nan")),
    ("revenue_amount", float("inf")),
    ("event_name", Level.HIGH),
    ("referrer", {"click_id": Level.HIGH}),
])
def test_unusual_values_are_written_by_fastavro(field: str, value: Any) -> None:
    record = {**SAMPLES["apprefer.RawEvent"], field: value}
    assert body("apprefer.RawEvent", record) == fastavro_bytes("apprefer.RawEvent", record)


@pytest.mark.parametrize(("field", "value"), [
    ("event_id", 5),
    ("event_id", None),
    ("event_time_ms", "1700000000000"),
    ("event_time_ms", 2**63),
    ("device", None),
    ("referrer", {"click_id": 7}),
    ("user_hashes", [("em", "a")]),
    ("revenue_amount", "9.99"),
    ("revenue_amount", 10**400),
])
def test_unusual_values_raise_as_fastavro_does(field: str, value: Any) -> None:
    record = {**SAMPLES["apprefer.RawEvent"], field: value}
    with pytest.raises(Exception) as expected:
        fastavro_bytes("apprefer.RawEvent", record)
    with pytest.raises(type(expected.value)):
        codec().encode("apprefer.RawEvent", record)


def test_missing_required_field_raises_as_fastavro_does() -> None:
    record = dict(SAMPLES["apprefer.RawEvent"])
    del record["app_id"]
    with pytest.raises(ValueError, match="app_id"):
        codec().encode("apprefer.RawEvent", record)


def test_extra_keys_are_ignored_as_fastavro_does() -> None:
    record = {**SAMPLES["apprefer.Click"], "not_in_schema": object()}
    assert body("apprefer.Click", record) == fastavro_bytes("apprefer.Click", SAMPLES["apprefer.Click"])


def test_a_record_type_used_twice_is_written_fast(tmp_path: Any) -> None:
    schema = ('{"type": "record", "name": "Pair", "namespace": "t", "fields": ['
              '{"name": "a", "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}]}},'
              '{"name": "b", "type": ["null", "t.P"]}]}')
    (tmp_path / "t.Pair.avsc").write_text(schema)
    pair = AvroCodec(tmp_path)
    for record in ({"a": {"x": -3}, "b": {"x": 2**40}}, {"a": {"x": 0}, "b": None}):
        assert pair.decode_as("t.Pair", pair.encode("t.Pair", record)) == record
    assert "(out, value)" in avro._writer_source(pair._by_name["t.Pair"])[0].split("# b")[1]
