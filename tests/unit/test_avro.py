"""shared.avro: Avro single-object encoding over schemas/ (C3 01, CRC-64-AVRO fingerprint, body)."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from shared.avro import HEADER_LEN, MAGIC, SCHEMA_DIR, AvroCodec, DecodeError, codec

DEVICE = {"device_id": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "idfa": "aebe52e7-03ee-455a-b3c4-e57283966239",
          "gaid": None, "ip": "2001:db8::1", "user_agent": "MyApp/3.2 CFNetwork/1410 Darwin/22.6.0", "os": "ios",
          "os_version": "17.1.2", "model": "iPhone15,2", "locale": "de_DE", "att_status": "authorized",
          "app_version": "3.2.1"}
RAW_EVENT = {"event_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "app_id": "app_1a2b", "event_name": "purchase",
             "event_time_ms": 1_700_000_000_123, "received_at_ms": 1_700_000_001_000, "sandbox": False,
             "source": "sdk", "device": DEVICE, "referrer": {"fbclid": "IwAR2xyz", "click_id": "ck_9"},
             "user_hashes": {"em": "a" * 64, "ph": "b" * 64, "ph_e164": "c" * 64}, "revenue_amount": 9.99,
             "revenue_currency": "EUR", "properties_json": '{"sku":"pro_monthly","émoji":"✓"}'}
ATTRIBUTION = {"attributed": True, "matched_by": "click_id", "network": "meta", "campaign": "spring",
               "click_id_type": "fbclid", "click_id": "IwAR2xyz", "click_key": "ck_9",
               "click_time_ms": 1_699_999_000_000, "install_time_ms": 1_699_999_500_000, "reinstall": False}
SAMPLES: dict[str, dict[str, Any]] = {
    "apprefer.Device": DEVICE,
    "apprefer.RawEvent": RAW_EVENT,
    "apprefer.Attribution": ATTRIBUTION,
    "apprefer.AttributedEvent": {"event": RAW_EVENT, "attribution": ATTRIBUTION, "attributed_at_ms": 1_700_000_002_000},
    "apprefer.Click": {"click_key": "ck_9", "app_id": "app_1a2b", "link_id": "lnk_1", "network": "meta",
                       "campaign": "spring", "click_id_type": "fbclid", "click_id": "IwAR2xyz", "idfa": None,
                       "gaid": "38400000-8cf0-11bd-b23e-10b96e40000d", "fingerprint": "d" * 64,
                       "clicked_at_ms": 1_699_999_000_000, "sandbox": True,
                       "properties": {"campaign_id": "c1", "utm_source": "fb"}},
    "apprefer.ForwardJob": {"job_id": "ev_1:meta", "app_id": "app_1a2b", "network": "meta", "event_id": "ev_1",
                            "event_name": "purchase", "network_event_name": "Purchase",
                            "event_time_ms": 1_700_000_000_000, "sandbox": False, "click_id_type": "fbclid",
                            "click_id": "IwAR2xyz", "click_time_ms": 1_699_999_000_000, "device": DEVICE,
                            "user_hashes": {"em": "a" * 64}, "revenue_amount": 9.99, "revenue_currency": "EUR",
                            "properties_json": "{}", "attempt": 2, "first_attempt_ms": 1_700_000_001_000},
    "apprefer.AuditRecord": {"audit_id": "a" * 32, "app_id": "app_1a2b", "event_id": "ev_1",
                             "event_name": "purchase", "network": "meta", "status": "delivered", "attempts": 1,
                             "http_status": 200, "error_code": None, "detail": None, "latency_ms": 42,
                             "request_hash": "b" * 64, "recorded_at_ms": 1_700_000_002_000},
    "apprefer.SkanPostback": {"transaction_id": "6aafb7a5-0170", "sequence_index": 1, "source": "apple",
                              "postback_json": '{"version":"4.0"}', "raw_body": '{"version": "4.0"}',
                              "received_at_ms": 1_700_000_003_000},
    "apprefer.SkanDecoded": {"app_id": "app_1a2b", "transaction_id": "6aafb7a5-0170", "sequence_index": 0,
                             "postback_json": "{}", "records_json": "[]", "received_at_ms": 1_700_000_003_000},
}
MINIMAL: dict[str, dict[str, Any]] = {
    "apprefer.Device": {"device_id": "d"},
    "apprefer.RawEvent": {"event_id": "e", "app_id": "a", "event_name": "open", "event_time_ms": 0,
                          "received_at_ms": 0, "sandbox": True, "device": {"device_id": "d"}},
    "apprefer.Attribution": {"attributed": False},
    "apprefer.AttributedEvent": {"event": {**RAW_EVENT, "revenue_amount": None, "revenue_currency": None},
                                 "attribution": {"attributed": False}, "attributed_at_ms": -1},
    "apprefer.Click": {"click_key": "k", "app_id": "a", "clicked_at_ms": 2**62},
    "apprefer.ForwardJob": {"job_id": "e:meta", "app_id": "a", "network": "meta", "event_id": "e",
                            "event_name": "purchase", "network_event_name": "Purchase", "event_time_ms": 0,
                            "device": {"device_id": "d"}},
    "apprefer.AuditRecord": {"audit_id": "x", "app_id": "a", "event_id": "e", "network": "meta",
                             "status": "skipped", "recorded_at_ms": 0},
    "apprefer.SkanPostback": {"transaction_id": "t", "source": "network", "postback_json": "{}", "raw_body": "",
                              "received_at_ms": 0},
    "apprefer.SkanDecoded": {"app_id": "a", "transaction_id": "t", "sequence_index": 0, "postback_json": "{}",
                             "records_json": "[]", "received_at_ms": 0},
}


def crc64_avro(data: bytes) -> int:
    """The Avro specification's reference fingerprint, written independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_samples_cover_every_schema() -> None:
    assert codec().schema_names() == sorted(SAMPLES) == sorted(p.name[:-5] for p in SCHEMA_DIR.glob("*.avsc"))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    encoded = codec().encode(name, SAMPLES[name])
    assert codec().decode(encoded) == (name, SAMPLES[name])
    assert codec().decode_as(name, encoded) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_defaults_filled(name: str) -> None:
    decoded = codec().decode_as(name, codec().encode(name, MINIMAL[name]))
    assert _subset(MINIMAL[name], decoded)
    if name == "apprefer.RawEvent":
        assert (decoded["source"], decoded["referrer"], decoded["properties_json"]) == ("sdk", {}, "{}")
        assert decoded["device"]["ip"] is None and decoded["user_hashes"] == {}
    if name == "apprefer.AttributedEvent":
        assert decoded["attribution"]["reinstall"] is False and decoded["attribution"]["network"] is None


