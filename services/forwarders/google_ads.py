"""Google Ads offline click conversions (uploadClickConversions, REST, API v26). Pure.

Integration: `settings.customer_id` (the account the conversions belong to, dashes allowed),
`settings.login_customer_id` (the manager account, when access goes through one),
`settings.conversion_actions` ({apprefer event name: "customers/<cid>/conversionActions/<id>"}, used by
the fanout and by Test Connection); `credentials.developer_token`, `credentials.client_id`,
`credentials.client_secret`, `credentials.refresh_token`. The access token is minted from the refresh token by
`token_request`/`parse_token` and passed in by the caller. A missing customer id or developer token raises
ValueError naming it (the engine dead-letters the batch with that reason).

The upload runs with partialFailure: Google answers 200 and lists the failed rows, each error carrying
its row as `location.fieldPathElements[{fieldName: "conversions", index: i}]`, so outcomes are per job.
`orderId` = event_id is Google's dedupe key: sending a job again is always safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.forwarding.model import (
    ConnectionCheck,
    Delivered,
    ForwardJob,
    HttpRequest,
    HttpResponse,
    Integration,
    Outcome,
    Permanent,
    RefreshCredentials,
    RetryLater,
)
from shared.networks.spec import ClickId, NetworkSettings, NetworkSpec

NETWORK = "google_ads"
BATCH_LIMIT = 2_000
API_VERSION = "v26"

CLICK_ID_TYPES = ("gclid", "gbraid", "wbraid")
CONVERSION_ACTION = re.compile(r"customers/\d+/conversionActions/\d+")

# Google asks to wait at least 6 hours after a click or after creating a conversion action.
TOO_RECENT_RETRY_SECONDS = 6 * 3600.0
TOO_RECENT = frozenset({"TOO_RECENT_EVENT", "TOO_RECENT_CONVERSION_ACTION"})
ALREADY_HAVE_IT = frozenset({"ORDER_ID_ALREADY_IN_USE"})  # plus every *_ALREADY_EXISTS and DUPLICATE_*
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TRANSIENT_ERROR", "DEADLINE_EXCEEDED", "CONCURRENT_MODIFICATION",
                             "RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"})

# Test Connection sends one conversion with this click id: Google can only answer that it cannot parse
# or find it, which proves the token, the developer token and the account access all work.
TEST_GCLID = "apprefer-test-connection"
TEST_CONVERSION_DATE_TIME = "2025-01-01 00:00:00+00:00"
SYNTHETIC_CLICK_ERRORS = frozenset({"UNPARSEABLE_GCLID", "EVENT_NOT_FOUND", "CLICK_NOT_FOUND", "EXPIRED_EVENT"})

_DEFAULT_TOKEN_SECONDS = 3600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


CUSTOMER_ID = r"^\d{3}-?\d{3}-?\d{4}$"


class Settings(NetworkSettings):
    customer_id: str = Field(pattern=CUSTOMER_ID, description="The Google Ads account (123-456-7890)")
    login_customer_id: str | None = Field(None, pattern=CUSTOMER_ID,
                                          description="The manager account, when access goes through one")
    # Google has no event names: each forwarded apprefer event needs the conversion action it counts for.
    conversion_actions: dict[str, str] = Field(
        min_length=1, description='apprefer event name -> "customers/<id>/conversionActions/<id>"')

    @field_validator("conversion_actions")
    @classmethod
    def _resource_names(cls, actions: dict[str, str]) -> dict[str, str]:
        for event_name, action in actions.items():
            if not CONVERSION_ACTION.fullmatch(action):
                raise ValueError(f"{event_name}: {action!r} is not customers/<id>/conversionActions/<id>")
        return actions


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    developer_token: SecretStr = Field(min_length=1)
    client_id: SecretStr = Field(min_length=1, description="OAuth client id")
    client_secret: SecretStr = Field(min_length=1, description="OAuth client secret")
    refresh_token: SecretStr = Field(min_length=1, description="OAuth refresh token of a user with account access")


def pre_check(job: ForwardJob, now_ms: int) -> Outcome | None:
    if job.click_id_type not in CLICK_ID_TYPES or not job.click_id:
        return Permanent(f"no Google click id (gclid, gbraid or wbraid); click id type is {job.click_id_type!r}",
                         error_code="no_click_id")
    if not CONVERSION_ACTION.fullmatch(job.network_event_name):
        # With partialFailure a malformed resource name can still fail the whole request: keep it out.
        return Permanent(f"conversion action {job.network_event_name!r} is not a resource name "
                         "customers/<id>/conversionActions/<id>", error_code="bad_conversion_action")
    return None


def build_request(jobs: Sequence[ForwardJob], integration: Integration, base_url: str,
                  access_token: str | None) -> HttpRequest:
    return _upload(integration, base_url, access_token, [_conversion(job) for job in jobs], validate_only=False)


def classify(response: HttpResponse, jobs: Sequence[ForwardJob]) -> list[Outcome]:
    body = response.json()
    if response.status != 200:
        return [_request_outcome(response, body)] * len(jobs)
    if not isinstance(body, dict):
        # Google may have recorded the batch; orderId dedupes, so sending it again is safe.
        return [RetryLater("Google Ads answered HTTP 200 with a body that is not JSON", error_code="200")] * len(jobs)
    partial_failure = _partial_failure(body)
    if partial_failure is None:
        return [Delivered()] * len(jobs)
    return _row_outcomes(partial_failure, body.get("results"), len(jobs))


def test_request(integration: Integration, base_url: str, access_token: str | None) -> HttpRequest:
    # validateOnly: Google checks the request (credentials, account access, the conversion action) and
    # records nothing. Without a configured conversion action the row names the missing field instead.
    conversion: dict[str, Any] = {"gclid": TEST_GCLID, "conversionDateTime": TEST_CONVERSION_DATE_TIME,
                                  "orderId": "apprefer-test-connection"}
    actions = integration.settings.get("conversion_actions")
    if isinstance(actions, Mapping):
        first_action = next((action for action in actions.values() if isinstance(action, str) and action), None)
        if first_action:
            conversion["conversionAction"] = first_action
    return _upload(integration, base_url, access_token, [conversion], validate_only=True)


def test_result(response: HttpResponse) -> ConnectionCheck:
    body = response.json()
    if response.status != 200:
        return ConnectionCheck(False, _error_text(response.status, body))
    if not isinstance(body, dict):
        return ConnectionCheck(False, "Google Ads answered HTTP 200 with a body that is not JSON")
    partial_failure = _partial_failure(body)
    if partial_failure is None:
        return ConnectionCheck(True, "Google Ads accepted a validate-only upload (nothing recorded)")
    errors = list(_errors(partial_failure))
    unexpected = [error for error in errors if _upload_error(error) not in SYNTHETIC_CLICK_ERRORS]
    if errors and not unexpected:
        # The only complaint is about the made-up click: everything the integration configures works.
        return ConnectionCheck(True, "credentials, developer token and account access work; the test click was "
                                     f"rejected as expected ({_upload_error(errors[0])})")
    problems = unexpected or [{"message": str(partial_failure.get("message") or "partial failure")}]
    return ConnectionCheck(False, "; ".join(_describe(error) for error in problems))


def token_request(integration: Integration, token_url: str) -> HttpRequest:
    return HttpRequest("POST", token_url, form={
        "grant_type": "refresh_token",
        "client_id": _config(integration, "client_id"),
        "client_secret": _config(integration, "client_secret"),
        "refresh_token": _config(integration, "refresh_token"),
    })


def parse_token(response: HttpResponse) -> tuple[str, float] | Outcome:
    body = response.json()
    answer = body if isinstance(body, dict) else {}
    token = answer.get("access_token")
    if response.status == 200 and isinstance(token, str) and token:
        expires_in = answer.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else _DEFAULT_TOKEN_SECONDS
    error = str(answer.get("error") or response.status)
    text = f"token endpoint HTTP {response.status}: {error}: {answer.get('error_description') or 'no description'}"
    if error == "invalid_grant":
        return Permanent(f"refresh token expired or revoked (alert: authorise again): {text}", error)
    if response.status == 429 or response.status >= 500:
        return RetryLater(text, response.retry_after_seconds(), error)
    if response.status == 200:
        return RetryLater(f"token endpoint answered 200 without an access_token: {text}", error_code="200")
    return Permanent(text, error)


# --- the request --------------------------------------------------------------------------------


def _upload(integration: Integration, base_url: str, access_token: str | None, conversions: list[dict[str, Any]],
            *, validate_only: bool) -> HttpRequest:
    customer_id = _digits(integration.settings.get("customer_id"))
    developer_token = _config(integration, "developer_token")
    if not customer_id or not developer_token:
        raise ValueError(f"settings.customer_id and credentials.developer_token must be set for the {NETWORK} "
                         "integration")
    headers = {"Authorization": f"Bearer {access_token or ''}", "developer-token": developer_token}
    login_customer_id = _digits(integration.settings.get("login_customer_id"))
    if login_customer_id:
        headers["login-customer-id"] = login_customer_id
    url = f"{base_url.rstrip('/')}/{API_VERSION}/customers/{quote(customer_id, safe='')}:uploadClickConversions"
    body = {"conversions": conversions, "partialFailure": True, "validateOnly": validate_only}
    return HttpRequest("POST", url, headers=headers, json=body)


def _conversion(job: ForwardJob) -> dict[str, Any]:
    conversion: dict[str, Any] = {
        str(job.click_id_type): job.click_id,
        "conversionAction": job.network_event_name,
        "conversionDateTime": conversion_date_time(job.event_time_ms),
        "orderId": job.event_id,
    }
    if job.revenue_amount is not None:
        conversion["conversionValue"] = float(job.revenue_amount)
    if job.revenue_currency:
        conversion["currencyCode"] = job.revenue_currency.upper()
    return conversion


def conversion_date_time(epoch_ms: int) -> str:
    """"yyyy-mm-dd hh:mm:ss+00:00", the format Google requires (with a zone)."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _config(integration: Integration, key: str) -> str:
    return str(integration.credentials.get(key) or "")


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


