"""The forwarding engine, written once: forward.<network> (+ .retry) -> the network's API.

A network module only builds requests and classifies responses (pure). This engine batches jobs
per app up to the network's limit, skips what the delivery ledger says is delivered, refreshes
OAuth tokens, retries briefly in process, then turns each job's outcome into effects:

    Delivered           -> deliveries ledger + audit `delivered`
    RetryLater          -> forward.<network>.retry with a due time (backoff) + audit `retrying`,
                           or forward.<network>.dlq + audit `dead_lettered` once attempts run out
    Permanent           -> forward.<network>.dlq + audit `rejected`
    RefreshCredentials  -> a new token and one more try, then as RetryLater

A batch's requests (one per app and chunk) are in flight at once on the HTTP client's loop, at most
`APPREFER_FORWARD_CONCURRENCY` in the process, so one slow tenant costs only its own jobs:
- every request is bounded (connect and total timeouts), and a transport failure or timeout is not
  retried in process: the job goes to the retry topic at once;
- a request still unanswered after `batch_wait` seconds is left to finish in the background and its
  jobs are parked on the retry topic (due after the request's own timeout): the batch's effects and
  commit go ahead without it. If the late answer says delivered, the ledger records it, and the
  parked copy, when due, is audited `delivered` from the ledger instead of being sent again. While
  such a request is out, that integration gets no new call (its jobs wait on the retry topic), so a
  hung endpoint costs one batch one wait, not every batch;
- after `breaker_failures` consecutive transport failures an integration's breaker opens: its jobs go
  to the retry topic with no call made for a cool-down (`shared/forwarding/breaker.py`);
- rate limiting slows only the integration that was limited (`shared/forwarding/rate_limit.py`).
Every reason that reaches an audit row, a header or a log is stripped of the integration's secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.avro import AvroCodec
from shared.crypto import CredentialsError
from shared.db.models import Delivery
from shared.db.upsert import insert_ignoring_duplicates
from shared.forwarding.audit import audit_out, delivered_audit_id
from shared.forwarding.breaker import CircuitBreaker
from shared.forwarding.http import HttpClient, TransportError
from shared.forwarding.integrations import IntegrationCache
from shared.forwarding.model import (
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
from shared.forwarding.rate_limit import RATE_LIMIT_CODES, RateLimits
from shared.forwarding.redact import redact, secret_values
from shared.kafka.records import InRecord, OutRecord, dead_letter_of
from shared.kafka.topics import dlq, forward_topic
from shared.metrics import FORWARD_BREAKERS_OPEN, FORWARD_IN_FLIGHT, FORWARD_OUTCOMES, FORWARD_RATE
from shared.networks.spec import NetworkSpec

log = logging.getLogger(__name__)

DUE_HEADER = "retry.due_ms"
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0
IN_PROCESS_ATTEMPTS = 3  # quick retries of a transient *answer* (5xx, rate limit) before the retry topic
IN_PROCESS_MAX_WAIT = 1.0  # a network that asks for longer waits on the retry topic instead
LATE_MARGIN_SECONDS = 5.0  # a parked job is due this long after its request's own timeout


@dataclass(frozen=True, slots=True)
class Isolation:
    """How much one integration may cost the others (see the module docstring)."""

    batch_wait_seconds: float = 1.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0


@dataclass(slots=True)
class Attempt:
    """One job's outcome from one call, with what the audit record needs."""

    job: ForwardJob
    record: InRecord
    outcome: Outcome
    http_status: int | None = None
    latency_ms: int | None = None
    request_hash: str | None = None


class TokenCache:
    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, app_id: str) -> str | None:
        token = self._tokens.get(app_id)
        return token[0] if token and token[1] > time.monotonic() else None

    def put(self, app_id: str, token: str, lifetime: float) -> None:
        self._tokens[app_id] = (token, time.monotonic() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN_SECONDS))

    def drop(self, app_id: str) -> None:
        self._tokens.pop(app_id, None)


def retry_delay(attempts_made: int, delays: Sequence[float], after_seconds: float | None,
                jitter: Callable[[], float] = random.random) -> float | None:
    """Seconds until the next try, or None when the attempts are used up. ±20 % jitter spreads
    a burst of failures; a network's own Retry-After is a floor."""
    if attempts_made > len(delays):
        return None
    delay = delays[attempts_made - 1] * (0.8 + 0.4 * jitter())
    return max(delay, after_seconds or 0.0)


