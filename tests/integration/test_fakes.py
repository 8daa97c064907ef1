"""The network fakes themselves: each answers its documented happy path and each documented error."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeGoogleAds, FakeMeta, FakeTikTok

DATASET = "1234567890"
CUSTOMER = "1112223333"
ACTION = f"customers/{CUSTOMER}/conversionActions/444"
APP_ID = "7000000000000000001"


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         form: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request with urllib (no event loop on the test side); JSON answers decoded."""
    sent_headers = dict(headers or {})
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        sent_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=sent_headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode()


# -- the harness -----------------------------------------------------------------------------------------------


def test_server_runs_in_its_own_thread_and_records_requests() -> None:
    with FakeTikTok() as fake:
        assert fake.base_url.startswith("http://127.0.0.1:")
        status, _ = call("POST", f"{fake.base_url}/open_api/v1.3/event/track/?x=1", {"a": [1]},
                         {"Access-Token": "nope", "X-Trace": "t1"})
        assert status == 200
        [recorded] = fake.requests
        assert (recorded.method, recorded.path, recorded.query, recorded.body) == (
            "POST", "/open_api/v1.3/event/track/", {"x": "1"}, {"a": [1]})
        assert recorded.headers["x-trace"] == "t1"  # headers look up case-insensitively
        assert recorded.status == 200 and abs(recorded.at - time.time()) < 5
        url = fake.base_url
    with pytest.raises(urllib.error.URLError):
        call("GET", url)


def test_fail_next_answers_the_scripted_error_then_the_real_thing(tiktok: FakeTikTok) -> None:
    tiktok.fail_next(2, 503, {"error": "unavailable"}, {"Retry-After": "1"})
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH) == (503, {"error": "unavailable"})
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[0] == 503
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[1]["code"] == 0
    assert [r.status for r in tiktok.requests] == [503, 503, 200]


def test_fail_next_only_hits_matching_paths(google: FakeGoogleAds) -> None:
    google.fail_next(1, 500, {"error": {"code": 500}}, path=":uploadClickConversions")
    token = refresh(google)  # the token endpoint is not scripted to fail
    assert upload(google, token, [conversion("G1", "o1")])[0] == 500
    assert upload(google, token, [conversion("G1", "o1")])[0] == 200


def test_fail_for_is_an_outage_for_a_stretch_of_time(tiktok: FakeTikTok) -> None:
    outage_ends = time.monotonic() + 1.0
    tiktok.fail_for(1.0, 502, {"error": "bad gateway"})
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[0] == 502
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[0] == 502
    time.sleep(max(0.0, outage_ends - time.monotonic()) + 0.05)
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[1]["code"] == 0


def test_reset_forgets_requests_records_and_scripts(tiktok: FakeTikTok) -> None:
    call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)
    tiktok.fail_next(5, 500, {})
    tiktok.reset()
    assert tiktok.requests == [] and tiktok.events == []
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[1]["code"] == 0


async def test_usable_from_an_async_test_with_aiohttp() -> None:
    with FakeMeta(tokens={"tok"}) as meta:
        async with aiohttp.ClientSession() as session:
            url = f"{meta.base_url}/v26.0/{DATASET}/events"
            async with session.post(url, params={"access_token": "tok"}, json={"data": [meta_event()]}) as response:
                assert response.status == 200
                assert (await response.json())["events_received"] == 1
        meta.wait_for(lambda: len(meta.events) == 1, timeout=1)


# -- Meta ------------------------------------------------------------------------------------------------------


@pytest.fixture
def meta() -> Iterator[FakeMeta]:
    with FakeMeta(tokens={"meta-token"}, dataset_ids={DATASET}) as fake:
        yield fake


def meta_event(name: str = "Purchase", event_id: str | None = "e1", age: int = 60, **overrides: Any) -> dict[str, Any]:
    event = {
        "event_name": name, "event_time": int(time.time()) - age, "event_id": event_id, "action_source": "app",
        "user_data": {"madid": "38400000-8cf0-11bd-b23e-10b96e40000d"},
        "custom_data": {"value": 4.99, "currency": "USD"},
        "app_data": {"advertiser_tracking_enabled": 1, "application_tracking_enabled": 1,
                     "extinfo": ["a2", "com.example", "1.0", "1.0 (1)", "14", "Pixel", "en_US", "UTC", "", "1080",
                                 "2400", "2.75", "8", "128", "64", "Europe/Paris"]},
    }
    return {**event, **overrides}


