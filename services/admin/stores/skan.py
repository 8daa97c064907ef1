"""SKAN conversion schemas and the postbacks received."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select

from services.admin.stores.audit import audit_json
from services.admin.stores.base import StoreBase
from services.domain.skan import decode
from services.domain.skan.macros import postback_id
from services.domain.skan.postback_input import enrichment
from shared.db.models import (
    AuditEntry,
    SkanConversionSchema,
    SkanPostback,
)
from shared.errors import NotFound
from shared.runtime import now_ms


def rfc3339_ms(epoch_ms: int) -> str:
    """2024-01-01T00:00:00Z, or with milliseconds when it has some."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds" if epoch_ms % 1000 else "seconds").replace("+00:00", "Z")


# Where a page of an app's postbacks ends: (received_at_ms, transaction_id, sequence_index), newest first.
PostbackPosition = tuple[int, str, int]
MAX_SENT_IDS = 1000  # postback ids looked up in the audit per postback (a record's event count is bounded by it)


def schema_json(row: SkanConversionSchema, in_force: bool) -> dict[str, Any]:
    body = row.body or {}
    return {"app_id": row.app_id, "schema_id": row.schema_id, "valid_from": rfc3339_ms(row.valid_from_ms),
            "valid_from_ms": row.valid_from_ms, "mode": body.get("mode"),
            "signature_policy": body.get("signature_policy", "enforce"), "in_force": in_force, "schema": body,
            "updated_at_ms": row.updated_at_ms}


class SkanStore(StoreBase):
    def put_skan_schema(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        schema = decode.parse_schema(body)  # InputError naming the field -> 400
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
            row = session.get(SkanConversionSchema, (app_id, schema.schema_id))
            if row is None:
                row = SkanConversionSchema(app_id=app_id, schema_id=schema.schema_id)
                session.add(row)
            row.valid_from_ms = int(schema.valid_from.timestamp() * 1000)
            row.body = body
            row.updated_at_ms = now_ms()
        return {"app_id": app_id, "schema_id": schema.schema_id, "mode": schema.mode,
                "signature_policy": schema.signature_policy, "valid_from": schema.valid_from.isoformat()}

    def skan_schemas(self, app_id: str, at_ms: int | None = None) -> list[dict[str, Any]]:
        """Every stored schema of the app, newest valid_from first, each saying whether it is the one in force at
        `at_ms` (now): the latest valid_from at or before it, as services/domain/skan/decode.py schema_in_force
        picks (a tie goes to the later stored). NotFound for an unknown app."""
        at_ms = now_ms() if at_ms is None else at_ms
        with self._sessions() as session:
            self._require_app(session, app_id)
            rows = list(session.scalars(
                select(SkanConversionSchema).where(SkanConversionSchema.app_id == app_id)
                .order_by(SkanConversionSchema.valid_from_ms.desc(), SkanConversionSchema.updated_at_ms.desc(),
                          SkanConversionSchema.schema_id.desc())))
        in_force = next((row for row in rows if row.valid_from_ms <= at_ms), None)
        return [schema_json(row, row is in_force) for row in rows]

    def skan_schema_in_force(self, app_id: str) -> dict[str, Any]:
        """NotFound for an unknown app, or when none of its schemas is valid yet."""
        schemas = self.skan_schemas(app_id)
        in_force = next((schema for schema in schemas if schema["in_force"]), None)
        if in_force is None:
            later = f"; {len(schemas)} stored, the first valid from {schemas[-1]['valid_from']}" if schemas else ""
            raise NotFound(f"no SKAN conversion schema in force for app {app_id}{later}")
        return in_force

    def skan_postbacks(self, transaction_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            rows = list(session.scalars(
                select(SkanPostback).where(SkanPostback.transaction_id == transaction_id)
                .order_by(SkanPostback.sequence_index)
            ))
        if not rows:
            raise NotFound(f"no postback with transaction-id {transaction_id}")
        shown = [{
            "transaction_id": r.transaction_id, "postback_sequence_index": r.sequence_index, "app_id": r.app_id,
            "ad_network_id": r.ad_network_id, "version": r.version, "signature": r.signature, "reason": r.reason,
            "did_win": r.did_win, "counted_as_install": r.counted_as_install, "conversion_value": r.conversion_value,
            "coarse_conversion_value": r.coarse_conversion_value, "value_source": r.value_source,
            "sources": r.sources.split(","), "duplicates": r.duplicates, "postback": r.postback,
            "enrichment": enrichment(r.postback), "raw_body": r.raw_body, "schema_id": r.schema_id,
            "records": r.records, "received_at_ms": r.received_at_ms,
        } for r in rows]
        return {**shown[0], "postbacks": shown}


    def skan_postback_page(self, app_id: str, limit: int, before: PostbackPosition | None = None
                           ) -> tuple[list[dict[str, Any]], PostbackPosition | None]:
        """Up to `limit` of the app's postbacks, newest received first, older than `before` when given (read from
        ix_skan_postbacks_app_received); and the position to continue before (None on the last page). NotFound for
        an unknown app."""
        query = select(SkanPostback).where(SkanPostback.app_id == app_id)
        if before is not None:
            at, transaction_id, sequence_index = before
            query = query.where(or_(
                SkanPostback.received_at_ms < at,
                and_(SkanPostback.received_at_ms == at, SkanPostback.transaction_id < transaction_id),
                and_(SkanPostback.received_at_ms == at, SkanPostback.transaction_id == transaction_id,
                     SkanPostback.sequence_index < sequence_index)))
        query = query.order_by(SkanPostback.received_at_ms.desc(), SkanPostback.transaction_id.desc(),
                               SkanPostback.sequence_index.desc()).limit(limit + 1)
        with self._sessions() as session:
            self._require_app(session, app_id)
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        shown = [{"transaction_id": r.transaction_id, "postback_sequence_index": r.sequence_index,
                  "ad_network_id": r.ad_network_id, "version": r.version, "signature": r.signature,
                  "did_win": r.did_win, "counted_as_install": r.counted_as_install,
                  "conversion_value": r.conversion_value, "coarse_conversion_value": r.coarse_conversion_value,
                  "records": len(r.records or []), "duplicates": r.duplicates, "received_at_ms": r.received_at_ms}
                 for r in rows]
        last = rows[-1] if more else None
        return shown, (last.received_at_ms, last.transaction_id, last.sequence_index) if last else None

    def skan_postbacks_sent(self, app_id: str, transaction_id: str) -> list[dict[str, Any]]:
        """The audit records of the postbacks forwarded to ad networks for this transaction: the fanout gives each
        decoded record occurrence a postback id (services/fanout/skan_routing.py: an event record once per `count`,
        at least once; an install or redownload once), which the skan_postback forwarder audits as the event id."""
        with self._sessions() as session:
            rows = list(session.scalars(
                select(SkanPostback).where(SkanPostback.transaction_id == transaction_id,
                                           SkanPostback.app_id == app_id)))
            ids: list[str] = []
            for row in rows:
                index = 0
                for record in row.records or []:
                    kind = record.get("kind") if isinstance(record, dict) else None
                    occurrences = max(int(record.get("count") or 0), 1) if kind == "event" else 1
                    for _ in range(occurrences):
                        if len(ids) < MAX_SENT_IDS:
                            ids.append(postback_id(row.transaction_id, row.sequence_index, index))
                        index += 1
            if not ids:
                return []
            audits = session.scalars(select(AuditEntry).where(AuditEntry.event_id.in_(ids), AuditEntry.app_id == app_id)
                                     .order_by(AuditEntry.id.desc()).limit(MAX_SENT_IDS))
            return [audit_json(a) for a in audits]
