"""services.forwarders.google_ads: the upload body, checked by Google's own package, and Google's answers.

Error answers are built with the official google-ads types (GoogleAdsFailure packed in a google.rpc.Status),
serialised the way the REST API sends them (camelCase, enum names), so their shape is Google's, not ours.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
import pytest
from google.ads.googleads.v26.errors.types.authentication_error import AuthenticationErrorEnum
from google.ads.googleads.v26.errors.types.conversion_upload_error import ConversionUploadErrorEnum
from google.ads.googleads.v26.errors.types.database_error import DatabaseErrorEnum
from google.ads.googleads.v26.errors.types.errors import ErrorCode, ErrorLocation, GoogleAdsError, GoogleAdsFailure
from google.ads.googleads.v26.errors.types.internal_error import InternalErrorEnum
from google.ads.googleads.v26.errors.types.quota_error import QuotaErrorEnum
from google.ads.googleads.v26.errors.types.request_error import RequestErrorEnum
from google.ads.googleads.v26.services.types.conversion_upload_service import (
    ClickConversionResult,
    UploadClickConversionsRequest,
    UploadClickConversionsResponse,
)
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2

from services.forwarders import google_ads
from shared.forwarding.model import (
    ConnectionCheck,
    Delivered,
    Device,
    ForwardJob,
    HttpRequest,
    HttpResponse,
    Integration,
    Outcome,
    Permanent,
    RefreshCredentials,
    RetryLater,
)

BASE = "https://googleads.example.test/"
TOKEN = "ya29.access-token"
ACTION = "customers/1234567890/conversionActions/987654"
EVENT_MS = 1_760_000_123_456  # 2025-10-09 08:55:23.456 UTC
INTEGRATION = Integration(
    app_id="app1", network="google_ads",
    settings={"customer_id": "123-456-7890", "login_customer_id": "111-222-3333",
              "conversion_actions": {"purchase": ACTION, "trial_start": "customers/1234567890/conversionActions/5"}},
    credentials={"developer_token": "dev-token", "client_id": "client.apps.googleusercontent.com",
                 "client_secret": "client-secret", "refresh_token": "1//refresh"},
)
UploadError = ConversionUploadErrorEnum.ConversionUploadError
AuthError = AuthenticationErrorEnum.AuthenticationError
Internal = InternalErrorEnum.InternalError
Database = DatabaseErrorEnum.DatabaseError
Quota = QuotaErrorEnum.QuotaError
UPLOAD_ERROR_NAMES = [name for name in UploadError.__members__ if name not in ("UNSPECIFIED", "UNKNOWN")]


def make_job(**changes: Any) -> ForwardJob:
    job = ForwardJob(job_id="j1", app_id="app1", network="google_ads", event_id="evt-1", event_name="purchase",
                     network_event_name=ACTION, event_time_ms=EVENT_MS, device=Device(device_id="d1", ip="203.0.113.7"),
                     click_id_type="gclid", click_id="Cj0KCQjw-AbCdEf_123", click_time_ms=EVENT_MS - 3_600_000,
                     user_hashes={"em": "a" * 64}, revenue_amount=9.99, revenue_currency="usd")
    return dataclasses.replace(job, **changes)


def parse_with_googles_package(request: HttpRequest) -> UploadClickConversionsRequest:
    """What the official package makes of our body; it raises on any field v26 does not have."""
    customer_id = request.url.rsplit("/customers/", 1)[1].split(":")[0]
    return UploadClickConversionsRequest.from_json(json.dumps({**request.json, "customerId": customer_id}))


def ads_error(message: str, row: int | None = None, **error_code: Any) -> GoogleAdsError:
    location = None
    if row is not None:
        path = [ErrorLocation.FieldPathElement(field_name="conversions", index=row),
                ErrorLocation.FieldPathElement(field_name="gclid")]
        location = ErrorLocation(field_path_elements=path)
    return GoogleAdsError(error_code=ErrorCode(**error_code), message=message, location=location)


def upload_error(message: str, row: int | None, name: str) -> GoogleAdsError:
    return ads_error(message, row, conversion_upload_error=getattr(UploadError, name))


def rpc_status(code: int, message: str, *errors: GoogleAdsError) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(GoogleAdsFailure.pb(GoogleAdsFailure(errors=list(errors), request_id="req-1")))
    return status_pb2.Status(code=code, message=message, details=[detail])


def partial_failure_response(job_count: int, *errors: GoogleAdsError) -> HttpResponse:
    failed = {error.location.field_path_elements[0].index for error in errors if error.location.field_path_elements}
    recorded = ClickConversionResult(gclid="g", conversion_action=ACTION, conversion_date_time="2025-10-09 08:55:23Z")
    results = [ClickConversionResult() if row in failed else recorded for row in range(job_count)]
    answer = UploadClickConversionsResponse(partial_failure_error=rpc_status(3, "partial failure", *errors),
                                            results=results)
    return HttpResponse(200, UploadClickConversionsResponse.to_json(answer, use_integers_for_enums=False).encode())


def error_response(http_status: int, status_name: str, *errors: GoogleAdsError,
                   headers: dict[str, str] | None = None) -> HttpResponse:
    """The REST error answer: {"error": {code, message, status, details: [GoogleAdsFailure]}}."""
    status = json_format.MessageToDict(rpc_status(http_status, "Request failed", *errors))
    error = {"code": http_status, "message": "Request failed", "status": status_name, "details": status["details"]}
    return HttpResponse(http_status, orjson.dumps({"error": error}), headers or {})


# --- the request --------------------------------------------------------------------------------


def test_request_shape_field_by_field() -> None:
    request = google_ads.build_request([make_job()], INTEGRATION, BASE, TOKEN)

    assert request.method == "POST"
    assert request.url == "https://googleads.example.test/v26/customers/1234567890:uploadClickConversions"
    assert request.headers == {"Authorization": "Bearer ya29.access-token", "developer-token": "dev-token",
                               "login-customer-id": "1112223333"}
    assert request.json == {
        "conversions": [{"gclid": "Cj0KCQjw-AbCdEf_123", "conversionAction": ACTION,
                         "conversionDateTime": "2025-10-09 08:55:23+00:00", "orderId": "evt-1",
                         "conversionValue": 9.99, "currencyCode": "USD"}],
        "partialFailure": True,
        "validateOnly": False,
    }


def test_official_package_parses_the_body_field_for_field() -> None:
    jobs = [make_job(),
            make_job(event_id="evt-2", click_id_type="gbraid", click_id="0AAAAAbraid", revenue_amount=None,
                     revenue_currency=None),
            make_job(event_id="evt-3", click_id_type="wbraid", click_id="wb-1")]
    parsed = parse_with_googles_package(google_ads.build_request(jobs, INTEGRATION, BASE, TOKEN))

    assert parsed.customer_id == "1234567890" and parsed.partial_failure and not parsed.validate_only
    first, second, third = parsed.conversions
    assert (first.gclid, first.conversion_action, first.conversion_date_time, first.order_id) == (
        "Cj0KCQjw-AbCdEf_123", ACTION, "2025-10-09 08:55:23+00:00", "evt-1")
    assert (first.conversion_value, first.currency_code) == (9.99, "USD")
    assert (second.gbraid, second.wbraid, second.order_id) == ("0AAAAAbraid", "", "evt-2")
    assert "gclid" not in second and "conversion_value" not in second and "currency_code" not in second
    assert (third.wbraid, third.gbraid) == ("wb-1", "")


def test_official_package_parses_the_test_connection_body() -> None:
    parsed = parse_with_googles_package(google_ads.test_request(INTEGRATION, BASE, TOKEN))
    assert parsed.validate_only and parsed.conversions[0].conversion_action == ACTION


@pytest.mark.parametrize("unknown", [{"debugEnabled": True}, {"conversions": [{"gclid": "g", "clickId": "x"}]}])
def test_official_package_rejects_unknown_fields(unknown: dict[str, Any]) -> None:
    body = {**google_ads.build_request([make_job()], INTEGRATION, BASE, TOKEN).json, **unknown}
    with pytest.raises(Exception, match=r"no field named|Cannot find field"):  # json_format.ParseError
        UploadClickConversionsRequest.from_json(json.dumps(body))


@pytest.mark.parametrize("click_id_type", ["gclid", "gbraid", "wbraid"])
def test_exactly_one_click_id_per_conversion(click_id_type: str) -> None:
    [conversion] = google_ads.build_request([make_job(click_id_type=click_id_type, click_id="Ab_c-D")], INTEGRATION,
                                            BASE, TOKEN).json["conversions"]
    assert [key for key in conversion if key in ("gclid", "gbraid", "wbraid")] == [click_id_type]
    assert conversion[click_id_type] == "Ab_c-D"


def test_no_login_customer_id_header_when_unset() -> None:
    integration = dataclasses.replace(INTEGRATION, settings={"customer_id": "1234567890"})
    request = google_ads.build_request([make_job()], integration, BASE, TOKEN)
    assert set(request.headers) == {"Authorization", "developer-token"}


@pytest.mark.parametrize(("settings", "credentials"), [
    ({}, {"developer_token": "d"}),
    ({"customer_id": "123-456-7890"}, {}),
])
def test_missing_configuration_is_named(settings: dict[str, str], credentials: dict[str, str]) -> None:
    integration = Integration(app_id="app1", network="google_ads", settings=settings, credentials=credentials)
    with pytest.raises(ValueError, match="developer_token must be set"):
        google_ads.build_request([make_job()], integration, BASE, TOKEN)
    with pytest.raises(ValueError, match="developer_token must be set"):
        google_ads.test_request(integration, BASE, TOKEN)


def test_no_personal_data_in_the_body() -> None:
    body = orjson.dumps(google_ads.build_request([make_job()], INTEGRATION, BASE, TOKEN).json).decode()
    assert "a" * 64 not in body and "203.0.113.7" not in body and TOKEN not in body


@pytest.mark.parametrize(("epoch_ms", "text"), [(0, "1970-01-01 00:00:00+00:00"),
                                                (1_704_067_199_999, "2023-12-31 23:59:59+00:00"),
                                                (EVENT_MS, "2025-10-09 08:55:23+00:00")])
def test_conversion_date_time_format(epoch_ms: int, text: str) -> None:
    assert google_ads.conversion_date_time(epoch_ms) == text


@pytest.mark.parametrize(("changes", "ok"), [
    ({}, True),
    ({"click_id_type": "gbraid"}, True),
    ({"click_id_type": "wbraid"}, True),
    ({"click_id_type": "fbclid"}, False),
    ({"click_id_type": None, "click_id": None}, False),
    ({"click_id": ""}, False),
    ({"network_event_name": "Purchase"}, False),
])
def test_pre_check(changes: dict[str, Any], ok: bool) -> None:
    outcome = google_ads.pre_check(make_job(**changes), EVENT_MS)
    assert outcome is None if ok else isinstance(outcome, Permanent)


# --- the answer: per row --------------------------------------------------------------------------


def test_partial_failure_is_classified_row_by_row() -> None:
    jobs = [make_job(event_id=f"evt-{row}") for row in range(10)]
    answer = partial_failure_response(
        10,
        upload_error("exists", 1, "CLICK_CONVERSION_ALREADY_EXISTS"),
        upload_error("too recent", 2, "TOO_RECENT_EVENT"),
        upload_error("bad gclid", 3, "UNPARSEABLE_GCLID"),
        ads_error("transient", 4, internal_error=Internal.TRANSIENT_ERROR),
        upload_error("order id used", 5, "ORDER_ID_ALREADY_IN_USE"),
        upload_error("dup in request", 6, "DUPLICATE_CLICK_CONVERSION_IN_REQUEST"),
        upload_error("action too recent", 7, "TOO_RECENT_CONVERSION_ACTION"),
        ads_error("concurrent", 8, database_error=Database.CONCURRENT_MODIFICATION),
        upload_error("no action", 9, "NO_CONVERSION_ACTION_FOUND"),
    )
    outcomes = google_ads.classify(answer, jobs)

    assert [type(outcome).__name__ for outcome in outcomes] == [
        "Delivered", "Delivered", "RetryLater", "Permanent", "RetryLater", "Delivered", "Delivered", "RetryLater",
        "RetryLater", "Permanent"]
    assert outcomes[0] == Delivered()
    assert outcomes[1] == Delivered("duplicate: CLICK_CONVERSION_ALREADY_EXISTS")
    for row in (2, 7):
        retry = outcomes[row]
        assert isinstance(retry, RetryLater) and retry.after_seconds is not None and retry.after_seconds >= 6 * 3600
    assert outcomes[3] == Permanent("UNPARSEABLE_GCLID: bad gclid", "UNPARSEABLE_GCLID")
    assert isinstance(outcomes[4], RetryLater) and outcomes[4].error_code == "TRANSIENT_ERROR"
    assert isinstance(outcomes[8], RetryLater) and outcomes[8].error_code == "CONCURRENT_MODIFICATION"
    assert isinstance(outcomes[9], Permanent) and outcomes[9].error_code == "NO_CONVERSION_ACTION_FOUND"


@pytest.mark.parametrize("name", UPLOAD_ERROR_NAMES)
def test_every_conversion_upload_error_is_decided(name: str) -> None:
    jobs = [make_job(), make_job(event_id="evt-2")]
    [first, second] = google_ads.classify(partial_failure_response(2, upload_error("x", 1, name)), jobs)
    duplicate = name.endswith("_ALREADY_EXISTS") or name.startswith("DUPLICATE_") or name == "ORDER_ID_ALREADY_IN_USE"
    expected = RetryLater if name.startswith("TOO_RECENT_") and "CALL" not in name else (
        Delivered if duplicate else Permanent)
    assert first == Delivered()
    assert type(second) is expected


def test_a_row_with_two_errors_takes_the_stronger() -> None:
    answer = partial_failure_response(
        2,
        upload_error("recent", 0, "TOO_RECENT_EVENT"),
        upload_error("bad", 0, "CONVERSION_PRECEDES_EVENT"),
        upload_error("exists", 1, "CLICK_CONVERSION_ALREADY_EXISTS"),
        ads_error("transient", 1, internal_error=Internal.INTERNAL_ERROR),
    )
    first, second = google_ads.classify(answer, [make_job(), make_job(event_id="evt-2")])
    assert isinstance(first, Permanent) and first.error_code == "CONVERSION_PRECEDES_EVENT"
    assert second == Delivered("duplicate: CLICK_CONVERSION_ALREADY_EXISTS")


def test_errors_without_a_row_apply_to_every_row() -> None:
    answer = partial_failure_response(2, ads_error("busy", None, internal_error=Internal.DEADLINE_EXCEEDED))
    outcomes = google_ads.classify(answer, [make_job(), make_job(event_id="evt-2")])
    assert all(isinstance(outcome, RetryLater) and outcome.error_code == "DEADLINE_EXCEEDED" for outcome in outcomes)


def test_partial_failure_without_details_falls_back_to_the_results() -> None:
    body = {"partialFailureError": {"code": 3, "message": "something failed"},
            "results": [{"gclid": "g", "conversionAction": ACTION}, {}]}
    first, second = google_ads.classify(HttpResponse(200, orjson.dumps(body)), [make_job(), make_job(event_id="e2")])
    assert first == Delivered() and isinstance(second, RetryLater)


# --- the answer: the whole request ----------------------------------------------------------------

REQUEST_TABLE: list[tuple[HttpResponse, type]] = [
    (HttpResponse(200, b'{"results": [{"gclid": "g"}, {"gclid": "h"}]}'), Delivered),
    (HttpResponse(200, b'{"results": [{}, {}], "jobId": "7"}'), Delivered),
    (HttpResponse(200, b"<html>proxy</html>"), RetryLater),
    (error_response(401, "UNAUTHENTICATED", ads_error("expired", authentication_error=AuthError.OAUTH_TOKEN_EXPIRED)),
     RefreshCredentials),
    (error_response(401, "UNAUTHENTICATED", ads_error("invalid", authentication_error=AuthError.OAUTH_TOKEN_INVALID)),
     RefreshCredentials),
    (HttpResponse(401, b'{"error": {"code": 401, "message": "missing credential", "status": "UNAUTHENTICATED"}}'),
     RefreshCredentials),
    (HttpResponse(401, b"Unauthorized"), RefreshCredentials),
    (error_response(401, "UNAUTHENTICATED", ads_error("h", authentication_error=AuthError.OAUTH_TOKEN_HEADER_INVALID)),
     RefreshCredentials),
    (error_response(401, "UNAUTHENTICATED", ads_error("dev", authentication_error=AuthError.DEVELOPER_TOKEN_INVALID)),
     Permanent),  # a new access token would not cure it
    (error_response(403, "PERMISSION_DENIED", ads_error("dev", authentication_error=AuthError.DEVELOPER_TOKEN_INVALID)),
     Permanent),
    (HttpResponse(403, b""), Permanent),
    (error_response(429, "RESOURCE_EXHAUSTED", ads_error("quota", quota_error=Quota.RESOURCE_EXHAUSTED)), RetryLater),
    (HttpResponse(429, b"Too Many Requests"), RetryLater),
    (error_response(500, "INTERNAL", ads_error("internal", internal_error=Internal.INTERNAL_ERROR)), RetryLater),
    (HttpResponse(503, b"<html>Service Unavailable</html>"), RetryLater),
    (error_response(400, "INVALID_ARGUMENT",
                    ads_error("concurrent", database_error=Database.CONCURRENT_MODIFICATION)),
     RetryLater),
    (error_response(400, "INVALID_ARGUMENT",
                    ads_error("bad customer", request_error=RequestErrorEnum.RequestError.INVALID_CUSTOMER_ID)),
     Permanent),
    (HttpResponse(400, b"<html>Bad Request</html>"), Permanent),
    (HttpResponse(404, b"Not Found"), Permanent),
]


@pytest.mark.parametrize(("answer", "expected"), REQUEST_TABLE)
def test_request_level_classification(answer: HttpResponse, expected: type) -> None:
    outcomes = google_ads.classify(answer, [make_job(), make_job(event_id="evt-2")])
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1] and type(outcomes[0]) is expected


def test_401_names_the_oauth_error() -> None:
    expired = ads_error("expired", authentication_error=AuthError.OAUTH_TOKEN_EXPIRED)
    [outcome] = google_ads.classify(error_response(401, "UNAUTHENTICATED", expired), [make_job()])
    assert isinstance(outcome, RefreshCredentials) and outcome.error_code == "OAUTH_TOKEN_EXPIRED"
    assert "expired" in outcome.reason


def test_429_honours_retry_after() -> None:
    answer = error_response(429, "RESOURCE_EXHAUSTED", headers={"Retry-After": "30"})
    [outcome] = google_ads.classify(answer, [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 30.0


def test_quota_retry_delay_is_read_without_retry_after() -> None:
    body = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [{
        "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": [{"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "message": "Too many requests",
                    "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": "42s"}}}]}]}}
    [outcome] = google_ads.classify(HttpResponse(429, orjson.dumps(body)), [make_job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 42.0


# --- OAuth ---------------------------------------------------------------------------------------


def test_token_request() -> None:
    request = google_ads.token_request(INTEGRATION, "https://oauth2.example.test/token")
    assert request == HttpRequest("POST", "https://oauth2.example.test/token", form={
        "grant_type": "refresh_token", "client_id": "client.apps.googleusercontent.com",
        "client_secret": "client-secret", "refresh_token": "1//refresh"})


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"access_token": "ya29.new", "expires_in": 3599, "token_type": "Bearer"}, ("ya29.new", 3599.0)),
    (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, Permanent),
    (401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}, Permanent),
    (500, {"error": "internal_failure"}, RetryLater),
    (503, b"<html>", RetryLater),
    (429, b"slow down", RetryLater),
    (200, b"not json", RetryLater),
])
def test_parse_token(status: int, body: Any, expected: Any) -> None:
    parsed = google_ads.parse_token(HttpResponse(status, body if isinstance(body, bytes) else orjson.dumps(body)))
    if isinstance(expected, tuple):
        assert parsed == expected
    else:
        assert isinstance(parsed, expected)


def test_invalid_grant_says_to_authorise_again() -> None:
    parsed = google_ads.parse_token(HttpResponse(400, b'{"error": "invalid_grant"}'))
    assert isinstance(parsed, Permanent) and parsed.error_code == "invalid_grant" and "revoked" in parsed.reason


# --- Test Connection ----------------------------------------------------------------------------


def test_test_request_validates_only() -> None:
    request = google_ads.test_request(INTEGRATION, BASE, TOKEN)
    assert request.url == "https://googleads.example.test/v26/customers/1234567890:uploadClickConversions"
    assert request.json == {"conversions": [{"gclid": google_ads.TEST_GCLID, "conversionAction": ACTION,
                                             "conversionDateTime": google_ads.TEST_CONVERSION_DATE_TIME,
                                             "orderId": "apprefer-test-connection"}],
                            "partialFailure": True, "validateOnly": True}


def test_test_request_without_conversion_actions_still_parses() -> None:
    integration = dataclasses.replace(INTEGRATION, settings={"customer_id": "1234567890"})
    parsed = parse_with_googles_package(google_ads.test_request(integration, BASE, TOKEN))
    assert parsed.validate_only and "conversion_action" not in parsed.conversions[0]


def _check(answer: HttpResponse) -> ConnectionCheck:
    return google_ads.test_result(answer)


def test_test_result() -> None:
    assert _check(HttpResponse(200, b'{"results": [{}]}')).ok
    gclid_only = partial_failure_response(1, upload_error("bad gclid", 0, "UNPARSEABLE_GCLID"))
    assert _check(gclid_only).ok and "UNPARSEABLE_GCLID" in _check(gclid_only).detail

    no_action = partial_failure_response(
        1, upload_error("bad gclid", 0, "UNPARSEABLE_GCLID"),
        upload_error("The conversion action was not found.", 0, "NO_CONVERSION_ACTION_FOUND"))
    assert _check(no_action) == ConnectionCheck(
        False, "NO_CONVERSION_ACTION_FOUND: The conversion action was not found.")

    denied = _check(error_response(401, "UNAUTHENTICATED", ads_error("Oauth token is invalid.",
                                                                      authentication_error=AuthError.OAUTH_TOKEN_INVALID)))
    assert not denied.ok and "Oauth token is invalid." in denied.detail and "OAUTH_TOKEN_INVALID" in denied.detail
    assert not _check(HttpResponse(502, b"<html>")).ok


def test_module_constants() -> None:
    outcome: Outcome | None = google_ads.pre_check(make_job(), 0)
    assert outcome is None and google_ads.BATCH_LIMIT == 2000 and google_ads.NETWORK == "google_ads"