def meta_post(meta: FakeMeta, events: list[dict[str, Any]], token: str = "meta-token", dataset: str = DATASET,
              **extra: Any) -> tuple[int, Any]:
    return call("POST", f"{meta.base_url}/v26.0/{dataset}/events?access_token={token}", {"data": events, **extra})


def test_meta_accepts_events_and_dedupes_on_event_name_and_event_id(meta: FakeMeta) -> None:
    status, body = meta_post(meta, [meta_event(event_id="e1"), meta_event(event_id="e2")])
    assert status == 200 and body["events_received"] == 2 and body["messages"] == [] and body["fbtrace_id"]
    assert meta_post(meta, [meta_event(event_id="e1"), meta_event("Subscribe", event_id="e1")])[0] == 200
    assert len(meta.events) == 4
    assert set(meta.unique_events) == {("Purchase", "e1"), ("Purchase", "e2"), ("Subscribe", "e1")}
    assert meta.duplicates == 1


def test_meta_bad_token_is_a_190_oauth_exception(meta: FakeMeta) -> None:
    status, body = meta_post(meta, [meta_event()], token="wrong")
    assert status == 400
    error = body["error"]
    assert (error["code"], error["type"], error["is_transient"]) == (190, "OAuthException", False)
    assert error["fbtrace_id"] and error["message"]
    meta.expire_token("meta-token")
    status, body = meta_post(meta, [meta_event()])
    assert status == 400 and (body["error"]["code"], body["error"]["error_subcode"]) == (190, 463)
    assert meta.events == []


def test_meta_test_connection_reads_the_dataset(meta: FakeMeta) -> None:
    assert call("GET", f"{meta.base_url}/v26.0/{DATASET}?access_token=meta-token") == (
        200, {"id": DATASET, "name": f"Fake dataset {DATASET}"})
    status, body = call("GET", f"{meta.base_url}/v26.0/{DATASET}?access_token=wrong")
    assert status == 400 and body["error"]["code"] == 190
    status, body = call("GET", f"{meta.base_url}/v26.0/999?access_token=meta-token")
    assert status == 400 and (body["error"]["code"], body["error"]["error_subcode"]) == (100, 33)


def test_meta_rejects_the_whole_request_for_one_stale_or_future_event(meta: FakeMeta) -> None:
    status, body = meta_post(meta, [meta_event(event_id="fresh"), meta_event(event_id="old", age=8 * 24 * 3600)])
    assert status == 400
    assert (body["error"]["code"], body["error"]["error_subcode"]) == (100, 2804003)
    status, body = meta_post(meta, [meta_event(age=-3600)])
    assert status == 400 and body["error"]["code"] == 100
    millis = meta_event(event_time=int(time.time() * 1000))  # a classic bug: milliseconds instead of seconds
    assert meta_post(meta, [millis])[0] == 400
    assert meta.events == []


@pytest.mark.parametrize("event", [
    meta_event(action_source="website"),
    meta_event(event_time="1700000000"),
    meta_event(event_name=""),
    {k: v for k, v in meta_event().items() if k != "user_data"},
    meta_event(app_data={"advertiser_tracking_enabled": 1, "application_tracking_enabled": 1, "extinfo": ["a2"]}),
    meta_event(app_data={"extinfo": ["a2"] + [""] * 15}),
])
def test_meta_validates_each_event(meta: FakeMeta, event: dict[str, Any]) -> None:
    status, body = meta_post(meta, [event])
    assert status == 400 and body["error"]["code"] == 100 and body["error"]["is_transient"] is False


def test_meta_batch_size_is_1_to_1000(meta: FakeMeta) -> None:
    assert meta_post(meta, [])[0] == 400
    assert meta_post(meta, [meta_event(event_id=str(i)) for i in range(1001)])[0] == 400
    assert meta_post(meta, [meta_event(event_id=str(i)) for i in range(1000)])[1]["events_received"] == 1000


def test_meta_test_event_code_records_nothing_real(meta: FakeMeta) -> None:
    status, body = meta_post(meta, [meta_event()], test_event_code="TEST123")
    assert status == 200 and body["events_received"] == 1
    assert meta.events == [] and len(meta.test_events) == 1


@pytest.mark.parametrize("code", [17, 80004])
def test_meta_rate_limit_is_transient(meta: FakeMeta, code: int) -> None:
    meta.rate_limit_next(2, code=code)
    for _ in range(2):
        status, body = meta_post(meta, [meta_event()])
        assert status == 400 and body["error"]["code"] == code and body["error"]["is_transient"] is True
    assert meta_post(meta, [meta_event()])[0] == 200


# -- Google Ads ------------------------------------------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[FakeGoogleAds]:
    with FakeGoogleAds(client_id="cid", client_secret="secret", refresh_token="refresh", developer_token="dev",
                       expires_in=3599) as fake:
        yield fake


