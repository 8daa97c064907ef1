"""Replays the dashboard started, run in the background so that the page can show their progress: the Dead letters
page posts the replay, gets a job back at once, and asks for it every half second (htmx) until it is done.

A job lives in the admin service process that runs it (the replay itself runs there, through the dead-letter
desk): the page asks the replica that answered the post, as a browser keeps its connection; another replica
answers 404 for a job it does not know. Finished jobs are kept for JOB_KEEP_SECONDS, at most MAX_JOBS of them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.kafka.dlq import ReplayPlan

log = logging.getLogger(__name__)

JOB_KEEP_SECONDS = 600.0
MAX_JOBS = 100


@dataclass
class ReplayJob:
    job_id: str
    selected: int  # the positions ticked
    to_publish: int | None = None  # known once planned: the selected found, less those already replayed
    published: int = 0
    outcome: dict[str, Any] | None = None  # the page's result, once done
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # Called from the replay's thread.
    def planned(self, plan: ReplayPlan) -> None:
        with self._lock:
            self.to_publish = len(plan.letters)

    def advance(self, batch: int) -> None:
        with self._lock:
            self.published += batch

    @property
    def done(self) -> bool:
        return self.outcome is not None


class ReplayJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, ReplayJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, selected: int, run: Callable[[ReplayJob], Awaitable[dict[str, Any]]]) -> ReplayJob:
        """A job running `run(job)` (which returns the outcome; it may not raise: an unexpected error becomes the
        outcome's error)."""
        self._forget_old()
        job = ReplayJob(secrets.token_urlsafe(12), selected)
        self._jobs[job.job_id] = job

        async def running() -> None:
            try:
                outcome = await run(job)
            except Exception as exc:  # logged; the page shows that it failed, not a hung progress bar
                log.exception("dashboard replay failed", extra={"job": job.job_id})
                outcome = {"dry_run": False, "error": f"replay failed: {type(exc).__name__}", "positions": []}
            job.outcome, job.finished_at = outcome, time.monotonic()

        task = asyncio.create_task(running(), name=f"replay-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str) -> ReplayJob | None:
        return self._jobs.get(job_id)

    async def close(self) -> None:
        """At shutdown: a replay under way finishes (its batches are recorded as they are acknowledged)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job.finished_at is not None and now - job.finished_at > JOB_KEEP_SECONDS:
                del self._jobs[job_id]
        while len(self._jobs) >= MAX_JOBS:
            oldest = next((job_id for job_id, job in self._jobs.items() if job.done), None)
            if oldest is None:
                break  # all running: the desk runs one at a time anyway, the others end as ReplayRunning
            del self._jobs[oldest]
