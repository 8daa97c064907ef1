"""Avro single-object encoding over the schemas in `schemas/`.

A record is `C3 01`, the writer schema's CRC-64-AVRO fingerprint (8 bytes, little-endian), then
the Avro body. The fingerprint names the writer schema without a registry; the reader looks it up
among the schemas shipped in `schemas/` (every schema version ever written must stay there).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


class DecodeError(ValueError):
    """Bytes that are not a single-object-encoded record of a known schema."""


class AvroCodec:
    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._by_name: dict[str, Any] = {}
        self._header_by_name: dict[str, bytes] = {}
        self._by_fingerprint: dict[bytes, tuple[str, Any]] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            # load_schema resolves references to other files named <fullname>.avsc and expands
            # them, so every parsed schema is self-contained and fingerprints its whole shape.
            # Each schema gets its own named-type table: a shared one would leave a type already
            # seen (e.g. Device inside RawEvent) as a bare name in the canonical form.
            parsed = load_schema(str(path))
            name = path.name.removesuffix(".avsc")
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
            self._by_name[name] = parsed
            self._header_by_name[name] = MAGIC + fp
            self._by_fingerprint[fp] = (name, parsed)

    def schema_names(self) -> list[str]:
        return sorted(self._by_name)

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header_by_name[schema_name])
        fastavro.schemaless_writer(buf, self._by_name[schema_name], record)
        return buf.getvalue()

    def decode(self, payload: bytes | None) -> tuple[str, dict[str, Any]]:
        """Returns (schema name, record). Raises DecodeError for anything else."""
        if not payload or payload[:2] != MAGIC or len(payload) < HEADER_LEN:
            raise DecodeError("not an Avro single-object-encoded record")
        fp = bytes(payload[2:HEADER_LEN])  # hashable even when given a bytearray
        known = self._by_fingerprint.get(fp)
        if known is None:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
        name, schema = known
        body = io.BytesIO(payload[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(body, schema, None)
        except Exception as exc:  # fastavro raises several types for truncated/corrupt bodies
            raise DecodeError(f"corrupt {name} body: {exc}") from exc
        if body.read(1):
            raise DecodeError(f"corrupt {name} body: trailing bytes")
        if not isinstance(record, dict):
            raise DecodeError(f"{name} body is not a record")
        return name, record

    def decode_as(self, schema_name: str, payload: bytes | None) -> dict[str, Any]:
        name, record = self.decode(payload)
        if name != schema_name:
            raise DecodeError(f"expected {schema_name}, got {name}")
        return record


@lru_cache(maxsize=1)
def codec() -> AvroCodec:
    return AvroCodec()