# --- the answer -----------------------------------------------------------------------------------


def _request_outcome(response: HttpResponse, body: Any) -> Outcome:
    """The answer to a call that failed as a whole (no per-row information): one outcome for every job."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    codes = [code for ads_error in _errors(error) for code in _codes(ads_error)]
    text = _error_text(response.status, body)
    if response.status == 401:
        # An OAuth token problem (or a 401 naming none) is cured by a new access token; a 401 for something
        # else (DEVELOPER_TOKEN_INVALID) is not, and refreshing would only delay the dead letter.
        oauth_code = next((code for code in codes if code.startswith("OAUTH_TOKEN_")), None)
        if oauth_code or not codes:
            return RefreshCredentials(text, oauth_code or str(error.get("status") or 401))
        return Permanent(text, codes[0])
    if response.status == 403:
        return Permanent(text, _first(codes) or str(error.get("status") or 403))
    transient = next((code for code in codes if code in TRANSIENT_CODES), None)
    if (response.status == 429 or response.status >= 500 or error.get("status") == "RESOURCE_EXHAUSTED"
            or transient):
        after = response.retry_after_seconds() or _retry_delay(error)
        return RetryLater(text, after, transient or str(error.get("status") or response.status))
    return Permanent(text, _first(codes) or str(error.get("status") or response.status))


def _partial_failure(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The google.rpc.Status of a partly failed upload, or None when every row went through."""
    partial_failure = body.get("partialFailureError")
    if not partial_failure:
        return None
    return partial_failure if isinstance(partial_failure, dict) else {"message": str(partial_failure)}


