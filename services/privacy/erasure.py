"""Erasure: one person's data, deleted or anonymised on request, by the admin API and `apprefer erase`.

A request names the person by any of a device id, an external user id, an email address or a phone number.
The last three are hashed on receipt exactly as the gateway hashes `user` (services/privacy/user_data.py), so
they match what was stored, and the raw values are never kept. From them the erasure finds the devices (the
device id itself, and `device_identities` rows holding the hashes), then per app:

- clicks: those of the devices' advertising ids, and the clicks their installs were attributed to (click key
  and click id): deleted;
- installs (each holds its attribution) and device identities of the devices: deleted;
- audit_log: rows carry no device, email or phone; a network's error text (`detail`) can quote what was sent,
  and `request_hash` digests a body that held the user's hashes. Rows of the devices' install events, and rows
  whose detail names an erased value, lose their request hash and have the value replaced by "[erased]";
- skan_postbacks: SKAN carries no device id, so no postback can be matched to a person; the only personal value
  it can hold is the `ip` an ad network added. Every postback of the app keeps only its network part
  (IPv4 /24, IPv6 /48).

Then the request is recorded in `erasure_requests`: the kinds of identifier given, when, and the counts, never
a value. Records already on Kafka are not touched: they age out under the topics' retention.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Text, and_, delete, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, sessionmaker

from services.privacy.user_data import hash_user_data
from shared.crypto import new_id
from shared.db.models import App, AuditEntry, Click, DeviceIdentity, ErasureRequest, Install, SkanPostback
from shared.errors import InputError
from shared.reports.stale import mark_stale

log = logging.getLogger(__name__)

IDENTIFIER_KINDS = ("device_id", "external_id", "email", "phone")
# device_identities kinds that hold each hashed identifier. The attribution consumer records external_id;
# email and phone rows are found the same way wherever they are recorded.
IDENTITY_KINDS = {"external_id": "external_id", "email": "email", "phone": "phone"}
AD_ID_KINDS = ("idfa", "gaid")
TABLES = ("clicks", "installs", "device_identities", "audit_log", "skan_postbacks")
ERASED = "[erased]"
# Shorter values are not searched for in free text: "d1" would match any text that happens to hold it.
MIN_SCRUBBED_LENGTH = 8
SKAN_PAGE = 1000
KAFKA_NOTE = ("records already on Kafka are not erased: they age out under the topics' retention "
              "(retention.ms set by `apprefer topics create`, APPREFER_TOPIC_RETENTION_MS, default 7 days)")

Progress = Callable[[str, int], None]  # (table, rows) as each table is done


class UnknownApp(LookupError):
    pass


# --- pure: what the request names -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identifiers:
    """The request's identifiers as stored: the device id as given, the others as the gateway's hashes."""

    kinds: tuple[str, ...]  # which of IDENTIFIER_KINDS were given
    device_id: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)  # external_id | email | phone -> hash
    phone_e164_hash: str | None = None  # TikTok's form of the phone hash: only searched for in text

    def identity_lookups(self) -> list[tuple[str, str]]:
        return [(IDENTITY_KINDS[kind], value) for kind, value in self.hashes.items()]

    def hashed_values(self) -> list[str]:
        return [*self.hashes.values(), *([self.phone_e164_hash] if self.phone_e164_hash else [])]


def _storable(name: str, value: str) -> None:
    # PostgreSQL refuses a NUL in text, and a lone surrogate (a mangled argv or header) cannot be encoded.
    if "\x00" in value:
        raise InputError(name, "must not contain a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InputError(name, "is not valid Unicode text") from None


def hash_identifiers(*, device_id: str | None = None, external_id: str | None = None, email: str | None = None,
                     phone: str | None = None) -> Identifiers:
    """The identifiers as the gateway stores them; blank ones count as not given.

    :raises InputError: none given (field `body`), or one the gateway would have refused (not an email address, ...),
        its field the identifier's name.
    """
    personal = {"external_id": external_id, "email": email, "phone": phone}
    for name, value in {"device_id": device_id, **personal}.items():
        if value is not None:
            _storable(name, value)
    device = device_id.strip() if device_id else None
    try:
        # The gateway's own hashing: a 64-hex value is taken as already hashed, as it is there.
        hashed = hash_user_data({name: value for name, value in personal.items() if value is not None})
    except InputError as exc:
        raise InputError(exc.field.removeprefix("user."), exc.message) from None
    hashes = {name: hashed[key] for name, key in (("external_id", "external_id"), ("email", "em"),
                                                  ("phone", "ph")) if key in hashed}
    kinds = tuple(kind for kind in IDENTIFIER_KINDS if (kind == "device_id" and device) or kind in hashes)
    if not kinds:
        raise InputError("body", "give at least one of device_id, external_id, email or phone")
    return Identifiers(kinds=kinds, device_id=device, hashes=hashes, phone_e164_hash=hashed.get("ph_e164"))


def anonymise_ip(value: object) -> str | None:
    """The network part only (IPv4 /24, IPv6 /48); None for anything that is not an address."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def anonymised_postback(postback: dict[str, Any], raw_body: str) -> tuple[dict[str, Any], str] | None:
    """The postback and its raw body with the `ip` enrichment anonymised, or None when there is nothing to do.
    The raw body is edited in place (not re-serialised), so the rest of it stays byte for byte."""
    ip = postback.get("ip")
    if not isinstance(ip, str):
        return None  # absent, null, or a number: not an address
    anonymous = anonymise_ip(ip)
    if anonymous == ip:
        return None
    body = raw_body.replace(f'"{ip}"', f'"{anonymous}"' if anonymous is not None else "null")
    return {**postback, "ip": anonymous}, body


