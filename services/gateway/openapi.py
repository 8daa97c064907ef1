"""The gateway's operations and its OpenAPI document (GET /openapi.json), made by shared/openapi.py from the
routes (services/gateway/app.py) and the models here: the SDK event TypedDicts the gateway validates with
(event_input.py), and models of the other bodies and of every answer.

Clicks, RevenueCat webhooks and SKAN postbacks are read by hand-written parsers (they take what each sender
sends, any case, any extra field); their models here say what those parsers accept, and the schemathesis fuzz
(tests/integration/test_gateway_fuzz.py) checks every answer against the document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from services.domain.skan.postback_input import ENRICHMENT_KEYS, MAX_FINE_VALUE, MAX_SEQUENCE_INDEX
from services.gateway.click_input import KNOWN_PARAMS, MAX_VALUE_LEN
from services.gateway.event_input import EventBatchIn, EventIn
from shared.networks.registry import registry
from shared.openapi import RETRY_AFTER, Answer, DocumentSpec, ErrorOut, InputErrorOut, Operation
from shared.web import MAX_JSON_DEPTH

BODY_DESCRIPTION = ("Request bodies are parsed as JSON whatever their Content-Type; a body that is not JSON is a "
                    "400 invalid_json. Content-Encoding gzip and deflate are decoded (a body not valid in them is a "
                    "400 invalid_body; br and zstd, on any route, a 400 unsupported_encoding).")
# Every registered network's click id parameters (any case is accepted; these are the documented spellings).
CLICK_ID_PARAMS = list(dict.fromkeys(name for click_id, _ in registry().click_ids
                                     for name in (click_id.type, *click_id.params)))
KNOWN_CLICK_PARAMS = [*CLICK_ID_PARAMS, *sorted(KNOWN_PARAMS)]
ClickValue = Annotated[str, Field(max_length=MAX_VALUE_LEN)] | float | None


def _alias_model(name: str, doc: str, names: list[str] | tuple[str, ...], kind: Any,
                 extra: Literal["allow", "ignore"] = "ignore") -> Any:
    """A model whose fields are these names (hyphens and any case allowed: aliases), each `kind`, optional."""
    fields: dict[str, Any] = {f"f{i}": (kind, Field(None, alias=field)) for i, field in enumerate(names)}
    return create_model(name, __doc__=doc, __config__=ConfigDict(extra=extra), **fields)


ClickIn = _alias_model(
    "ClickIn", "The tracking link's query parameters, plus ip and user_agent. A link_id must be one of this app's "
    "links. Parameters other than the known ones are kept as properties (at most 50); every value is a string or a "
    f"number of at most {MAX_VALUE_LEN} characters. A known parameter that looks like an email address or a "
    "phone number is a 400 naming it; another one named like personal data (email, phone, ...) is kept hashed, "
    "and one whose value looks like an email address or a phone number is dropped.",
    ["ip", "user_agent", "link_id", "network", "campaign", *KNOWN_CLICK_PARAMS], ClickValue, extra="allow")
ClickQuery = _alias_model("ClickQuery", "", KNOWN_CLICK_PARAMS, Annotated[str, Field(max_length=MAX_VALUE_LEN)]
                          | None)
SkanEnrichment = _alias_model("SkanEnrichment", "", ENRICHMENT_KEYS, str | None)


class RevenueCatEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    app_user_id: str | None = None
    event_timestamp_ms: int | None = None
    price: float | None = None
    currency: str | None = None


class RevenueCatWebhook(BaseModel):
    """Subscriber attributes named like personal data ($email, $phoneNumber, email, ...) are kept only as hashes;
    device attributes and copied fields that look like an email address or a phone number are dropped."""

    model_config = ConfigDict(extra="allow")
    api_version: str | None = None
    event: RevenueCatEvent


class SkanPostbackIn(BaseModel):
    """Apple's postback (SKAN 1.0-4.0) as sent, optionally enriched by the ad network. Mandatory: the version's
    fields (transaction-id, ad-network-id, ...); postback-sequence-index 0-2, conversion-value 0-63,
    coarse-conversion-value low|medium|high. Unknown keys are kept. The body is stored as received, so an
    enrichment field of it that is named like personal data (email, phone, ...) and not hashed, or that contains
    an email address or a phone number, is a 400 naming it; in the query, such a parameter is hashed or dropped."""

    model_config = ConfigDict(extra="allow")
    version: str | None = None
    ad_network_id: str = Field(alias="ad-network-id")
    transaction_id: str = Field(alias="transaction-id", min_length=1)
    app_id: int = Field(alias="app-id")
    redownload: bool | None = None
    source_identifier: str | None = Field(None, alias="source-identifier")
    conversion_value: int | None = Field(None, alias="conversion-value", ge=0, le=MAX_FINE_VALUE)
    coarse_conversion_value: Literal["low", "medium", "high"] | None = Field(None, alias="coarse-conversion-value")
    postback_sequence_index: int | None = Field(None, alias="postback-sequence-index", ge=0, le=MAX_SEQUENCE_INDEX)
    did_win: bool | None = Field(None, alias="did-win")
    attribution_signature: str | None = Field(None, alias="attribution-signature")


class Accepted(BaseModel):
    accepted: int = Field(ge=1)


class ClickAccepted(BaseModel):
    accepted: Literal[1]
    click_key: str


class ClickRecorded(BaseModel):
    click_key: str
    message: str


class WebhookOk(BaseModel):
    ok: Literal[True]
    event_id: str


class PostbackOk(BaseModel):
    ok: Literal[True]


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

INGEST = ("ingest",)

EVENTS = Operation(
    "SDK events: one event, or {\"events\": [...]}", tags=INGEST, security="apiKey",
    description="202 only after the broker acknowledged every event. Any invalid event rejects the whole request "
                "(400 naming the field, e.g. events[3].device.device_id) and nothing is produced. JSON nested "
                f"deeper than {MAX_JSON_DEPTH} levels is a 400.",
    body=EventIn | EventBatchIn,
    body_examples={"single": EXAMPLE_EVENT,
                   "batch": {"events": [EXAMPLE_EVENT, {**EXAMPLE_EVENT, "event_id": "e2", "user": None}]}},
    answers={202: Answer("every event is on events.raw", Accepted), 503: "Unavailable"})
CLICK = Operation("A server-to-server click", tags=INGEST, security="apiKey", body=ClickIn,
                  answers={202: Answer("the click is on clicks.raw", ClickAccepted), 503: "Unavailable"})
TRACKING_LINK = Operation(
    "A tracking link: record the click, redirect to the store", tags=INGEST, query=ClickQuery,
    answers={302: Answer("the click is on clicks.raw; Location is the store URL (Play links carry the click key "
                         "in the install referrer)",
                         headers={"Location": {"required": True, "schema": {"type": "string"}}}),
             200: Answer("the click is recorded; the link has no store URL", ClickRecorded),
             400: "InputError", 404: "NotFound", 503: "Unavailable"})
REVENUECAT = Operation(
    "A RevenueCat webhook", tags=INGEST, security="revenuecatAuthorization", body=RevenueCatWebhook,
    description="200 as soon as the broker has the event; 4xx only for what a retry cannot fix.",
    answers={200: Answer("the event is on events.raw", WebhookOk), 503: "Unavailable"})
_SKAN_ANSWERS: dict[int, Answer | str] = {
    200: Answer("stored on skan.raw", PostbackOk),
    400: "BadJson",
    413: Answer("body larger than APPREFER_SKAN_MAX_BODY_BYTES (default 16384 bytes; the message names the limit), "
                "whatever the gateway's general limit", ErrorOut),
    429: Answer("too many postbacks for app ids no app has from this source address; retry after Retry-After "
                "seconds (postbacks for a known app are never refused so)", ErrorOut, headers=RETRY_AFTER),
    503: "Unavailable",
}
_SKAN_DESCRIPTION = (
    "200 for every well-formed postback within the limits, duplicates included; 400 for an empty or malformed body "
    "or a missing mandatory field; 413 for a body over APPREFER_SKAN_MAX_BODY_BYTES; 429 when a source address "
    "sends more postbacks for app ids no app has than APPREFER_SKAN_UNKNOWN_APP_RATE_PER_MINUTE (those are stored "
    "as a summary only). Query parameters of the redirect method are merged in when the body lacks them (never "
    "over Apple's fields).")
SKAN_POSTBACK = Operation("A SKAdNetwork postback", tags=INGEST, description=_SKAN_DESCRIPTION, body=SkanPostbackIn,
                          body_examples={"example": EXAMPLE_POSTBACK}, query=SkanEnrichment, answers=_SKAN_ANSWERS)
SKAN_REPORT_ATTRIBUTION = Operation(
    "The copy of the winning postback that iOS sends to the advertiser", tags=INGEST, description=_SKAN_DESCRIPTION,
    body=SkanPostbackIn, body_examples={"example": EXAMPLE_POSTBACK}, query=SkanEnrichment, answers=_SKAN_ANSWERS)

SPEC = DocumentSpec(
    title="apprefer gateway",
    description="Self-hosted mobile attribution: the ingest gateway (events, clicks, tracking links, webhooks, "
                "SKAN postbacks). " + BODY_DESCRIPTION + " A request whose request line and headers are not "
                "complete within APPREFER_GATEWAY_HEADER_TIMEOUT_SECONDS (default 10) has its connection closed "
                "unanswered.",
    security_schemes={
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an app's API key: pk_live_... or pk_test_..."},
        "revenuecatAuthorization": {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "the Authorization value configured in the app's revenuecat integration "
                           "(credentials.authorization), compared verbatim"},
    },
    answers={
        "BadJson": Answer("not JSON, nested deeper than the limit, or failing validation; or a body not valid in "
                          "its Content-Encoding (invalid_body) or in one the gateway cannot decode "
                          "(unsupported_encoding: br, zstd)", ErrorOut),
        "InputError": Answer("bad input; `field` names it (body for an unreadable body: not JSON, not valid in its "
                             "Content-Encoding, or in one the gateway cannot decode)", InputErrorOut),
        "Unauthorized": Answer("missing, unknown or wrong credentials", ErrorOut),
        "NotFound": Answer("unknown resource", ErrorOut),
        "TooLarge": Answer("body larger than APPREFER_GATEWAY_MAX_BODY_BYTES (default 1 MiB)", ErrorOut),
        "Unavailable": Answer("the producer queue is full or the broker did not acknowledge: nothing was stored; "
                              "retry after Retry-After seconds", ErrorOut, headers=RETRY_AFTER),
        "BodyTimeout": Answer("the body did not arrive within APPREFER_GATEWAY_BODY_TIMEOUT_SECONDS of the headers "
                              "(default 30); the connection is closed", ErrorOut),
    },
    security_answers={"apiKey": {401: "Unauthorized"}, "revenuecatAuthorization": {401: "Unauthorized"}},
    body_answers={400: "InputError", 408: "BodyTimeout", 413: "TooLarge"},
)
