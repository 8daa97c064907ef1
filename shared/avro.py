"""Avro single-object encoding over the schemas in `schemas/`.

A record is `C3 01`, the writer schema's CRC-64-AVRO fingerprint (8 bytes, little-endian), then
the Avro body. The fingerprint names the writer schema without a registry; the reader looks it up
among the schemas shipped in `schemas/` (every schema version ever written must stay there).

Bodies are written by a function generated once per schema (see `_writer`): fastavro's generic walk,
which checks every union branch per value, costs about 1.7x as much per RawEvent, on the gateway's hot
path. The bytes are the same as fastavro's. A record with a value outside the plain types the writer
expects (a missing field without a default, a str subclass, a bool for a long, NaN, ...) is handed to
fastavro, so fastavro's coercions and errors stay the reference. Bodies are read by fastavro: a reader
in Python was no faster.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
# schemas/ of the repository, through the link shared/schemas in a checkout; a copy of them in an installed wheel.
SCHEMA_DIR = Path(__file__).parent / "schemas"

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

DOUBLE_MAX = 1.7976931348623157e308

# Appends a record's body to the buffer; raises _NotPlain for a record to leave to fastavro.
Writer = Callable[[bytearray, Any], None]

_DOUBLE = struct.Struct("<d")
_ONE_BYTE = [bytes([n]) for n in range(128)]  # varints below 128 are their own single byte
PREFIXED_LENGTHS = 4096  # strings shorter than this (in UTF-8) have their length prefix looked up
_MISSING = object()  # the value of a field absent from the record that has no default


class DecodeError(ValueError):
    """Bytes that are not a single-object-encoded record of a known schema."""


class _NotPlain(Exception):
    """A value outside the fast writer's plain types: fastavro encodes (or refuses) the record instead."""


class AvroCodec:
    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._by_name: dict[str, Any] = {}
        self._header_by_name: dict[str, bytes] = {}
        self._writer_by_name: dict[str, Writer] = {}
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
            self._writer_by_name[name] = _writer(parsed)
            self._by_fingerprint[fp] = (name, parsed)

    def schema_names(self) -> list[str]:
        return sorted(self._by_name)

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        header = self._header_by_name[schema_name]
        out = bytearray(header)
        try:
            self._writer_by_name[schema_name](out, record)
        except _NotPlain:
            return self._encode_with_fastavro(header, self._by_name[schema_name], record)
        return bytes(out)

    @staticmethod
    def _encode_with_fastavro(header: bytes, schema: Any, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, schema, record)
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


# --- the generated writer ----------------------------------------------------------------------------
#
# Each record type becomes one function writing its fields in order, straight-line: a closure per field
# cost a third more. The snippets check each value's type exactly and raise _NotPlain for anything else
# (_MISSING included). print(_writer_source(schema)[0]) shows the code that runs.


def _varint(n: int) -> bytes:
    """Avro's variable-length encoding of a non-negative (already zigzagged) number."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The encoded length of most strings, looked up: hashes and ids are longer than a one-byte varint holds.
_LENGTH_PREFIX = [_varint(size << 1) for size in range(PREFIXED_LENGTHS)]  # zigzag of a size: doubled


def _write_string_map(out: bytearray, value: Any) -> None:
    """A map of strings (referrer, user_hashes, ...): one block of all items, then the empty block."""
    if type(value) is not dict:
        raise _NotPlain
    if value:
        out += _varint(len(value) << 1)
        for key, item in value.items():
            for text in (key, item):
                if type(text) is not str:
                    raise _NotPlain
                data = text.encode()
                size = len(data)
                out += _LENGTH_PREFIX[size] if size < PREFIXED_LENGTHS else _varint(size << 1)
                out += data
    out += b"\x00"


_SNIPPETS = {
    "string": """\
if type(value) is not str:
    raise _NotPlain
data = value.encode()
size = len(data)
out += _LENGTH_PREFIX[size] if size < PREFIXED_LENGTHS else _varint(size << 1)
out += data""",
    "long": """\
if type(value) is not int or not LONG_MIN <= value <= LONG_MAX:
    raise _NotPlain