def scrubbed(text: str, values: Iterable[str]) -> str:
    for value in values:
        text = text.replace(value, ERASED)
    return text


# --- the erasure itself ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasureResult:
    erasure_id: str
    app_id: str
    kinds: tuple[str, ...]
    dry_run: bool
    counts: dict[str, int]
    requested_at_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"erasure_id": self.erasure_id, "app_id": self.app_id, "identifiers": list(self.kinds),
                "dry_run": self.dry_run, "counts": self.counts, "requested_at_ms": self.requested_at_ms,
                "note": KAFKA_NOTE}


@dataclass(slots=True)
class _Found:
    """What the identifiers lead to in the database."""

    device_ids: set[str] = field(default_factory=set)
    ad_ids: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in AD_ID_KINDS})
    click_keys: set[str] = field(default_factory=set)
    click_ids: set[str] = field(default_factory=set)
    install_event_ids: set[str] = field(default_factory=set)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def erase(sessions: sessionmaker[Session], app_id: str, identifiers: Identifiers, *, source: str,
          dry_run: bool = False, progress: Progress | None = None) -> ErasureResult:
    """Deletes and anonymises what the identifiers lead to in one transaction, then records the request.
    A dry run does the same work, rolls it back, and records the request as a dry run.

    :raises UnknownApp: no such app.
    """
    requested_at_ms = _now_ms()
    report = progress or (lambda _table, _rows: None)
    with sessions() as session:
        if session.get(App, app_id) is None:
            raise UnknownApp(f"app {app_id} not found")
        found = _find(session, app_id, identifiers)
        counts: dict[str, int] = {}
        for table, step in (("clicks", _clicks), ("installs", _installs), ("device_identities", _identities),
                            ("audit_log", _audit_rows)):
            counts[table] = step(session, app_id, identifiers, found)
            report(table, counts[table])
        counts["skan_postbacks"] = _skan_ips(session, app_id)
        report("skan_postbacks", counts["skan_postbacks"])
        if dry_run:
            session.rollback()
        result = ErasureResult(new_id("era"), app_id, identifiers.kinds, dry_run, counts, requested_at_ms)
        session.add(ErasureRequest(erasure_id=result.erasure_id, app_id=app_id, identifiers=",".join(result.kinds),
                                   source=source, dry_run=dry_run, counts=counts, requested_at_ms=requested_at_ms,
                                   completed_at_ms=_now_ms()))
        session.commit()
    log.info("erasure", extra={"erasure_id": result.erasure_id, "app_id": app_id, "identifiers": result.kinds,
                               "dry_run": dry_run, "counts": counts})  # the kinds, never a value
    return result


def _find(session: Session, app_id: str, identifiers: Identifiers) -> _Found:
    found = _Found()
    if identifiers.device_id:
        found.device_ids.add(identifiers.device_id)
    lookups = identifiers.identity_lookups()
    if lookups:
        found.device_ids.update(session.scalars(select(DeviceIdentity.device_id).where(
            DeviceIdentity.app_id == app_id,
            or_(*(and_(DeviceIdentity.kind == kind, DeviceIdentity.value == value) for kind, value in lookups)))))
    if not found.device_ids:
        return found
    devices = sorted(found.device_ids)
    for kind, value in session.execute(select(DeviceIdentity.kind, DeviceIdentity.value).where(
            DeviceIdentity.app_id == app_id, DeviceIdentity.device_id.in_(devices),
            DeviceIdentity.kind.in_(AD_ID_KINDS))):
        found.ad_ids[kind].add(value)
    for install in session.execute(select(Install.click_key, Install.click_id, Install.event_id,
                                          Install.last_install_event_id)
                                   .where(Install.app_id == app_id, Install.device_id.in_(devices))):
        found.click_keys.update([install.click_key] if install.click_key else [])
        found.click_ids.update([install.click_id] if install.click_id else [])
        found.install_event_ids.update(e for e in (install.event_id, install.last_install_event_id) if e)
    return found


