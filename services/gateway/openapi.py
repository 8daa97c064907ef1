"""The OpenAPI 3.1 documents of the gateway and of the admin service, each served at its GET /openapi.json.

Hand-written to match the handlers (services/gateway/app.py, admin.py, event_input.py, click_input.py):
change a route's behaviour and its entry here together. tests/integration/test_gateway_fuzz.py runs
schemathesis against this document and fails on any 5xx or any answer it does not describe.

Request bodies are parsed as JSON whatever their Content-Type (SDKs and `curl -d` send
application/x-www-form-urlencoded); a body that is not JSON is a 400 `invalid_json`.
"""

from __future__ import annotations

from typing import Any

from services.admin.integration_settings import integration_names
from services.gateway.click_input import KNOWN_PARAMS
from services.gateway.event_input import DEFAULT_MAX_REVENUE_AMOUNT, MAX_REVENUE_BOUND
from services.privacy.erasure import IDENTIFIER_KINDS
from services.privacy.erasure import TABLES as ERASURE_TABLES
from services.skan.postback_input import ENRICHMENT_KEYS
from shared.networks.registry import registry
from shared.web import MAX_JSON_DEPTH

MAX_BATCH = 500  # APPREFER_GATEWAY_MAX_BATCH's default
# Every registered network's click id parameters (any case is accepted; these are the documented spellings).
CLICK_ID_PARAMS = list(dict.fromkeys(name for click_id, _ in registry().click_ids
                                     for name in (click_id.type, *click_id.params)))