def refresh(google: FakeGoogleAds, refresh_token: str = "refresh", client_secret: str = "secret") -> str:
    form = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": client_secret,
            "refresh_token": refresh_token}
    status, body = call("POST", google.token_url, form=form)
    assert status == 200, body
    return str(body["access_token"])


def conversion(gclid: str, order_id: str, **overrides: Any) -> dict[str, Any]:
    return {"gclid": gclid, "conversionAction": ACTION, "conversionDateTime": "2026-01-15 14:30:00+00:00",
            "conversionValue": 4.99, "currencyCode": "USD", "orderId": order_id, **overrides}


def upload(google: FakeGoogleAds, token: str, conversions: list[dict[str, Any]], developer_token: str | None = "dev",
           **fields: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if developer_token is not None:
        headers["developer-token"] = developer_token
    body = {"conversions": conversions, "partialFailure": True, **fields}
    return call("POST", f"{google.base_url}/v26/customers/{CUSTOMER}:uploadClickConversions", body, headers)


def ads_error(body: dict[str, Any]) -> dict[str, Any]:
    [detail] = body["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure"
    return dict(detail["errors"][0])


def test_google_token_endpoint_issues_tokens(google: FakeGoogleAds) -> None:
    form = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "secret", "refresh_token": "refresh"}
    status, body = call("POST", google.token_url, form=form)
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert refresh(google) != body["access_token"]
    assert google.tokens_issued == 2


def test_google_token_endpoint_errors(google: FakeGoogleAds) -> None:
    form = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "secret", "refresh_token": "old"}
    assert call("POST", google.token_url, form=form) == (
        400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    assert call("POST", google.token_url, form={**form, "refresh_token": "refresh", "client_secret": "x"})[1][
        "error"] == "invalid_client"
    google.revoke_refresh_token()
    assert call("POST", google.token_url, form={**form, "refresh_token": "refresh"})[1]["error"] == "invalid_grant"
    assert google.tokens_issued == 0


def test_google_upload_happy_path(google: FakeGoogleAds) -> None:
    status, body = upload(google, refresh(google), [conversion("G1", "o1"), conversion("G2", "o2")])
    assert status == 200 and "partialFailureError" not in body
    assert body["results"][0] == {"gclid": "G1", "conversionAction": ACTION,
                                  "conversionDateTime": "2026-01-15 14:30:00+00:00"}
    assert set(google.conversions) == {(ACTION, "o1"), (ACTION, "o2")}


def test_google_partial_failure_maps_errors_to_rows(google: FakeGoogleAds) -> None:
    token = refresh(google)
    assert upload(google, token, [conversion("G0", "done")])[0] == 200
    rows = [conversion("G1", "o1"), conversion("BAD-gclid", "o2"), conversion("G3", "done"), conversion("G4", "o1"),
            conversion("RECENT-1", "o5")]
    status, body = upload(google, token, rows)
    assert status == 200
    assert [bool(r) for r in body["results"]] == [True, False, False, False, False]
    failure = body["partialFailureError"]
    assert failure["code"] == 3
    [detail] = failure["details"]
    assert detail["@type"].endswith("google.ads.googleads.v26.errors.GoogleAdsFailure")
    by_row = {e["location"]["fieldPathElements"][0]["index"]: e for e in detail["errors"]}
    assert by_row[1]["errorCode"] == {"conversionUploadError": "UNPARSEABLE_GCLID"}
    assert by_row[1]["location"]["fieldPathElements"] == [{"fieldName": "conversions", "index": 1},
                                                          {"fieldName": "gclid"}]
    assert by_row[2]["errorCode"] == {"conversionUploadError": "ORDER_ID_ALREADY_IN_USE"}
    assert by_row[3]["errorCode"] == {"conversionUploadError": "DUPLICATE_ORDER_ID"}
    assert by_row[4]["errorCode"] == {"conversionUploadError": "TOO_RECENT_EVENT"}
    assert set(google.conversions) == {(ACTION, "done"), (ACTION, "o1")}


def test_google_without_partial_failure_one_bad_row_rejects_all(google: FakeGoogleAds) -> None:
    status, body = upload(google, refresh(google), [conversion("G1", "o1"), conversion("BAD", "o2")],
                          partialFailure=False)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert ads_error(body)["errorCode"] == {"conversionUploadError": "UNPARSEABLE_GCLID"}
    assert google.conversions == {}


def test_google_expired_token_is_401_then_a_refreshed_token_works(google: FakeGoogleAds) -> None:
    token = refresh(google)
    google.expire_tokens()
    status, body = upload(google, token, [conversion("G1", "o1")])
    assert status == 401
    assert (body["error"]["code"], body["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert ads_error(body)["errorCode"] == {"authenticationError": "OAUTH_TOKEN_EXPIRED"}
    assert upload(google, refresh(google), [conversion("G1", "o1")])[0] == 200


def test_google_tokens_expire_after_expires_in() -> None:
    with FakeGoogleAds(expires_in=0) as google:
        form = {"grant_type": "refresh_token", "client_id": google.client_id, "client_secret": google.client_secret,
                "refresh_token": google.refresh_token}
        token = call("POST", google.token_url, form=form)[1]["access_token"]
        status, body = upload(google, token, [conversion("G1", "o1")], developer_token=google.developer_token)
        assert status == 401 and ads_error(body)["errorCode"] == {"authenticationError": "OAUTH_TOKEN_EXPIRED"}


def test_google_unknown_or_missing_bearer_token(google: FakeGoogleAds) -> None:
    status, body = upload(google, "never-issued", [conversion("G1", "o1")])
    assert status == 401 and ads_error(body)["errorCode"] == {"authenticationError": "OAUTH_TOKEN_INVALID"}
    status, body = call("POST", f"{google.base_url}/v26/customers/{CUSTOMER}:uploadClickConversions",
                        {"conversions": [conversion("G1", "o1")]}, {"developer-token": "dev"})
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"


def test_google_developer_token_errors(google: FakeGoogleAds) -> None:
    token = refresh(google)
    status, body = upload(google, token, [conversion("G1", "o1")], developer_token=None)
    assert status == 400 and ads_error(body)["errorCode"] == {"requestError": "DEVELOPER_TOKEN_PARAMETER_MISSING"}
    status, body = upload(google, token, [conversion("G1", "o1")], developer_token="wrong")
    assert status == 401 and ads_error(body)["errorCode"] == {"authenticationError": "DEVELOPER_TOKEN_INVALID"}
    google.developer_token_approved = False
    status, body = upload(google, token, [conversion("G1", "o1")])
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    assert ads_error(body)["errorCode"] == {"authorizationError": "DEVELOPER_TOKEN_NOT_APPROVED"}
    assert google.conversions == {}


@pytest.mark.parametrize(("rows", "fields"), [
    ([conversion("G1", "o1")], {"debugEnabled": True}),
    ([conversion("G1", "o1", foo=1)], {}),
])
def test_google_unknown_fields_are_invalid_argument(google: FakeGoogleAds, rows: list[dict[str, Any]],
                                                    fields: dict[str, Any]) -> None:
    status, body = upload(google, refresh(google), rows, **fields)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "Unknown name" in body["error"]["message"]


def test_google_accepts_proto_field_names_too(google: FakeGoogleAds) -> None:
    row = {"gclid": "G1", "conversion_action": ACTION, "conversion_date_time": "2026-01-15 14:30:00-08:00",
           "order_id": "o1"}
    assert upload(google, refresh(google), [row], validate_only=False)[0] == 200
    assert (ACTION, "o1") in google.conversions


@pytest.mark.parametrize(("row", "error_code", "field_name"), [
    (conversion("G1", "o1", gbraid="gb"), {"fieldError": "VALUE_MUST_BE_UNSET"}, "gbraid"),
    ({**conversion("", "o1"), "gbraid": "gb", "wbraid": "wb"}, {"conversionUploadError": "GBRAID_WBRAID_BOTH_SET"},
     "wbraid"),
    (conversion("G1", "o1", conversionDateTime="2026-01-15T14:30:00Z"),
     {"dateError": "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"}, "conversion_date_time"),
    ({k: v for k, v in conversion("G1", "o1").items() if k != "orderId"}, {"fieldError": "REQUIRED"}, "order_id"),
    (conversion("G1", "o1", conversionAction="444"), {"requestError": "RESOURCE_NAME_MALFORMED"},
     "conversion_action"),
])
def test_google_row_validation(google: FakeGoogleAds, row: dict[str, Any], error_code: dict[str, str],
                               field_name: str) -> None:
    status, body = upload(google, refresh(google), [row])
    assert status == 200 and body["results"] == [{}]
    [error] = body["partialFailureError"]["details"][0]["errors"]
    assert error["errorCode"] == error_code
    assert error["location"]["fieldPathElements"][1] == {"fieldName": field_name}


def test_google_batch_limit_is_2000(google: FakeGoogleAds) -> None:
    status, body = upload(google, refresh(google), [conversion(f"G{i}", f"o{i}") for i in range(2001)])
    assert status == 400
    assert ads_error(body)["errorCode"] == {"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"}


def test_google_validate_only_records_nothing(google: FakeGoogleAds) -> None:
    status, body = upload(google, refresh(google), [conversion("G1", "o1"), conversion("BAD", "o2")],
                          validateOnly=True)
    assert status == 200 and "results" not in body
    assert body["partialFailureError"]["details"][0]["errors"][0]["location"]["fieldPathElements"][0]["index"] == 1
    assert google.conversions == {}
    assert google.requests[-1].body["validateOnly"] is True


def test_google_error_body_scripts_a_rate_limit(google: FakeGoogleAds) -> None:
    token = refresh(google)
    google.fail_next(1, 429, FakeGoogleAds.error_body(429, {"quotaError": "RESOURCE_EXHAUSTED"}, "Too many requests"))
    status, body = upload(google, token, [conversion("G1", "o1")])
    assert status == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert ads_error(body)["errorCode"] == {"quotaError": "RESOURCE_EXHAUSTED"}


# -- TikTok ----------------------------------------------------------------------------------------------------

TIKTOK_AUTH = {"Access-Token": "tiktok-token"}


@pytest.fixture
def tiktok() -> Iterator[FakeTikTok]:
    with FakeTikTok(tokens={"tiktok-token"}, event_source_ids={APP_ID}) as fake:
        yield fake


def track_url(tiktok: FakeTikTok) -> str:
    return f"{tiktok.base_url}/open_api/v1.3/event/track/"


def tiktok_event(event: str = "Purchase", event_id: str = "e1", **overrides: Any) -> dict[str, Any]:
    return {"event": event, "event_time": int(time.time()), "event_id": event_id,
            "user": {"idfa": "0" * 64}, "properties": {"value": 4.99, "currency": "USD"}, **overrides}


def track_body(*events: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"event_source": "app", "event_source_id": APP_ID, "data": list(events) or [tiktok_event()], **fields}


def test_tiktok_accepts_events_and_dedupes_on_event_and_event_id(tiktok: FakeTikTok) -> None:
    status, body = call("POST", track_url(tiktok), track_body(tiktok_event(event_id="1"), tiktok_event(event_id="2")),
                        TIKTOK_AUTH)
    assert status == 200 and (body["code"], body["message"], body["data"]) == (0, "OK", {}) and body["request_id"]
    call("POST", track_url(tiktok), track_body(tiktok_event(event_id="1")), TIKTOK_AUTH)
    assert len(tiktok.events) == 3 and tiktok.duplicates == 1
    assert set(tiktok.unique_events) == {("Purchase", "1"), ("Purchase", "2")}


def test_tiktok_bad_token_is_http_200_code_40105(tiktok: FakeTikTok) -> None:
    status, body = call("POST", track_url(tiktok), track_body(), {"Access-Token": "wrong"})
    assert status == 200 and body["code"] == 40105
    assert call("POST", track_url(tiktok), track_body())[1]["code"] == 40105
    assert tiktok.events == []


@pytest.mark.parametrize("body", [
    track_body(event_source="web"),
    {k: v for k, v in track_body().items() if k != "event_source_id"},
    track_body(data=[]),
    track_body(data=[tiktok_event(event_id=str(i)) for i in range(1001)]),
    track_body({k: v for k, v in tiktok_event().items() if k != "event_id"}),
    track_body(tiktok_event(event_time="now")),
])
def test_tiktok_validation_is_code_40002(tiktok: FakeTikTok, body: dict[str, Any]) -> None:
    status, answer = call("POST", track_url(tiktok), body, TIKTOK_AUTH)
    assert status == 200 and answer["code"] == 40002
    assert tiktok.events == []


def test_tiktok_unknown_event_source_is_40001(tiktok: FakeTikTok) -> None:
    status, body = call("POST", track_url(tiktok), track_body(event_source_id="999"), TIKTOK_AUTH)
    assert status == 200 and body["code"] == 40001


def test_tiktok_rate_limit_is_code_40100(tiktok: FakeTikTok) -> None:
    tiktok.rate_limit_next(1)
    status, body = call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)
    assert status == 200 and body["code"] == 40100
    assert call("POST", track_url(tiktok), track_body(), TIKTOK_AUTH)[1]["code"] == 0


def test_tiktok_test_events_are_kept_apart(tiktok: FakeTikTok) -> None:
    assert call("POST", track_url(tiktok), track_body(test_event_code="TEST1"), TIKTOK_AUTH)[1]["code"] == 0
    assert tiktok.events == [] and len(tiktok.test_events) == 1
