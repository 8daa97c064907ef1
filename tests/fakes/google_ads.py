"""Google Ads offline click conversions (REST v26) plus Google's OAuth token endpoint, on one server.

Point `APPREFER_GOOGLE_ADS_BASE_URL` at `base_url` and `APPREFER_GOOGLE_ADS_TOKEN_URL` at `token_url`.
Error shapes follow google.rpc.Status with a GoogleAdsFailure detail, as the REST API answers them.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import RECORDED, FakeServer

API_VERSION = "v26"
FAILURE_TYPE = f"type.googleapis.com/google.ads.googleads.{API_VERSION}.errors.GoogleAdsFailure"
MAX_CONVERSIONS = 2000
# UploadClickConversionsRequest and ClickConversion fields (google-ads' conversion_upload_service types).
REQUEST_FIELDS = {"customerId", "conversions", "partialFailure", "validateOnly", "jobId"}
CONVERSION_FIELDS = {
    "gclid", "gbraid", "wbraid", "conversionAction", "conversionDateTime", "conversionValue", "currencyCode",
    "orderId", "externalAttributionData", "customVariables", "cartData", "userIdentifiers",
    "conversionEnvironment", "consent", "customerType", "userIpAddress", "sessionAttributesEncoded",
    "sessionAttributesKeyValuePairs",
}
# A gclid starting with one of these prefixes fails its row with that conversionUploadError.
GCLID_PREFIX_ERRORS = {
    "BAD": ("UNPARSEABLE_GCLID", "The imported gclid could not be decoded."),
    "RECENT": ("TOO_RECENT_EVENT", "The click associated with the given identifier or iOS URL parameter "
               "occurred less than 6 hours ago. Retry after 6 hours have passed."),
    "EXPIRED": ("EXPIRED_EVENT", "The imported event can't be recorded because its click occurred before this "
                "conversion's click-through window."),
    "NOTFOUND": ("EVENT_NOT_FOUND", "The imported event could not be attributed to a click."),
}
CONVERSION_ACTION = re.compile(r"customers/\d+/conversionActions/\d+")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
HTTP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED",
               500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

Row = tuple[int, dict[str, Any]]  # (index in conversions, GoogleAdsError)


class FakeGoogleAds(FakeServer):
    """`POST /token` (refresh-token grant) and `POST /v26/customers/{customer_id}:uploadClickConversions`."""

    name = "fake-google-ads"

    def __init__(self, client_id: str = "google-client-id", client_secret: str = "google-client-secret",
                 refresh_token: str = "google-refresh-token", developer_token: str = "google-developer-token",
                 expires_in: int = 3599, developer_token_approved: bool = True, port: int = 0) -> None:
        super().__init__(port)
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.developer_token, self.developer_token_approved = developer_token, developer_token_approved
        self.expires_in = expires_in
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._conversions: dict[tuple[str, str], dict[str, Any]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post(f"/{API_VERSION}/customers/{{customer_id:\\d+}}:uploadClickConversions", self._upload)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # -- test controls -----------------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every access token issued so far now answers 401 OAUTH_TOKEN_EXPIRED; a refresh gets a working one."""
        with self._lock:
            self._access_tokens = dict.fromkeys(self._access_tokens, 0.0)

    def revoke_refresh_token(self) -> None:
        """The refresh token stops working: the token endpoint answers 400 invalid_grant from now on."""
        with self._lock:
            self.refresh_token = f"revoked-{secrets.token_hex(8)}"

    @staticmethod
    def error_body(http_code: int, error_code: dict[str, str], message: str,
                   location: list[dict[str, Any]] | None = None, status: str | None = None) -> dict[str, Any]:
        """A google.rpc.Status body with one GoogleAdsError, e.g. for `fail_next(1, 429, ...)`."""
        return _status(http_code, [_ads_error(error_code, message, location)], status)

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._access_tokens, self._conversions = {}, {}

    # -- what was received -------------------------------------------------------------------------------------

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._access_tokens)

    @property
    def conversions(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Accepted conversions keyed (conversionAction, orderId); field names normalised to camelCase."""
        with self._lock:
            return dict(self._conversions)

    # -- OAuth -------------------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        body = request[RECORDED].body
        form = body if isinstance(body, dict) else {}
        if form.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        if form.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error(401, "invalid_client", "Unauthorized")
        if form.get("refresh_token") != self.refresh_token:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        access_token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._access_tokens[access_token] = time.monotonic() + self.expires_in
        return web.json_response({"access_token": access_token, "expires_in": self.expires_in,
                                  "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"})

    # -- uploadClickConversions --------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        refusal = self._check_credentials(request)
        if refusal is not None:
            return refusal
        body = request[RECORDED].body
        if not isinstance(body, dict):
            return _bad_json("Invalid JSON payload received. Expected an object.")
        body = _camel_keys(body)
        unknown = sorted(set(body) - REQUEST_FIELDS)
        if unknown:
            return _bad_json(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
        conversions = body.get("conversions")
        if not isinstance(conversions, list) or not conversions:
            return _request_error({"fieldError": "REQUIRED_NONEMPTY_LIST"}, "The field must contain at least one "
                                  "element.", [{"fieldName": "conversions"}])
        conversions = [_camel_keys(c) if isinstance(c, dict) else c for c in conversions]
        for i, conversion in enumerate(conversions):
            if not isinstance(conversion, dict):
                return _bad_json(f"Invalid JSON payload received. Invalid value at 'conversions[{i}]': not an object.")
            extra = sorted(set(conversion) - CONVERSION_FIELDS)
            if extra:
                return _bad_json(f'Invalid JSON payload received. Unknown name "{extra[0]}" at \'conversions[{i}]\': '
                                 "Cannot find field.")
        if len(conversions) > MAX_CONVERSIONS:
            return _request_error({"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"},
                                  "Upload fewer than 2001 events in a single request.", [{"fieldName": "conversions"}])
        job_id = _job_id(body.get("jobId"))
        if job_id is None:
            return _request_error({"conversionUploadError": "INVALID_JOB_ID"}, "The provided job id in the request "
                                  "is not within the allowed range.", [{"fieldName": "job_id"}])

        with self._lock:
            errors = self._row_errors(conversions)
            failed = {index for index, _ in errors}
            if errors and not body.get("partialFailure"):
                # Without partial failure the upload is one transaction: any bad row rejects all of them.
                return _json(_status(400, [error for _, error in errors]), 400)
            if not body.get("validateOnly"):
                for i, conversion in enumerate(conversions):
                    if i not in failed:
                        self._conversions[(conversion["conversionAction"], conversion["orderId"])] = conversion
        response: dict[str, Any] = {}
        if errors:
            response["partialFailureError"] = _partial_failure(errors)
        if not body.get("validateOnly"):  # validate-only answers errors, never results
            response["results"] = [{} if i in failed else _result(c) for i, c in enumerate(conversions)]
            response["jobId"] = str(job_id)
        return _json(response, 200)

    def _check_credentials(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return _auth_error(401, {"authenticationError": "OAUTH_TOKEN_HEADER_INVALID"},
                               "Request is missing required authentication credential. Expected OAuth 2 access "
                               "token, login cookie or other valid authentication credential.")
        with self._lock:
            expiry = self._access_tokens.get(token)
        if expiry is None:
            return _auth_error(401, {"authenticationError": "OAUTH_TOKEN_INVALID"}, "Oauth token sent is invalid.")
        if time.monotonic() >= expiry:
            return _auth_error(401, {"authenticationError": "OAUTH_TOKEN_EXPIRED"}, "Authentication of the request "
                               "failed: the OAuth token in the header has expired.")
        developer_token = request.headers.get("developer-token")
        if not developer_token:
            return _auth_error(400, {"requestError": "DEVELOPER_TOKEN_PARAMETER_MISSING"},
                               "The developer-token parameter is required for all requests.")
        if developer_token != self.developer_token:
            # Since v19.1 an unknown developer token is DEVELOPER_TOKEN_INVALID (was OAUTH_TOKEN_HEADER_INVALID).
            return _auth_error(401, {"authenticationError": "DEVELOPER_TOKEN_INVALID"},
                               "The developer token is not valid.")
        if not self.developer_token_approved:
            return _auth_error(403, {"authorizationError": "DEVELOPER_TOKEN_NOT_APPROVED"},
                               "The developer token is only approved for use with test accounts.")
        return None

    def _row_errors(self, conversions: list[dict[str, Any]]) -> list[Row]:
        errors: list[Row] = []
        in_request: set[tuple[str, str]] = set()
        for i, conversion in enumerate(conversions):
            problem = _row_problem(conversion)
            if problem is None:
                key = (conversion["conversionAction"], conversion["orderId"])
                if key in self._conversions:
                    problem = ({"conversionUploadError": "ORDER_ID_ALREADY_IN_USE"}, "The imported event includes "
                               "an order ID that was previously recorded, so the event was not processed.", "order_id")
                elif key in in_request:
                    problem = ({"conversionUploadError": "DUPLICATE_ORDER_ID"}, "Imported events include multiple "
                               "conversions with the same order ID and were not processed.", "order_id")
                in_request.add(key)
            if problem is not None:
                error_code, message, field_name = problem
                location: list[dict[str, Any]] = [{"fieldName": "conversions", "index": i}, {"fieldName": field_name}]
                errors.append((i, _ads_error(error_code, message, location)))
        return errors


def _row_problem(conversion: dict[str, Any]) -> tuple[dict[str, str], str, str] | None:
    """The first thing Google would reject in one conversion: (errorCode, message, snake_case field)."""
    required = ({"fieldError": "REQUIRED"}, "The required field was not present.")
    action = conversion.get("conversionAction")
    if not action:
        return (*required, "conversion_action")
    if not isinstance(action, str) or not CONVERSION_ACTION.fullmatch(action):
        return {"requestError": "RESOURCE_NAME_MALFORMED"}, "Resource name provided is malformed.", "conversion_action"
    date_time = conversion.get("conversionDateTime")
    if not date_time:
        return (*required, "conversion_date_time")
    if not isinstance(date_time, str) or not _valid_date_time(date_time):
        return ({"dateError": "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"},
                "The string date time's format should be yyyy-mm-dd hh:mm:ss+|-hh:mm.", "conversion_date_time")
    if conversion.get("gbraid") and conversion.get("wbraid"):
        return ({"conversionUploadError": "GBRAID_WBRAID_BOTH_SET"},
                "Can't use both gbraid and wbraid parameters. Use only 1 and try again.", "wbraid")
    if conversion.get("gclid"):
        braid = "gbraid" if conversion.get("gbraid") else "wbraid" if conversion.get("wbraid") else None
        if braid:
            return {"fieldError": "VALUE_MUST_BE_UNSET"}, "The field must not be set when gclid is set.", braid
    # Google accepts a conversion without orderId; apprefer always sends one (it is the dedupe key), so the fake
    # is stricter on purpose and a forwarder that forgets it fails here.
    if not conversion.get("orderId"):
        return (*required, "order_id")
    gclid = conversion.get("gclid") or ""
    for prefix, (reason, message) in GCLID_PREFIX_ERRORS.items():
        if gclid.startswith(prefix):
            return {"conversionUploadError": reason}, message, "gclid"
    return None


def _job_id(value: Any) -> int | None:
    """The caller's job id (proto JSON may carry it as a string) or, when absent, one in Google's own range."""
    if value is None:
        return 2**31 + secrets.randbelow(2**62)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def _valid_date_time(value: str) -> bool:
    if not DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d %H:%M:%S%z")
    except ValueError:
        return False
    return True


def _result(conversion: dict[str, Any]) -> dict[str, Any]:
    click = {k: conversion[k] for k in ("gclid", "gbraid", "wbraid") if conversion.get(k)}
    return {**click, "conversionAction": conversion["conversionAction"],
            "conversionDateTime": conversion["conversionDateTime"]}


def _camel_keys(message: dict[str, Any]) -> dict[str, Any]:
    """Google's JSON parser takes proto field names (order_id) as well as lowerCamelCase (orderId)."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key): value for key, value in message.items()}


def _ads_error(error_code: dict[str, str], message: str,
               location: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"errorCode": error_code, "message": message}
    if location:
        error["location"] = {"fieldPathElements": location}
    return error


def _status(http_code: int, errors: list[dict[str, Any]], status: str | None = None) -> dict[str, Any]:
    return {"error": {
        "code": http_code,
        "message": "Request contains an invalid argument." if http_code == 400 else errors[0]["message"],
        "status": status or HTTP_STATUS.get(http_code, "UNKNOWN"),
        "details": [{"@type": FAILURE_TYPE, "errors": errors, "requestId": _request_id()}],
    }}


def _partial_failure(errors: list[Row]) -> dict[str, Any]:
    def where(error: dict[str, Any]) -> str:
        path = error["location"]["fieldPathElements"]
        return f"{path[0]['fieldName']}[{path[0]['index']}].{path[1]['fieldName']}"

    message = ", ".join(f"{error['message']}, at {where(error)}" for _, error in errors)
    details = [{"@type": FAILURE_TYPE, "errors": [error for _, error in errors], "requestId": _request_id()}]
    return {"code": 3, "message": message, "details": details}  # 3 = google.rpc.Code.INVALID_ARGUMENT


def _bad_json(description: str) -> web.Response:
    # Unknown fields are refused by Google's JSON transcoding, before the Ads API: a BadRequest detail.
    body = {"error": {"code": 400, "message": description, "status": "INVALID_ARGUMENT", "details": [
        {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"description": description}]}]}}
    return _json(body, 400)


def _request_error(error_code: dict[str, str], message: str, location: list[dict[str, Any]]) -> web.Response:
    return _json(_status(400, [_ads_error(error_code, message, location)]), 400)


def _auth_error(http_code: int, error_code: dict[str, str], message: str) -> web.Response:
    return _json(_status(http_code, [_ads_error(error_code, message)]), http_code)


def _oauth_error(http_code: int, error: str, description: str) -> web.Response:
    return _json({"error": error, "error_description": description}, http_code)


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.json_response(body, status=status)


def _request_id() -> str:
    return secrets.token_urlsafe(16)


FAKE = FakeGoogleAds