out += _varint((value << 1) ^ (value >> 63))""",
    "int": """\
if type(value) is not int or not INT_MIN <= value <= INT_MAX:
    raise _NotPlain
out += _varint((value << 1) ^ (value >> 63))""",
    # fastavro writes an int as its float too; one too large for a double is left to fastavro's error.
    "double": """\
if (type(value) is not float and type(value) is not int) or not -DOUBLE_MAX <= value <= DOUBLE_MAX:
    raise _NotPlain
out += _DOUBLE.pack(value)""",
    "boolean": """\
if type(value) is not bool:
    raise _NotPlain
out += TRUE if value else FALSE""",
}


class _WriterSource:
    """Collects the source of one function per record type; `functions` maps record name -> function name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.defaults: dict[str, Any] = {}
        self.functions: dict[str, str] = {}

    def record(self, schema: Mapping[str, Any]) -> str:
        if schema["name"] in self.functions:
            return self.functions[schema["name"]]
        function = f"write_{len(self.functions)}_{schema['name'].rpartition('.')[2]}"
        self.functions[schema["name"]] = function
        body = ["if type(record) is not dict:", "    raise _NotPlain", "get = record.get"]
        for field in schema["fields"]:
            default = f"default_{len(self.defaults)}"
            self.defaults[default] = field.get("default", _MISSING)
            body += [f"# {field['name']}", f"value = get({field['name']!r}, {default})", *self.value(field["type"])]
        self.lines += [f"def {function}(out, record):", *("    " + line for line in body), ""]
        return function

    def value(self, schema: Any) -> list[str]:
        """Lines writing `value` of this schema onto `out`."""
        if isinstance(schema, str) and schema in _SNIPPETS:
            return _SNIPPETS[schema].splitlines()
        if isinstance(schema, str) and schema in self.functions:  # a named record used a second time
            return [f"{self.functions[schema]}(out, value)"]
        if isinstance(schema, list):
            if len(schema) != 2 or schema[0] != "null":
                return ["raise _NotPlain"]  # only ["null", T] is fast; fastavro picks branches the same way
            return ["if value is None:", "    out += NULL_BRANCH", "else:", "    out += VALUE_BRANCH",
                    *("    " + line for line in self.value(schema[1]))]
        if isinstance(schema, dict) and schema["type"] == "record":
            return [f"{self.record(schema)}(out, value)"]
        if isinstance(schema, dict) and schema["type"] == "map" and schema["values"] == "string":
            return ["_write_string_map(out, value)"]
        if isinstance(schema, dict) and isinstance(schema["type"], str | list):
            return self.value(schema["type"])
        return ["raise _NotPlain"]  # a type the schemas do not use yet: fastavro writes it


def _writer_source(schema: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(source, name of the top-level function, defaults it refers to) for a record schema."""
    source = _WriterSource()
    function = source.record(schema)
    return "\n".join(source.lines), function, source.defaults


def _writer(schema: Any) -> Writer:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return _write_with_fastavro
    source, function, defaults = _writer_source(schema)
    namespace: dict[str, Any] = {
        "_NotPlain": _NotPlain, "_LENGTH_PREFIX": _LENGTH_PREFIX, "PREFIXED_LENGTHS": PREFIXED_LENGTHS,
        "_varint": _varint, "_DOUBLE": _DOUBLE, "_write_string_map": _write_string_map,
        "LONG_MIN": LONG_MIN, "LONG_MAX": LONG_MAX, "INT_MIN": INT_MIN, "INT_MAX": INT_MAX,
        "DOUBLE_MAX": DOUBLE_MAX, "TRUE": b"\x01", "FALSE": b"\x00", "NULL_BRANCH": b"\x00",
        "VALUE_BRANCH": b"\x02", **defaults,
    }
    exec(compile(source, f"<avro writer for {schema['name']}>", "exec"), namespace)  # source built above, no input
    writer: Writer = namespace[function]
    return writer


def _write_with_fastavro(_out: bytearray, _record: Any) -> None:
    raise _NotPlain


@lru_cache(maxsize=1)
def codec() -> AvroCodec:
    return AvroCodec()