KNOWN_CLICK_PARAMS = [*CLICK_ID_PARAMS, *sorted(KNOWN_PARAMS)]
NETWORKS = list(integration_names())
SKAN_ENRICHMENT_PARAMS = list(ENRICHMENT_KEYS)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(max_length: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def _obj(properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = False,
         **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


ERROR = _obj({
    "error": {"type": "string", "description": "machine-readable code: invalid_json, invalid_request, ..."},
    "message": {"type": "string"},
    "field": {"type": "string", "description": "the offending field, e.g. events[3].device.device_id"},
}, ["error", "message"])
INPUT_ERROR = {**ERROR, "required": ["error", "field", "message"]}

ID = {"type": "string", "minLength": 1, "maxLength": 100, "description": "non-blank; surrounding spaces are trimmed"}
EVENT_TIME = {
    "description": "RFC 3339 with an offset, or epoch seconds / milliseconds (told apart by magnitude), as a "
                   "number or a numeric string. Must lie between 2010-01-01 and one day ahead of the gateway's "
                   "clock; negative, non-finite, older or further-future times are a 400 naming event_time.",
    "anyOf": [{"type": "string", "maxLength": 100}, {"type": "number", "minimum": 1_262_304_000}],
}
DEVICE = _obj({
    "device_id": ID,
    **{name: _nullable(_text(1000)) for name in
       ("idfa", "gaid", "ip", "user_agent", "os_version", "model", "locale", "att_status", "app_version")},
    "os": _nullable({"type": "string", "enum": ["ios", "android"]}),
}, ["device_id"], closed=True, description="Unknown fields are a 400 naming them (device.imei). device_id, idfa "
                                           "and gaid that look like an email address or a phone number are a 400 "
                                           "naming them; the other fields are dropped (null) when they contain one.")
REFERRER = _obj({
    "install_referrer": _nullable(_text(4000)),
    **{name: _nullable(_text(500)) for name in ("click_id", *CLICK_ID_PARAMS)},
}, closed=True)
USER = _obj({
    **{name: _nullable({"type": "string", "maxLength": 1000}) for name in
       ("email", "external_id", "first_name", "last_name", "city", "state", "zip", "country", "gender",
        "date_of_birth")},
    "phone": _nullable({"anyOf": [{"type": "string", "maxLength": 100}, {"type": "integer"}]}),
}, closed=True, description="Personal data: normalised and SHA-256 hashed at the gateway; never stored raw. "
                            "An invalid value (not an email address, a phone without country code, ...) is a 400.")
REVENUE = _obj({
    "amount": {"type": "number", "description": "a JSON number, not a string"},
    "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
}, ["amount", "currency"], closed=True)
EVENT = _obj({
    "event_id": {**ID, "description": "client-generated; the idempotency key end to end"},
    "event_name": ID,
    "event_time": EVENT_TIME,
    "device": _ref("Device"),
    "referrer": _nullable(_ref("Referrer")),
    "user": _nullable(_ref("User")),
    "revenue": _nullable(_ref("Revenue")),
    "properties": {"type": "object"},
}, ["event_id", "event_name", "event_time", "device"],
    description="Fields beyond these are kept in properties. Personal data belongs under user. Sent elsewhere "
                "anyway -- a field named like it (email, e-mail, userEmail, phone_number, mobile, firstName, dob, "
                "...) at the top level, in properties at any depth or in the install referrer -- it is kept "
                "SHA-256 hashed in place (normalised as under user), and fills the user hashes user leaves empty. "
                "Any other string that contains an email address or a phone number is dropped. event_id, "
                "event_name and the referrer's click ids that look like one are a 400 naming them.")
EVENT_BATCH = _obj({"events": {"type": "array", "items": _ref("Event"), "minItems": 1, "maxItems": MAX_BATCH}},
                   ["events"], closed=True)
APP = _obj({
    "app_id": {"type": "string"},
    "name": {"type": "string"},
    "platform": {"type": "string", "enum": ["ios", "android"]},
    "store_url": _nullable({"type": "string"}),
    "bundle_id": _nullable({"type": "string"}),
    "apple_app_id": _nullable({"type": "string"}),
    "lookback_days": {"type": "integer"},
    "fingerprint_window_hours": {"type": "integer"},
    "reattribution_days": {"type": "integer"},
    "max_revenue_amount": {"type": "number"},
    "test_app": {"type": "boolean", "description": "built in for testing: the SKAN guide's simulated apps"},
}, ["app_id", "name", "platform", "store_url", "bundle_id", "apple_app_id", "lookback_days",
    "fingerprint_window_hours", "reattribution_days", "max_revenue_amount", "test_app"])
APP_IN = _obj({
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "platform": {"type": "string", "enum": ["ios", "android"]},
    "store_url": _nullable(_text(2000)),
    "bundle_id": _nullable(_text(200)),
    "apple_app_id": _nullable({"type": "string", "pattern": "^[0-9]{1,20}$"}),
    "lookback_days": {"type": "integer", "minimum": 1, "maximum": 90, "default": 7},
    "fingerprint_window_hours": {"type": "integer", "minimum": 1, "maximum": 168, "default": 24},
    "reattribution_days": {"type": "integer", "minimum": 1, "maximum": 365, "default": 90},
    "max_revenue_amount": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_REVENUE_BOUND,
                           "default": DEFAULT_MAX_REVENUE_AMOUNT,
                           "description": "POST /v1/events refuses a revenue.amount below 0 or above this (400)"},
}, ["name", "platform"], closed=True)
INTEGRATION = _obj({
    "app_id": {"type": "string"},
    "network": {"type": "string", "enum": NETWORKS},
    "enabled": {"type": "boolean"},
    "settings": {"type": "object"},
    "event_map": {"type": "object"},
    "credentials_set": {"type": "boolean", "description": "credentials themselves are write-only"},
    "updated_at_ms": {"type": "integer"},
}, ["app_id", "network", "enabled", "settings", "event_map", "credentials_set", "updated_at_ms"])
INTEGRATION_IN = _obj({
    "enabled": {"type": "boolean", "default": True},
    "settings": {"type": "object", "description": "checked against the network's settings_schema "
                                                   "(GET /admin/v1/networks); omitted: kept as stored"},
    "credentials": _nullable({"type": "object", "description": "checked against the network's credentials_schema; "
                                                              "omitted: kept as stored (required when none are)"}),
    "event_map": {"type": "object"},
}, closed=True, description="A wrong or missing setting or credential is a 400 naming it (settings.dataset_id)")
NETWORK_DESCRIPTION = _obj({
    "network": {"type": "string", "enum": NETWORKS},
    "title": {"type": "string"},
    "kind": {"type": "string", "enum": ["forward", "source"]},
    "settings_schema": {"type": "object"},
    "credentials_schema": {"type": "object"},
}, ["network", "title", "kind", "settings_schema", "credentials_schema"])
AUDIT_RECORD = _obj({
    "app_id": {"type": "string"},
    "event_id": {"type": "string"},
    "event_name": _nullable({"type": "string"}),
    "network": {"type": "string"},
    "status": {"type": "string", "description": "delivered | rejected | retrying | sandbox | dead_lettered | skipped"},
    "attempts": {"type": "integer"},
    "last_error": _nullable({"type": "string"}),
    "detail": _nullable({"type": "string"}),
    "http_status": _nullable({"type": "integer"}),
    "error_code": _nullable({"type": "string"}),
    "latency_ms": _nullable({"type": "integer"}),
    "request_hash": _nullable({"type": "string"}),
    "recorded_at_ms": {"type": "integer"},
}, ["app_id", "event_id", "network", "status", "attempts", "recorded_at_ms"])
ATTRIBUTION = _obj({
    "app_id": {"type": "string"},
    "device_id": {"type": "string"},
    "sandbox": {"type": "boolean", "description": "whether this is the device's test (pk_test_) state"},
    "attributed": {"type": "boolean"},
    "network": _nullable({"type": "string"}),
    "click_id_type": _nullable({"type": "string"}),
    "click_id": _nullable({"type": "string"}),
    "campaign": _nullable({"type": "string"}),
    "matched_by": _nullable({"type": "string", "description": "click_id | device_id | fingerprint"}),
    "install_event_id": {"type": "string"},
    "installed_at_ms": {"type": "integer"},
    "click_time_ms": _nullable({"type": "integer"}),
}, ["app_id", "device_id", "attributed", "network", "click_id_type", "click_id", "campaign", "matched_by"])
ERASURE_IN = _obj({
    "device_id": _nullable(_text(100)),
    "external_id": _nullable({**_text(1000), "description": "hashed on receipt as the gateway hashes "
                                                            "user.external_id (the value as sent)"}),
    "email": _nullable({**_text(1000), "description": "normalised and hashed on receipt as user.email"}),
    "phone": _nullable({**_text(100), "description": "with the country code; hashed on receipt as user.phone"}),
    "dry_run": {"type": "boolean", "default": False, "description": "count what would go, change nothing"},
}, closed=True, description="At least one identifier (400 naming body otherwise); an invalid email or phone is a "
                            "400 naming it. No value is stored, not even hashed.")
ERASURE = _obj({
    "erasure_id": {"type": "string"},
    "app_id": {"type": "string"},
    "identifiers": {"type": "array", "items": {"enum": list(IDENTIFIER_KINDS)}, "description": "the kinds given"},
    "dry_run": {"type": "boolean"},
    "counts": _obj({table: {"type": "integer", "minimum": 0} for table in ERASURE_TABLES}, list(ERASURE_TABLES),
                   description="rows deleted or anonymised (a dry run: that would be) per table"),
    "requested_at_ms": {"type": "integer"},
    "note": {"type": "string", "description": "records already on Kafka age out under the topics' retention"},
}, ["erasure_id", "app_id", "identifiers", "dry_run", "counts", "requested_at_ms"])
SKAN_SCHEMA_IN = _obj({
    "schema_id": {"type": "string", "minLength": 1, "maxLength": 100},
    "valid_from": {"type": "string", "description": "RFC 3339 with an offset"},
    "mode": {"type": "string", "enum": ["revenue", "conversion", "engagement", "table"]},
    "signature_policy": {"type": "string", "enum": ["enforce", "record", "skip"]},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "event_name": {"type": "string"},
    "unit": {"type": "number"},
    "events": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 6},
    "fine": {"type": "object"},
    "coarse": {"type": "object"},
}, ["schema_id", "valid_from", "mode"], description="A SKAN conversion schema (docs/skan.md); keys of another "
                                                    "mode, or unknown keys, are a 400 naming the key.")