def _row_outcomes(partial_failure: Mapping[str, Any], results: Any, job_count: int) -> list[Outcome]:
    row_errors: list[list[Outcome]] = [[] for _ in range(job_count)]
    request_errors: list[Outcome] = []
    for ads_error in _errors(partial_failure):
        row = _row(ads_error)
        if row is None:
            request_errors.append(_error_outcome(ads_error))
        elif 0 <= row < job_count:
            row_errors[row].append(_error_outcome(ads_error))
    if not request_errors and not any(row_errors):
        return _rows_from_results(partial_failure, results, job_count)
    return [_combine(errors + request_errors) if errors or request_errors else Delivered() for errors in row_errors]


def _rows_from_results(partial_failure: Mapping[str, Any], results: Any, job_count: int) -> list[Outcome]:
    """A partial failure whose errors name no row: `results[i]` is {} for a failed row. Retrying is safe."""
    reason = f"partial failure without row details: {partial_failure.get('message') or 'no message'}"
    if not isinstance(results, list) or len(results) != job_count:
        return [RetryLater(reason)] * job_count
    return [Delivered() if result else RetryLater(reason) for result in results]


def _error_outcome(ads_error: Mapping[str, Any]) -> Outcome:
    upload_error = _upload_error(ads_error)
    text = _describe(ads_error)
    if upload_error and (upload_error in ALREADY_HAVE_IT or upload_error.startswith("DUPLICATE_")
                         or upload_error.endswith("_ALREADY_EXISTS")):
        return Delivered(f"duplicate: {upload_error}")
    if upload_error in TOO_RECENT:
        return RetryLater(text, TOO_RECENT_RETRY_SECONDS, upload_error)
    transient = next((code for code in _codes(ads_error) if code in TRANSIENT_CODES), None)
    if transient:
        return RetryLater(text, _retry_delay_of(ads_error), transient)
    return Permanent(text, _first(_codes(ads_error)))