def _subset(given: dict[str, Any], decoded: dict[str, Any]) -> bool:
    return all(_subset(v, decoded[k]) if isinstance(v, dict) and v else decoded[k] == v for k, v in given.items())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_header_is_magic_and_fingerprint(name: str) -> None:
    encoded = codec().encode(name, SAMPLES[name])
    assert encoded[:2] == b"\xc3\x01" == MAGIC and HEADER_LEN == 10
    # A self-contained schema (named types expanded), as any other Avro implementation would load it.
    canonical = to_parsing_canonical_form(load_schema(str(SCHEMA_DIR / f"{name}.avsc")))
    assert "apprefer.Device\"}" not in canonical  # no bare references to named types
    assert encoded[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    assert encoded[2:10] == crc64_avro(canonical.encode()).to_bytes(8, "little")


def test_fingerprints_are_distinct() -> None:
    headers = {codec().encode(name, record)[:HEADER_LEN] for name, record in SAMPLES.items()}
    assert len(headers) == len(SAMPLES)


def _edited_codec(tmp_path: Path, name: str, edit: Any) -> AvroCodec:
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, folder)
    path = folder / f"{name}.avsc"
    schema = json.loads(path.read_text())
    edit(schema)
    path.write_text(json.dumps(schema))
    return AvroCodec(folder)


def _headers(c: AvroCodec) -> dict[str, bytes]:
    return {name: c.encode(name, MINIMAL[name])[:HEADER_LEN] for name in c.schema_names()}