SKAN_POSTBACK_IN = {
    "type": "object",
    "description": "Apple's postback (SKAN 1.0-4.0) as sent, optionally enriched by the ad network. Mandatory: "
                   "the version's fields (transaction-id, ad-network-id, ...); postback-sequence-index 0-2, "
                   "conversion-value 0-63, coarse-conversion-value low|medium|high. Unknown keys are kept. The "
                   "body is stored as received, so an enrichment field of it that is named like personal data "
                   "(email, phone, ...) and not hashed, or that contains an email address or a phone number, is a "
                   "400 naming it; in the query, such a parameter is hashed or dropped.",
    "properties": {
        "version": {"type": "string"},
        "ad-network-id": {"type": "string"},
        "transaction-id": {"type": "string", "minLength": 1},
        "app-id": {"type": "integer"},
        "redownload": {"type": "boolean"},
        "source-identifier": {"type": "string"},
        "conversion-value": _nullable({"type": "integer", "minimum": 0, "maximum": 63}),
        "coarse-conversion-value": _nullable({"type": "string", "enum": ["low", "medium", "high"]}),
        "postback-sequence-index": {"type": "integer", "minimum": 0, "maximum": 2},
        "did-win": {"type": "boolean"},
        "attribution-signature": {"type": "string"},
    },
    "required": ["ad-network-id", "transaction-id", "app-id"],
}
EXAMPLE_EVENT = {
    "event_id": "5f0c6c1e-2b1f-4c51-9d43-0c8f0d6a1b2c", "event_name": "purchase", "event_time": 1_700_000_000,
    "device": {"device_id": "idfv-1", "os": "ios", "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
    "referrer": {"fbclid": "IwAR0abc"}, "user": {"email": "jane@example.com", "phone": "+16505551212"},
    "revenue": {"amount": 9.99, "currency": "USD"}, "properties": {"plan": "annual"},
}
EXAMPLE_POSTBACK = {
    "version": "4.0", "ad-network-id": "example123.skadnetwork", "source-identifier": "5239",
    "app-id": 525463029, "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30", "redownload": False,
    "fidelity-type": 1, "did-win": True, "coarse-conversion-value": "high", "postback-sequence-index": 0,
    "attribution-signature": "MEUCIQD4rX6eh38qEhuUKHdap345UbmlzA7KEZ1bhWZuYM8MJwIgMnyiiZe6heabDkGwOaKBYrUXQhKtF3P",
}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an app's API key: pk_live_... or pk_test_..."},
        "adminToken": {"type": "http", "scheme": "bearer", "description": "APPREFER_ADMIN_TOKEN"},
        "revenuecatAuthorization": {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "the Authorization value configured in the app's revenuecat integration "
                           "(credentials.authorization), compared verbatim",
        },
    },
    "schemas": {
        "Error": ERROR, "InputError": INPUT_ERROR, "Event": EVENT, "EventBatch": EVENT_BATCH, "Device": DEVICE,
        "Referrer": REFERRER, "User": USER, "Revenue": REVENUE, "App": APP, "AppIn": APP_IN,
        "Integration": INTEGRATION, "IntegrationIn": INTEGRATION_IN, "AuditRecord": AUDIT_RECORD,
        "Attribution": ATTRIBUTION, "SkanSchemaIn": SKAN_SCHEMA_IN, "SkanPostbackIn": SKAN_POSTBACK_IN,
        "ErasureIn": ERASURE_IN, "Erasure": ERASURE,
    },
    "headers": {
        "RetryAfter": {"description": "seconds to wait before retrying", "schema": {"type": "string"}},
    },
    "responses": {
        "BadJson": _json(_ref("Error"), "not JSON, nested deeper than the limit, or failing validation; or a "
                                        "body not valid in its Content-Encoding (invalid_body) or in one the "
                                        "gateway cannot decode (unsupported_encoding: br, zstd)"),
        "InputError": _json(_ref("InputError"), "bad input; `field` names it (body for an unreadable body: not "
                                                "JSON, not valid in its Content-Encoding, or in one the gateway "
                                                "cannot decode)"),
        "Unauthorized": _json(_ref("Error"), "missing, unknown or wrong credentials"),
        "NotFound": _json(_ref("Error"), "unknown resource"),
        "TooLarge": _json(_ref("Error"), "body larger than APPREFER_GATEWAY_MAX_BODY_BYTES (default 1 MiB)"),
        "Unavailable": {
            **_json(_ref("Error"), "the producer queue is full or the broker did not acknowledge: nothing was "
                                   "stored; retry after Retry-After seconds"),
            "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        },
        "AdminUnavailable": {
            **_json(_ref("Error"), "the database is unavailable (read-only, locked past its busy or lock "
                                   "timeout, down): unavailable, retry after Retry-After seconds; or "
                                   "APPREFER_ADMIN_TOKEN is not set (Test Connection, dead letters: not configured)"),
            "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        },
        "BodyTimeout": _json(_ref("Error"), "the body did not arrive within APPREFER_GATEWAY_BODY_TIMEOUT_SECONDS "
                                            "of the headers (default 30); the connection is closed"),
    },
}


def _r(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _body(schema: dict[str, Any], required: bool = True, **examples: Any) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"required": required, "content": {"application/json": media}}


def _path_param(name: str, description: str = "", **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1, **schema}}