def _combine(outcomes: Sequence[Outcome]) -> Outcome:
    """One row, several errors: Google already holding it wins, then a permanent fault, then a retry."""
    for kind in (Delivered, Permanent):
        found = next((outcome for outcome in outcomes if isinstance(outcome, kind)), None)
        if found is not None:
            return found
    retries = [outcome for outcome in outcomes if isinstance(outcome, RetryLater)]
    return max(retries, key=lambda retry: retry.after_seconds or 0.0)


def _errors(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The GoogleAdsError entries of a google.rpc.Status (its details of type GoogleAdsFailure)."""
    details = status.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(".GoogleAdsFailure"):
            errors = detail.get("errors")
            yield from (error for error in (errors if isinstance(errors, list) else []) if isinstance(error, dict))


def _codes(ads_error: Mapping[str, Any]) -> list[str]:
    error_code = ads_error.get("errorCode")
    return [str(value) for value in error_code.values()] if isinstance(error_code, dict) else []


def _upload_error(ads_error: Mapping[str, Any]) -> str | None:
    error_code = ads_error.get("errorCode")
    value = error_code.get("conversionUploadError") if isinstance(error_code, dict) else None
    return str(value) if value is not None else None


def _row(ads_error: Mapping[str, Any]) -> int | None:
    location = ads_error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements if isinstance(elements, list) else []:
        if isinstance(element, dict) and element.get("fieldName") == "conversions":
            index = element.get("index")
            return index if isinstance(index, int) else None
    return None


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    return next((delay for ads_error in _errors(error) if (delay := _retry_delay_of(ads_error)) is not None), None)


def _retry_delay_of(ads_error: Mapping[str, Any]) -> float | None:
    details = ads_error.get("details")
    quota = details.get("quotaErrorDetails") if isinstance(details, dict) else None
    delay = quota.get("retryDelay") if isinstance(quota, dict) else None
    match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
    return float(match.group(1)) if match else None


def _describe(ads_error: Mapping[str, Any]) -> str:
    codes = ",".join(_codes(ads_error))
    message = ads_error.get("message") or "no message"
    return f"{codes}: {message}" if codes else str(message)


def _error_text(status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"Google Ads answered HTTP {status} without its error JSON"
    details = "; ".join(_describe(ads_error) for ads_error in _errors(error))
    text = f"Google Ads HTTP {status} {error.get('status') or ''}: {error.get('message') or 'no message'}"
    return f"{text} [{details}]" if details else text


def _first(codes: Sequence[str]) -> str | None:
    return codes[0] if codes else None


SPEC = NetworkSpec(
    name=NETWORK, title="Google Ads click conversions", default_base_url="https://googleads.googleapis.com",
    batch_limit=BATCH_LIMIT, settings=Settings, credentials=Credentials,
    pre_check=pre_check, build_request=build_request, classify=classify,
    test_request=test_request, test_result=test_result,
    click_ids=tuple(ClickId(click_id_type) for click_id_type in CLICK_ID_TYPES),
    event_names_setting="conversion_actions",
    token_request=token_request, parse_token=parse_token, default_token_url="https://oauth2.googleapis.com/token",
)
