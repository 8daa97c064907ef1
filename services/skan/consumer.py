"""SKAN decoder: skan.raw -> skan_postbacks (+ decoded records) and skan.decoded.

Each postback is verified (Apple's signature, per the app's `signature_policy`), de-duplicated on
(transaction-id, postback-sequence-index) with an idempotent insert, merged with the other copy of
the same postback (Apple's direct copy wins on the conversion value), and decoded with the app's
conversion schema in force at the estimated install time. Only winning postbacks that pass the
policy become installs; the rest are stored with their reason and counted. A postback for an app id
no app has is stored as a summary only (postback_input.summary, no raw body) and stays one.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from services.domain.skan import decode
from services.domain.skan.postback_input import summary, transaction_key
from services.skan.verify import verify_postback
from shared.avro import AvroCodec
from shared.db.models import App, SkanConversionSchema, SkanPostback
from shared.db.upsert import insert_if_new
from shared.kafka.records import InRecord, OutRecord
from shared.kafka.topics import SKAN_DECODED
from shared.metrics import SKAN_POSTBACKS
from shared.reports.stale import mark_stale

SERVICE = "skan"
TOPICS = consumer_topics(SERVICE)
VALUE_FIELDS = ("conversion-value", "coarse-conversion-value")


def signature_status(policy: str, valid: bool) -> str:
    if policy == "skip":
        return "skipped"
    return "valid" if valid else "invalid"


def accepted(policy: str, valid: bool) -> bool:
    """enforce: only valid postbacks are decoded; record: decoded but flagged; skip: test apps."""
    return valid or policy in ("record", "skip")


class SkanHandler:
    SCHEMAS = frozenset({"apprefer.SkanPostback"})  # the loop dead-letters any other

    def __init__(self, sessions: sessionmaker[Session], codec: AvroCodec) -> None:
        self._sessions = sessions
        self._codec = codec

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        self._changed_days: list[tuple[str | None, int]] = []
        with self._sessions.begin() as session:
            outputs = [out for record in records for out in self._process(session, record)]
            # A postback received on a day already over (or a copy changing one): the report rolls it again.
            mark_stale(session, "skan_postbacks", self._changed_days)
            return outputs

    def _process(self, session: Session, record: InRecord) -> list[OutRecord]:
        incoming = record.value
        postback = orjson.loads(incoming["postback_json"])
        transaction_id, sequence_index = transaction_key(postback)
        received_at = datetime.fromtimestamp(incoming["received_at_ms"] / 1000, tz=UTC)
        apple_app_id = str(postback.get("app-id"))
        app = session.scalar(select(App).where(App.apple_app_id == apple_app_id))
        schemas = self._schemas(session, app.app_id) if app else []
        schema = decode.schema_in_force(schemas, decode.estimated_install_time(postback, received_at))
        policy = schema.signature_policy if schema else "enforce"
        source = incoming["source"]

        existing = session.get(SkanPostback, (transaction_id, sequence_index))
        if existing is not None:
            return self._merge(session, existing, postback, source, schema, app, incoming, policy)
        # Verified only when new: the signature check is most of a postback's CPU, and copies repeat.
        verification = verify_postback(postback)

        status = signature_status(policy, verification.valid)
        is_install = app is not None and decode.is_winning(postback) and accepted(policy, verification.valid)
        decoded = decode.decode(postback, schema) if is_install else []
        reason = verification.reason if status == "invalid" else None
        if app is None:
            reason = f"no app with apple_app_id {apple_app_id}"
        elif not decode.is_winning(postback):
            reason = (reason + "; " if reason else "") + "not the winning postback (did-win false)"
        row = {
            "transaction_id": transaction_id, "sequence_index": sequence_index,
            "app_id": app.app_id if app else None, "apple_app_id": apple_app_id,
            "ad_network_id": postback.get("ad-network-id"), "version": postback.get("version"),
            "signature": status, "reason": reason, "did_win": decode.is_winning(postback),
            "counted_as_install": is_install, "conversion_value": postback.get("conversion-value"),
            "coarse_conversion_value": postback.get("coarse-conversion-value"), "value_source": source,
            "sources": source, "postback": postback, "raw_body": incoming["raw_body"],
            "schema_id": schema.schema_id if schema else None,
            "records": [dataclasses.asdict(r) for r in decoded], "duplicates": 0,
            "received_at_ms": incoming["received_at_ms"],
        }
        if app is None:
            # Anyone can post for any app id: keep a summary to count and trace, not what a flood could fill.
            row.update(postback=summary(postback), raw_body="", conversion_value=None, coarse_conversion_value=None)
        if not insert_if_new(session, SkanPostback, row):
            # A concurrent copy won the insert: treat this one as its duplicate.
            existing = session.get(SkanPostback, (transaction_id, sequence_index))
            assert existing is not None
            return self._merge(session, existing, postback, source, schema, app, incoming, policy)
        SKAN_POSTBACKS.labels(str(postback.get("ad-network-id")), "installed" if is_install else status).inc()
        self._changed_days.append((row["app_id"], row["received_at_ms"]))
        return [self._decoded_out(row, incoming)] if is_install else []

    def _merge(self, session: Session, existing: SkanPostback, postback: dict[str, Any], source: str,
               schema: decode.ConversionSchema | None, app: App | None, incoming: dict[str, Any],
               policy: str) -> list[OutRecord]:
        """A repeat, or the other copy of the same postback. Apple's own copy is the one to trust
        for the (unsigned) conversion value; a changed value is decoded again."""
        existing.duplicates += 1
        SKAN_POSTBACKS.labels(str(postback.get("ad-network-id")), "duplicate").inc()
        if source not in existing.sources.split(","):
            existing.sources = f"{existing.sources},{source}"
        if existing.app_id is None:
            return []  # a summary (no app had the app id): it stays one
        values_differ = any(postback.get(f) != existing.postback.get(f) for f in VALUE_FIELDS)
        if source != "apple" or existing.value_source == "apple" or not values_differ:
            return []
        merged = {**existing.postback, **{f: postback.get(f) for f in VALUE_FIELDS}}
        existing.postback = merged
        existing.value_source = "apple"
        existing.conversion_value = merged.get("conversion-value")
        existing.coarse_conversion_value = merged.get("coarse-conversion-value")
        if not existing.counted_as_install:
            return []
        existing.records = [dataclasses.asdict(r) for r in decode.decode(merged, schema)]
        self._changed_days.append((existing.app_id, existing.received_at_ms))
        row = {"app_id": existing.app_id, "transaction_id": existing.transaction_id,
               "sequence_index": existing.sequence_index, "postback": merged, "records": existing.records}
        return [self._decoded_out(row, incoming)]

    def _decoded_out(self, row: dict[str, Any], incoming: dict[str, Any]) -> OutRecord:
        decoded = {
            "app_id": row["app_id"], "transaction_id": row["transaction_id"],
            "sequence_index": row["sequence_index"], "postback_json": orjson.dumps(row["postback"]).decode(),
            "records_json": orjson.dumps(row["records"]).decode(), "received_at_ms": incoming["received_at_ms"],
        }
        return OutRecord(topic=SKAN_DECODED, key=row["transaction_id"].encode(),
                         value=self._codec.encode("apprefer.SkanDecoded", decoded))

    @staticmethod
    def _schemas(session: Session, app_id: str) -> list[decode.ConversionSchema]:
        rows = session.scalars(select(SkanConversionSchema).where(SkanConversionSchema.app_id == app_id))
        return [decode.parse_schema(row.body) for row in rows]