def _query(name: str, description: str = "", **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", **schema}}


INGEST_ERRORS = {"400": _r("InputError"), "401": _r("Unauthorized"), "413": _r("TooLarge"), "503": _r("Unavailable")}
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
ADMIN_ERRORS = {"401": _r("Unauthorized"), "503": _r("AdminUnavailable")}
APP_ID = _path_param("app_id")
NETWORK = _path_param("network", "any other network is a 404", enum=NETWORKS)


def _admin(summary: str, ok: dict[str, dict[str, Any]], *, body: dict[str, Any] | None = None,
           params: list[dict[str, Any]] | None = None, errors: tuple[str, ...] = ()) -> dict[str, Any]:
    responses: dict[str, Any] = {**ok, **ADMIN_ERRORS}
    for code in errors:
        responses[code] = {"400": _r("BadJson"), "404": _r("NotFound"), "413": _r("TooLarge")}[code]
    operation: dict[str, Any] = {"tags": ["admin"], "summary": summary, "security": ADMIN, "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = body
    return operation


SKAN_POSTBACK_OPERATION = {
    "tags": ["ingest"],
    "summary": "A SKAdNetwork postback",
    "description": "200 for every well-formed postback within the limits, duplicates included; 400 for an empty "
                   "or malformed body or a missing mandatory field; 413 for a body over "
                   "APPREFER_SKAN_MAX_BODY_BYTES; 429 when a source address sends more postbacks for app ids no "
                   "app has than APPREFER_SKAN_UNKNOWN_APP_RATE_PER_MINUTE (those are stored as a summary only). "
                   "Query parameters of the redirect method are merged in when the body lacks them (never over "
                   "Apple's fields).",
    "parameters": [_query(name) for name in SKAN_ENRICHMENT_PARAMS],
    "requestBody": _body(_ref("SkanPostbackIn"), example=EXAMPLE_POSTBACK),
    "responses": {
        "200": _json(_obj({"ok": {"const": True}}, ["ok"]), "stored on skan.raw"),
        "400": _r("BadJson"),
        "413": _json(_ref("Error"), "body larger than APPREFER_SKAN_MAX_BODY_BYTES (default 16384 bytes; the "
                                    "message names the limit), whatever the gateway's general limit"),
        "429": {
            **_json(_ref("Error"), "too many postbacks for app ids no app has from this source address; retry "
                                   "after Retry-After seconds (postbacks for a known app are never refused so)"),
            "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        },
        "503": _r("Unavailable"),
    },
}

PATHS: dict[str, Any] = {
    "/v1/events": {"post": {
        "tags": ["ingest"],
        "summary": "SDK events: one event, or {\"events\": [...]} (1 to 500)",
        "description": "202 only after the broker acknowledged every event. Any invalid event rejects the whole "
                       "request (400 naming the field, e.g. events[3].device.device_id) and nothing is produced. "
                       f"JSON nested deeper than {MAX_JSON_DEPTH} levels is a 400.",
        "security": [{"apiKey": []}],
        "requestBody": _body({"anyOf": [_ref("Event"), _ref("EventBatch")]}, single=EXAMPLE_EVENT,
                             batch={"events": [EXAMPLE_EVENT, {**EXAMPLE_EVENT, "event_id": "e2", "user": None}]}),
        "responses": {
            "202": _json(_obj({"accepted": {"type": "integer", "minimum": 1}}, ["accepted"], closed=True),
                         "every event is on events.raw"),
            **INGEST_ERRORS,
        },
    }},
    "/v1/clicks": {"post": {
        "tags": ["ingest"],
        "summary": "A server-to-server click",
        "description": "The tracking link's query parameters as a JSON object, plus ip and user_agent. A link_id "
                       "must be one of this app's links. Parameters other than the known ones are kept as "
                       "properties (at most 50); every value is a string or a number of at most 500 characters. "
                       "A known parameter that looks like an email address or a phone number is a 400 naming it; "
                       "another one named like personal data (email, phone, ...) is kept hashed, and one whose "
                       "value looks like an email address or a phone number is dropped.",
        "security": [{"apiKey": []}],
        "requestBody": _body(_obj({
            "ip": _nullable({"type": "string"}),
            "user_agent": _nullable({"type": "string"}),
            "link_id": _nullable({"type": "string"}),
            "network": _nullable({"type": "string"}),
            "campaign": _nullable({"type": "string"}),
            **{name: _nullable({"anyOf": [_text(500), {"type": "number"}]}) for name in KNOWN_CLICK_PARAMS},
        }, additionalProperties=_nullable({"anyOf": [_text(500), {"type": "number"}]}))),
        "responses": {
            "202": _json(_obj({"accepted": {"const": 1}, "click_key": {"type": "string"}}, ["accepted", "click_key"]),
                         "the click is on clicks.raw"),
            **INGEST_ERRORS,
        },
    }},
    "/c/{link_id}": {"get": {
        "tags": ["ingest"],
        "summary": "A tracking link: record the click, redirect to the store",
        "parameters": [_path_param("link_id"), *(_query(name, maxLength=500) for name in KNOWN_CLICK_PARAMS)],
        "responses": {
            "302": {"description": "the click is on clicks.raw; Location is the store URL (Play links carry the "
                                   "click key in the install referrer)",
                    "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
            "200": _json(_obj({"click_key": {"type": "string"}, "message": {"type": "string"}},
                              ["click_key", "message"]), "the click is recorded; the link has no store URL"),
            "400": _r("InputError"),
            "404": _r("NotFound"),
            "503": _r("Unavailable"),
        },
    }},
    "/v1/webhooks/revenuecat/{app_id}": {"post": {
        "tags": ["ingest"],
        "summary": "A RevenueCat webhook",
        "description": "200 as soon as the broker has the event; 4xx only for what a retry cannot fix. "
                       "Subscriber attributes named like personal data ($email, $phoneNumber, email, ...) are kept "
                       "only as hashes; device attributes and copied fields that look like an email address or "
                       "a phone number are dropped.",
        "security": [{"revenuecatAuthorization": []}],
        "parameters": [APP_ID],
        "requestBody": _body(_obj({
            "api_version": {"type": "string"},
            "event": _obj({
                "id": {"type": "string", "minLength": 1},
                "type": {"type": "string", "minLength": 1},
                "app_user_id": _nullable({"type": "string"}),
                "event_timestamp_ms": _nullable({"type": "integer"}),
                "price": _nullable({"type": "number"}),
                "currency": _nullable({"type": "string"}),
            }, ["id", "type"]),
        }, ["event"])),
        "responses": {
            "200": _json(_obj({"ok": {"const": True}, "event_id": {"type": "string"}}, ["ok", "event_id"]),
                         "the event is on events.raw"),
            **INGEST_ERRORS,
        },
    }},
    "/v1/skan/postbacks": {"post": SKAN_POSTBACK_OPERATION},
    "/.well-known/skadnetwork/report-attribution/": {"post": {
        **SKAN_POSTBACK_OPERATION, "summary": "The copy of the winning postback that iOS sends to the advertiser",
    }},
    "/healthz": {"get": {
        "tags": ["operations"], "summary": "Liveness",
        "responses": {"200": _json(_obj({"status": {"const": "ok"}}, ["status"]), "the process is up")},
    }},
    "/readyz": {"get": {
        "tags": ["operations"], "summary": "Readiness: the database and the broker answer",
        "responses": {
            "200": _json(_obj({"status": {"const": "ready"}}, ["status"]), "ready"),
            "503": _json(_obj({"status": {"const": "unavailable"}, "reason": {"type": "string"}}, ["status"]),
                         "the database or the broker does not answer"),
        },
    }},
    "/metrics": {"get": {
        "tags": ["operations"], "summary": "Prometheus metrics",
        "responses": {"200": {"description": "text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/openapi.json": {"get": {
        "tags": ["operations"], "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
    }},
    "/admin/v1/apps": {
        "post": _admin("Create an app", {"201": _json(_ref("App"), "created")},
                       body=_body(_ref("AppIn")), errors=("400", "413")),
        "get": _admin("List apps", {"200": _json(_obj({"apps": {"type": "array", "items": _ref("App")}},
                                                      ["apps"]), "every app")}),
    },
    "/admin/v1/apps/{app_id}": {
        "get": _admin("One app", {"200": _json(_ref("App"), "the app")}, params=[APP_ID], errors=("404",)),
    },
    "/admin/v1/apps/{app_id}/keys": {
        "post": _admin("Create an API key (shown once; stored hashed)",
                       {"201": _json(_obj({"app_id": {"type": "string"}, "mode": {"enum": ["live", "test"]},
                                           "key": {"type": "string", "pattern": "^pk_(live|test)_"}},
                                          ["app_id", "mode", "key"]), "the new key")},
                       params=[APP_ID], body=_body(_obj({"mode": {"enum": ["live", "test"]}}, ["mode"], closed=True)),
                       errors=("400", "404", "413")),
    },
    "/admin/v1/apps/{app_id}/links": {
        "post": _admin("Create a tracking link",
                       {"201": _json(_obj({"link_id": {"type": "string"}, "url": {"type": "string"},
                                           "app_id": {"type": "string"}, "network": _nullable({"type": "string"}),
                                           "campaign": _nullable({"type": "string"}),
                                           "store_url": _nullable({"type": "string"})},
                                          ["link_id", "url", "app_id"]), "the new link")},
                       params=[APP_ID],
                       body=_body(_obj({"network": _nullable(_text(40)), "campaign": _nullable(_text(200)),
                                        "store_url": _nullable(_text(2000))}, closed=True), required=False),
                       errors=("400", "404", "413")),
    },
    "/admin/v1/networks": {
        "get": _admin("Every network and inbound source, with its settings and credentials JSON schemas",
                      {"200": _json(_obj({"networks": {"type": "array", "items": NETWORK_DESCRIPTION}}, ["networks"]),
                                    "from the network registry: forms can be rendered from the schemas")}),
    },
    "/admin/v1/apps/{app_id}/integrations": {
        "get": _admin("The app's integrations",
                      {"200": _json(_obj({"integrations": {"type": "array", "items": _ref("Integration")}},
                                         ["integrations"]), "credentials are never returned")},
                      params=[APP_ID], errors=("404",)),
    },
    "/admin/v1/apps/{app_id}/integrations/{network}": {
        "put": _admin("Create or update an integration (credentials write-only)",
                      {"200": _json(_ref("Integration"), "stored")}, params=[APP_ID, NETWORK],
                      body=_body(_ref("IntegrationIn"), required=False), errors=("400", "404", "413")),
        "get": _admin("One integration", {"200": _json(_ref("Integration"), "credentials are never returned")},
                      params=[APP_ID, NETWORK], errors=("404",)),
    },
    "/admin/v1/apps/{app_id}/integrations/{network}/test": {
        "post": {
            **_admin("Test Connection: a dry run against the network that records no conversion",
                     {"200": _json(_obj({"ok": {"type": "boolean"}, "detail": {"type": "string"}}, ["ok", "detail"]),
                                   "the network's verdict")},
                     params=[APP_ID, NETWORK], errors=("404",)),
        },
    },
    "/admin/v1/apps/{app_id}/skan/schema": {
        "put": _admin("Store a SKAN conversion schema",
                      {"200": _json(_obj({"app_id": {"type": "string"}, "schema_id": {"type": "string"},
                                          "mode": {"type": "string"}, "signature_policy": {"type": "string"},
                                          "valid_from": {"type": "string"}},
                                         ["app_id", "schema_id", "mode", "signature_policy", "valid_from"]),
                                    "stored")},
                      params=[APP_ID], errors=("400", "404", "413"),
                      body=_body(_ref("SkanSchemaIn"), example={
                          "schema_id": "v1", "valid_from": "2024-01-01T00:00:00Z", "mode": "conversion",
                          "events": ["signup", "purchase"], "coarse": {"0": {"high": [{"event_name": "purchase"}]}},
                      })),
    },
    "/admin/v1/skan/postbacks/{transaction_id}": {
        "get": _admin("A SKAN postback's windows as stored and decoded",
                      {"200": _json(_obj({"transaction_id": {"type": "string"},
                                          "postbacks": {"type": "array", "items": {"type": "object"}}},
                                         ["transaction_id", "postbacks"]), "the first window, and all of them")},
                      params=[_path_param("transaction_id")], errors=("404",)),
    },
    "/admin/v1/audit": {
        "get": _admin("Audit log, newest first",
                      {"200": _json(_obj({"records": {"type": "array", "items": _ref("AuditRecord")}}, ["records"]),
                                    "matching records")},
                      params=[_query("app_id"), _query("event_id"), _query("network"), _query("status"),
                              {"name": "limit", "in": "query", "required": False,
                               "description": "clamped to 1..1000; not an integer is a 400",
                               "schema": {"type": "integer", "default": 100}}],
                      errors=("400",)),
    },
    "/admin/v1/dlq": {
        "get": _admin("Dead letters (read from the .dlq topics, nothing is consumed)",
                      {"200": _json(_obj({"dead_letters": {"type": "array", "items": {"type": "object"}}},
                                         ["dead_letters"]), "matching dead letters with their errors")},
                      params=[_query("network"), _query("app_id"), _query("event_id"), _query("error"),
                              _query("since"), _query("until"),
                              {"name": "limit", "in": "query", "required": False,
                               "schema": {"type": "integer", "default": 100}}],
                      errors=("400",)),
    },
    "/admin/v1/apps/{app_id}/erasure": {
        "post": {
            **_admin("Erase a person's data: clicks, installs and identities deleted, audit rows and SKAN IPs "
                     "anonymised, the request recorded without its values",
                     {"200": _json(_ref("Erasure"), "what was deleted or anonymised, per table")},
                     params=[APP_ID], body=_body(_ref("ErasureIn"), required=False,
                                                 example={"device_id": "idfv-1", "email": "jane@example.com"}),
                     errors=("400", "404", "413")),
        },
    },
    "/admin/v1/apps/{app_id}/attribution": {
        "get": _admin("How a device's install was attributed",
                      {"200": _json(_ref("Attribution"), "the install's attribution")},
                      params=[APP_ID, {"name": "device_id", "in": "query", "required": True,
                                       "schema": {"type": "string", "minLength": 1}},
                              _query("sandbox", "true: the device's test (pk_test_) attribution, kept apart from "
                                                "its live one", enum=["true", "false"])],
                      errors=("400", "404")),
    },
}

# aiohttp's HTTP parser answers a request line (path + query) or a header longer than 8190 bytes itself, before
# any handler: 400 with a text/plain body. Every operation with parameters can meet it.
LINE_TOO_LONG = "request line or a header over 8190 bytes (the HTTP layer's answer, text/plain)"


def _add_line_too_long(paths: dict[str, Any]) -> None:
    for item in paths.values():
        for operation in item.values():
            responses = operation["responses"]
            bad = responses.get("400")
            if not operation.get("parameters") or (bad and "text/plain" in bad.get("content", {})):
                continue  # (the two SKAN routes share their responses)
            if bad is None:
                bad = {"description": LINE_TOO_LONG, "content": {}}
            else:
                if "$ref" in bad:
                    bad = COMPONENTS["responses"][bad["$ref"].rsplit("/", 1)[1]]
                bad = {**bad, "description": f"{bad['description']}; or {LINE_TOO_LONG}"}
            responses["400"] = {**bad, "content": {**bad["content"], "text/plain": {"schema": {"type": "string"}}}}


_add_line_too_long(PATHS)
# Every operation that reads a body can see it arrive too slowly (shared/web_server.py's guard).
for _item in PATHS.values():
    for _operation in _item.values():
        if "requestBody" in _operation:
            _operation["responses"].setdefault("408", _r("BodyTimeout"))

_DESCRIPTION = ("Request bodies are parsed as JSON whatever their Content-Type; a body that is not JSON is a 400 "
                "invalid_json. Content-Encoding gzip and deflate are decoded (a body not valid in them is a 400 "
                "invalid_body; br and zstd, on any route, a 400 unsupported_encoding).")
_SHARED_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")

GATEWAY_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "apprefer gateway",
        "version": "1",
        "description": "Self-hosted mobile attribution: the ingest gateway (events, clicks, tracking links, "
                       "webhooks, SKAN postbacks). " + _DESCRIPTION + " A request whose request line and headers "
                       "are not complete within APPREFER_GATEWAY_HEADER_TIMEOUT_SECONDS (default 10) has its "
                       "connection closed unanswered.",
    },
    "paths": {path: item for path, item in PATHS.items() if not path.startswith("/admin/")},
    "components": COMPONENTS,
}
ADMIN_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "apprefer admin", "version": "1",
             "description": "The admin API (APPREFER_ADMIN_PORT, not the public port). " + _DESCRIPTION},
    "paths": {path: item for path, item in PATHS.items() if path.startswith("/admin/") or path in _SHARED_PATHS},
    "components": COMPONENTS,
}


def document() -> dict[str, Any]:
    """The gateway's OpenAPI document (a fresh copy is not needed: it is only serialised)."""
    return GATEWAY_DOCUMENT


def admin_document() -> dict[str, Any]:
    """The admin service's (services/admin/openapi.py serves it; written here until both are derived from
    their models)."""
    return ADMIN_DOCUMENT