def test_attributed_event_fingerprint_covers_raw_event(tmp_path: Path) -> None:
    new_field = {"name": "country", "type": ["null", "string"], "default": None}
    edited = _headers(_edited_codec(tmp_path, "apprefer.RawEvent", lambda s: s["fields"].append(new_field)))
    shipped = _headers(codec())
    changed = {name for name in shipped if shipped[name] != edited[name]}
    assert changed == {"apprefer.RawEvent", "apprefer.AttributedEvent"}


def test_raw_event_fingerprint_covers_device(tmp_path: Path) -> None:
    new_field = {"name": "carrier", "type": ["null", "string"], "default": None}
    edited = _headers(_edited_codec(tmp_path, "apprefer.Device", lambda s: s["fields"].append(new_field)))
    shipped = _headers(codec())
    changed = {name for name in shipped if shipped[name] != edited[name]}
    assert changed == {"apprefer.Device", "apprefer.RawEvent", "apprefer.AttributedEvent", "apprefer.ForwardJob"}


def test_docs_do_not_change_fingerprints(tmp_path: Path) -> None:
    edited = _headers(_edited_codec(tmp_path, "apprefer.RawEvent", lambda s: s.update(doc="reworded")))
    assert edited == _headers(codec())


def test_newer_writer_schema_is_unknown_to_an_older_reader(tmp_path: Path) -> None:
    new_field = {"name": "country", "type": ["null", "string"], "default": None}
    newer = _edited_codec(tmp_path, "apprefer.RawEvent", lambda s: s["fields"].append(new_field))
    payload = newer.encode("apprefer.RawEvent", {**RAW_EVENT, "country": "DE"})
    assert newer.decode_as("apprefer.RawEvent", payload)["country"] == "DE"
    with pytest.raises(DecodeError, match="unknown writer schema"):
        codec().decode(payload)


CLICK = codec().encode("apprefer.Click", SAMPLES["apprefer.Click"])


@pytest.mark.parametrize("payload", [
    b"", None, b"\xc3", MAGIC, MAGIC + CLICK[2:9], b"\xc3\x02" + CLICK[2:], b"\x01\xc3" + CLICK[2:],
    b"\x00" + CLICK, MAGIC + b"\x00" * 8 + CLICK[HEADER_LEN:], MAGIC + CLICK[2:6] + CLICK[2:6] + CLICK[HEADER_LEN:],
    CLICK[:HEADER_LEN], CLICK + b"\x00", CLICK + b"trailing junk", "not bytes",
])
def test_decode_rejects(payload: Any) -> None:
    with pytest.raises(DecodeError):
        codec().decode(payload)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_is_a_decode_error(name: str) -> None:
    encoded = codec().encode(name, SAMPLES[name])
    for end in range(len(encoded)):
        with pytest.raises(DecodeError):
            codec().decode(encoded[:end])


def test_bytes_like_payloads() -> None:
    assert codec().decode(bytearray(CLICK)) == ("apprefer.Click", SAMPLES["apprefer.Click"])
    assert codec().decode(memoryview(CLICK)) == ("apprefer.Click", SAMPLES["apprefer.Click"])


def test_random_bodies_raise_only_decode_error() -> None:
    rng = random.Random(20240501)
    headers = {name: codec().encode(name, record)[:HEADER_LEN] for name, record in MINIMAL.items()}
    for _ in range(400):
        name = rng.choice(sorted(headers))
        body = rng.randbytes(rng.randrange(0, 300))
        try:
            decoded_name, record = codec().decode(headers[name] + body)
        except DecodeError:
            continue
        assert decoded_name == name and isinstance(record, dict)


def test_corrupted_records_raise_only_decode_error() -> None:
    rng = random.Random(7)
    for _ in range(400):
        name = rng.choice(sorted(SAMPLES))
        payload = bytearray(codec().encode(name, SAMPLES[name]))
        for _ in range(rng.randrange(1, 4)):
            payload[rng.randrange(HEADER_LEN, len(payload))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            codec().decode(bytes(payload))


def test_decode_as_checks_the_schema() -> None:
    with pytest.raises(DecodeError, match=r"expected apprefer\.RawEvent"):
        codec().decode_as("apprefer.RawEvent", CLICK)
    with pytest.raises(DecodeError):
        codec().decode_as("apprefer.Click", b"")


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)