def request_hash(request: HttpRequest) -> str:
    return hashlib.sha256(orjson.dumps(request.json) if request.json is not None else b"").hexdigest()


class ForwarderHandler:
    SCHEMAS = frozenset({"apprefer.ForwardJob"})  # the loop dead-letters any other

    def __init__(self, *, spec: NetworkSpec, sessions: sessionmaker[Session], codec: AvroCodec,
                 secret_key: str | None, http: HttpClient, base_url: str, token_url: str,
                 retry_delays: Sequence[float], service: str | None = None, max_rps: float = 1000.0,
                 isolation: Isolation = Isolation()) -> None:
        self._spec = spec
        self._network = spec.name
        self._service = service or f"forwarder-{spec.name}"
        self._sessions = sessions
        self._codec = codec
        self._integrations = IntegrationCache(secret_key)
        self._http = http
        self._base_url = base_url
        self._token_url = token_url
        self._delays = list(retry_delays)
        self._tokens = TokenCache()
        self._rates = RateLimits(max_rps)
        self._isolation = isolation
        self._breaker = CircuitBreaker(isolation.breaker_failures, isolation.breaker_cooldown_seconds)
        self._late: set[asyncio.Task[HttpResponse]] = set()  # requests answered after their batch went on
        self._late_by_app: Counter[str] = Counter()  # of those, per integration

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        outputs: list[OutRecord] = []
        pending = [(ForwardJob.from_record(record.value), record) for record in records]

        with self._sessions() as session:
            delivered = self._already_delivered(session, [job for job, _ in pending])
            integrations = {app: self._integrations.for_app(session, app) for app in {j.app_id for j, _ in pending}}

        attempts: list[Attempt] = []
        by_app: dict[str, list[tuple[ForwardJob, InRecord]]] = defaultdict(list)
        now_ms = int(time.time() * 1000)
        for job, record in pending:
            if (job.event_id, job.network) in delivered:
                # The ledger is committed before the batch's audit records are produced: a crash in
                # between would lose the `delivered` row, so it is written again (same id: no double).
                outputs.append(self._audit(job, "delivered", detail="recorded from the delivery ledger",
                                           audit_id=delivered_audit_id(job.event_id, job.network)))
                outputs.append(self._audit(job, "skipped", detail="already delivered (ledger)"))
            elif job.sandbox:
                outputs.append(self._audit(job, "sandbox", detail="sandbox (pk_test_) job: not forwarded"))
            else:
                integration = integrations[job.app_id].get(self._network)
                early = self._spec.pre_check(job, now_ms)
                if integration is None or not integration.enabled:
                    early = Permanent(f"no enabled {self._network} integration for app {job.app_id}")
                if early is not None:
                    attempts.append(Attempt(job, record, early))
                else:
                    by_app[job.app_id].append((job, record))

        chunks = [(integrations[app_id][self._network], app_jobs[start:start + self._spec.batch_limit])
                  for app_id, app_jobs in by_app.items()
                  for start in range(0, len(app_jobs), self._spec.batch_limit)]
        if chunks:
            attempts += self._http.run(self._deliver_all(chunks))

        outputs += self._apply(attempts)
        return outputs

    def _already_delivered(self, session: Session, jobs: list[ForwardJob]) -> set[tuple[str, str]]:
        if not jobs:
            return set()
        event_ids_by_network: dict[str, set[str]] = defaultdict(set)
        for job in jobs:
            event_ids_by_network[job.network].add(job.event_id)
        delivered: set[tuple[str, str]] = set()
        # `network = x AND event_id IN (...)` walks the primary key; a row-value IN over
        # (event_id, network) pairs made PostgreSQL scan the whole ledger on every batch.
        for network, event_ids in event_ids_by_network.items():
            rows = session.execute(select(Delivery.event_id).where(
                Delivery.network == network, Delivery.event_id.in_(sorted(event_ids))))
            delivered.update((event_id, network) for (event_id,) in rows)
        return delivered

    # --- calling the network (coroutines on the HTTP client's loop) ------------------------------

    async def _deliver_all(self, chunks: list[tuple[Integration, list[tuple[ForwardJob, InRecord]]]]
                           ) -> list[Attempt]:
        results = await asyncio.gather(*(self._deliver(integration, chunk) for integration, chunk in chunks))
        FORWARD_IN_FLIGHT.labels(self._network).set(len(self._late))
        FORWARD_BREAKERS_OPEN.labels(self._network).set(self._breaker.open_count())
        FORWARD_RATE.labels(self._network).set(self._rates.slowest())
        return [attempt for result in results for attempt in result]

    async def _deliver(self, integration: Integration, chunk: list[tuple[ForwardJob, InRecord]]) -> list[Attempt]:
        blocked_for = self._breaker.blocked_for(integration.app_id)
        if blocked_for is not None:
            reason = (f"circuit open: {self._breaker.failures(integration.app_id)} consecutive transport failures "
                      f"of this app's {self._network} endpoint; no call for {blocked_for:.0f} s")
            return [Attempt(job, record, RetryLater(reason, after_seconds=blocked_for, error_code="circuit_open"))
                    for job, record in chunk]
        result = await self._call_with_retries(integration, chunk)
        if any(isinstance(a.outcome, RefreshCredentials) for a in result):
            # An expired token: mint a new one and try exactly once more.
            self._tokens.drop(integration.app_id)
            result = await self._call_with_retries(integration, chunk)
        result = [
            replace(a, outcome=RetryLater(a.outcome.reason, error_code=a.outcome.error_code))
            if isinstance(a.outcome, RefreshCredentials) else a
            for a in result
        ]
        return self._redacted(integration, result)

    async def _call_with_retries(self, integration: Integration, chunk: list[tuple[ForwardJob, InRecord]]
                                 ) -> list[Attempt]:
        for attempt_number in range(1, IN_PROCESS_ATTEMPTS + 1):
            result = await self._call_once(integration, chunk)
            if attempt_number == IN_PROCESS_ATTEMPTS or not self._worth_retrying_now(result):
                return result
            await asyncio.sleep(min(IN_PROCESS_MAX_WAIT, 0.2 * 2 ** (attempt_number - 1)))
        raise AssertionError("unreachable")

    @staticmethod
    def _worth_retrying_now(result: list[Attempt]) -> bool:
        """Only a transient *answer* is tried again at once: after a timeout or a refused connection the
        endpoint would likely cost the batch as much again, so those jobs go to the retry topic."""
        return bool(result) and all(
            isinstance(a.outcome, RetryLater) and a.http_status is not None
            and (a.outcome.after_seconds or 0) <= IN_PROCESS_MAX_WAIT
            for a in result
        )

    async def _call_once(self, integration: Integration, chunk: list[tuple[ForwardJob, InRecord]]) -> list[Attempt]:
        jobs = [job for job, _ in chunk]
        token_or_outcome = await self._access_token(integration)
        if not isinstance(token_or_outcome, str | None):
            return [Attempt(job, record, token_or_outcome) for job, record in chunk]
        try:
            request = self._spec.build_request(jobs, integration, self._base_url, token_or_outcome)
        except (KeyError, ValueError, TypeError) as exc:
            # A misconfigured integration (missing dataset_id, ...): nothing to retry until fixed.
            reason = f"cannot build the {self._network} request: {type(exc).__name__}: {exc}"
            return [Attempt(job, record, Permanent(reason)) for job, record in chunk]
        digest = request_hash(request)
        key = integration.app_id
        if self._late_by_app[key]:
            # This endpoint has a request out that outlived its batch's wait: another would most likely cost
            # the next batch the same wait. Its jobs wait on the retry topic until that one is settled.
            reason = (f"an earlier request to this app's {self._network} endpoint is still unanswered; "
                      "no new call until it is settled")
            held = RetryLater(reason, after_seconds=self._http.timeout + LATE_MARGIN_SECONDS,
                              error_code="endpoint_slow")
            return [Attempt(job, record, held) for job, record in chunk]
        wait = self._rates.reserve(key)
        if wait > 0:
            await asyncio.sleep(wait)
        started = time.monotonic()
        sending = asyncio.ensure_future(self._http.request(request))
        try:
            # shield: past the wait the request goes on; only this batch stops waiting for it.
            response = await asyncio.wait_for(asyncio.shield(sending), self._isolation.batch_wait_seconds)
        except TimeoutError:
            self._late.add(sending)
            self._late_by_app[key] += 1
            sending.add_done_callback(lambda task: self._settle_late(task, integration, jobs))
            reason = (f"no answer from {self._network} within {self._isolation.batch_wait_seconds:g} s; the request "
                      "goes on, and the job is looked at again after its timeout")
            later = RetryLater(reason, after_seconds=self._http.timeout + LATE_MARGIN_SECONDS, error_code="in_flight")
            return [Attempt(job, record, later, None, None, digest) for job, record in chunk]
        except TransportError as exc:
            self._breaker.failed(key)
            latency = int((time.monotonic() - started) * 1000)
            failed = RetryLater(str(exc), error_code="timeout" if exc.timed_out else "transport")
            return [Attempt(job, record, failed, None, latency, digest) for job, record in chunk]
        latency = int((time.monotonic() - started) * 1000)
        outcomes = self._answered(key, response, jobs)
        return [Attempt(job, record, outcome, response.status, latency, digest)
                for (job, record), outcome in zip(chunk, outcomes, strict=True)]

    def _answered(self, key: str, response: HttpResponse, jobs: list[ForwardJob]) -> list[Outcome]:
        self._breaker.succeeded(key)  # an answer, whatever it says: the endpoint is reachable
        outcomes = self._classify(response, jobs)
        limited = response.status == 429 or any(
            isinstance(o, RetryLater) and o.error_code in RATE_LIMIT_CODES for o in outcomes)
        if limited:
            self._rates.rate_limited(key)
        elif all(isinstance(o, Delivered) for o in outcomes):
            self._rates.succeeded(key)
        return outcomes

    def _settle_late(self, task: asyncio.Task[HttpResponse], integration: Integration, jobs: list[ForwardJob]) -> None:
        """A parked request finished. Its jobs wait on the retry topic; a delivery is written to the
        ledger now, so the parked copies are audited from it instead of being sent again."""
        self._late.discard(task)
        key = integration.app_id
        self._late_by_app[key] -= 1
        if self._late_by_app[key] <= 0:
            del self._late_by_app[key]
        try:
            response = task.result()
        except TransportError:
            self._breaker.failed(key)
            return
        except BaseException:  # cancelled at shutdown, or a bug: the parked copies will tell
            return
        outcomes = self._answered(key, response, jobs)
        delivered = [job for job, outcome in zip(jobs, outcomes, strict=True) if isinstance(outcome, Delivered)]
        if delivered:
            self._http.loop.run_in_executor(None, self._record_late_deliveries, delivered)

    def _record_late_deliveries(self, jobs: list[ForwardJob]) -> None:
        now_ms = int(time.time() * 1000)
        rows = [{"event_id": job.event_id, "network": job.network, "app_id": job.app_id,
                 "attempts": job.attempt + 1, "delivered_at_ms": now_ms} for job in jobs]
        try:
            with self._sessions.begin() as session:
                insert_ignoring_duplicates(session, Delivery, rows)
        except Exception:  # the parked copies are sent again then; the network de-duplicates them
            log.exception("could not record late deliveries", extra={"network": self._network, "jobs": len(jobs)})

    def _classify(self, response: HttpResponse, jobs: list[ForwardJob]) -> list[Outcome]:
        try:
            outcomes = self._spec.classify(response, jobs)
        except Exception as exc:  # a classifier bug must not become a crash loop
            log.exception("classifier failed", extra={"network": self._network})
            return [Permanent(f"unclassifiable {response.status} answer: {exc}")] * len(jobs)
        if len(outcomes) != len(jobs):
            return [Permanent(f"classifier returned {len(outcomes)} outcomes for {len(jobs)} jobs")] * len(jobs)
        return outcomes

    async def _access_token(self, integration: Integration) -> str | Outcome | None:
        token_request, parse_token = self._spec.token_request, self._spec.parse_token
        if token_request is None or parse_token is None:
            return None
        cached = self._tokens.get(integration.app_id)
        if cached:
            return cached
        try:
            response = await self._http.request(token_request(integration, self._token_url))
        except TransportError as exc:
            return RetryLater(f"token endpoint: {exc}")
        except (KeyError, CredentialsError) as exc:
            return Permanent(f"cannot request a token: {exc}")
        parsed = parse_token(response)
        if isinstance(parsed, tuple):
            token, lifetime = parsed
            self._tokens.put(integration.app_id, token, lifetime)
            return str(token)
        return parsed

    def _redacted(self, integration: Integration, attempts: list[Attempt]) -> list[Attempt]:
        """Reasons with the integration's credentials and tokens taken out: a transport error or a
        network's answer may echo the request's URL (Meta's token is a query parameter)."""
        secrets = secret_values(integration.credentials, self._tokens.get(integration.app_id))
        cleaned = []
        for attempt in attempts:
            outcome = attempt.outcome
            if isinstance(outcome, RetryLater | Permanent | RefreshCredentials):
                outcome = replace(outcome, reason=redact(outcome.reason, secrets))
            elif isinstance(outcome, Delivered) and outcome.detail:
                outcome = replace(outcome, detail=redact(outcome.detail, secrets))
            cleaned.append(replace(attempt, outcome=outcome))
        return cleaned

    # --- effects ------------------------------------------------------------------------------

    def _apply(self, attempts: list[Attempt]) -> list[OutRecord]:
        outputs: list[OutRecord] = []
        now_ms = int(time.time() * 1000)
        ledger: list[dict[str, object]] = []
        outcome_counts: Counter[str] = Counter()
        for attempt in attempts:
            job, outcome = attempt.job, attempt.outcome
            attempts_made = job.attempt + 1
            outcome_counts[type(outcome).__name__] += 1
            common = {"http_status": attempt.http_status, "latency_ms": attempt.latency_ms,
                      "request_hash": attempt.request_hash, "attempts": attempts_made}
            if isinstance(outcome, Delivered):
                ledger.append({"event_id": job.event_id, "network": job.network, "app_id": job.app_id,
                               "attempts": attempts_made, "delivered_at_ms": now_ms})
                outputs.append(self._audit(job, "delivered", detail=outcome.detail,
                                           audit_id=delivered_audit_id(job.event_id, job.network), **common))
                continue
            # The job as it goes on: to the retry topic or the dead-letter topic.
            job = replace(job, attempt=attempts_made, first_attempt_ms=job.first_attempt_ms or now_ms)
            if isinstance(outcome, Permanent):
                outputs.append(self._dead_letter(attempt.record, job, outcome.reason))
                outputs.append(self._audit(job, "rejected", detail=outcome.reason, error_code=outcome.error_code,
                                           **common))
            else:
                reason = outcome.reason
                after = outcome.after_seconds if isinstance(outcome, RetryLater) else None
                delay = retry_delay(job.attempt, self._delays, after)
                if delay is None:
                    outputs.append(self._dead_letter(attempt.record, job, f"retries exhausted: {reason}"))
                    outputs.append(self._audit(job, "dead_lettered", detail=reason, error_code=outcome.error_code,
                                               **common))
                else:
                    outputs.append(self._retry(attempt.record, job, reason, now_ms + int(delay * 1000)))
                    outputs.append(self._audit(job, "retrying", detail=reason, error_code=outcome.error_code,
                                               **common))
        if ledger:
            with self._sessions.begin() as session:
                insert_ignoring_duplicates(session, Delivery, ledger)
        for outcome_name, count in outcome_counts.items():
            FORWARD_OUTCOMES.labels(self._network, outcome_name).inc(count)
        return outputs

    def _retry(self, record: InRecord, job: ForwardJob, reason: str, due_ms: int) -> OutRecord:
        headers = [(k, v) for k, v in record.headers if not k.startswith("retry.")]
        headers += [
            (DUE_HEADER, str(due_ms).encode()),
            ("retry.attempt", str(job.attempt).encode()),
            ("retry.first_attempt_ms", str(job.first_attempt_ms).encode()),
            ("retry.last_error", reason[:1000].encode()),
            ("retry.source_topic", record.topic.encode()),
            ("retry.source_partition", str(record.partition).encode()),
            ("retry.source_offset", str(record.offset).encode()),
        ]
        return OutRecord(topic=f"{forward_topic(self._network)}.retry", key=record.key, headers=headers,
                         value=self._codec.encode("apprefer.ForwardJob", job.to_record()), origin=record)

    def _dead_letter(self, record: InRecord, job: ForwardJob, reason: str) -> OutRecord:
        letter = dead_letter_of(record, reason, self._service)
        letter.topic = dlq(forward_topic(self._network))  # one DLQ per network, whether from main or retry
        letter.headers = [(k, v) for k, v in letter.headers if k != DUE_HEADER]
        letter.value = self._codec.encode("apprefer.ForwardJob", job.to_record())
        return letter

    def _audit(self, job: ForwardJob, status: str, **fields: Any) -> OutRecord:
        return audit_out(self._codec, app_id=job.app_id, event_id=job.event_id, event_name=job.event_name,
                         network=job.network, status=status, **fields)