def _clicks(session: Session, app_id: str, _identifiers: Identifiers, found: _Found) -> int:
    conditions = [column.in_(sorted(values)) for column, values in (
        (Click.click_key, found.click_keys), (Click.click_id, found.click_ids),
        (Click.idfa, found.ad_ids["idfa"]), (Click.gaid, found.ad_ids["gaid"])) if values]
    if not conditions:
        return 0
    return _rowcount(session.execute(delete(Click).where(Click.app_id == app_id, or_(*conditions))))


def _installs(session: Session, app_id: str, _identifiers: Identifiers, found: _Found) -> int:
    if not found.device_ids:
        return 0
    erased = (Install.app_id == app_id, Install.device_id.in_(sorted(found.device_ids)))
    # The report counts them: their days are rolled up again.
    mark_stale(session, "installs", [(app_id, at) for row in session.execute(
        select(Install.installed_at_ms, Install.last_install_at_ms).where(*erased, ~Install.sandbox))
        for at in row])
    return _rowcount(session.execute(delete(Install).where(*erased)))


def _identities(session: Session, app_id: str, identifiers: Identifiers, found: _Found) -> int:
    conditions = [and_(DeviceIdentity.kind == kind, DeviceIdentity.value == value)
                  for kind, value in identifiers.identity_lookups()]
    if found.device_ids:
        conditions.append(DeviceIdentity.device_id.in_(sorted(found.device_ids)))
    if not conditions:
        return 0
    return _rowcount(session.execute(delete(DeviceIdentity).where(DeviceIdentity.app_id == app_id,
                                                                  or_(*conditions))))


def _audit_rows(session: Session, app_id: str, identifiers: Identifiers, found: _Found) -> int:
    values = sorted({value for value in (*found.device_ids, *found.ad_ids["idfa"], *found.ad_ids["gaid"],
                                         *found.click_ids, *found.click_keys, *identifiers.hashed_values())
                     if len(value) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True)  # longest first: no partials
    conditions = [AuditEntry.detail.contains(value, autoescape=True) for value in values]
    if found.install_event_ids:
        conditions.append(and_(AuditEntry.event_id.in_(sorted(found.install_event_ids)),
                               AuditEntry.request_hash.is_not(None)))
    if not conditions:
        return 0
    rows = session.execute(select(AuditEntry.id, AuditEntry.detail)
                           .where(AuditEntry.app_id == app_id, or_(*conditions))).all()
    for row in rows:
        detail = scrubbed(row.detail, values) if row.detail else row.detail
        session.execute(update(AuditEntry).where(AuditEntry.id == row.id)
                        .values(detail=detail, request_hash=None))
    return len(rows)


def _skan_ips(session: Session, app_id: str) -> int:
    """Every postback of the app with an `ip`, a page at a time (keyset on the primary key)."""
    changed = 0
    after: tuple[str, int] = ("", -1)
    while True:
        page = session.execute(
            select(SkanPostback.transaction_id, SkanPostback.sequence_index, SkanPostback.postback,
                   SkanPostback.raw_body)
            .where(SkanPostback.app_id == app_id, sql_cast(SkanPostback.postback, Text).contains('"ip"'),
                   or_(SkanPostback.transaction_id > after[0],
                       and_(SkanPostback.transaction_id == after[0], SkanPostback.sequence_index > after[1])))
            .order_by(SkanPostback.transaction_id, SkanPostback.sequence_index).limit(SKAN_PAGE)).all()
        for row in page:
            anonymised = anonymised_postback(row.postback, row.raw_body)
            if anonymised is not None:
                session.execute(update(SkanPostback).where(
                    SkanPostback.transaction_id == row.transaction_id,
                    SkanPostback.sequence_index == row.sequence_index,
                ).values(postback=anonymised[0], raw_body=anonymised[1]))
                changed += 1
        if len(page) < SKAN_PAGE:
            return changed
        after = (page[-1].transaction_id, page[-1].sequence_index)
