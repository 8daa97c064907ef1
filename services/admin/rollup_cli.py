"""`apprefer db rollup`: one round of the report's roller (shared/reports/roller.py), with progress."""

from __future__ import annotations

import sys

import orjson
from rich.console import Console
from rich.progress import Progress

from shared.db.session import make_engine
from shared.reports.roller import RollSettings, roll_due
from shared.settings import Settings


def run_rollup(settings: Settings, app_ids: list[str] | None, as_json: bool) -> int:
    console = Console(stderr=True)
    engine = make_engine(settings.effective_database_url)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("rolling up report days", total=None)

            def advance(app_id: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=f"rolling up {app_id}")

            result = roll_due(engine, RollSettings.from_settings(settings), app_ids=app_ids, progress=advance)
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(orjson.dumps({"app_days": result.app_days, "rows": result.rows,
                                       "busy_apps": result.busy_apps, "failed_apps": result.failed_apps}
                                      ).decode() + "\n")
        return 1 if result.failed_apps else 0
    console.print(f"rolled up {result.app_days} app-days ({result.rows} rollup rows)"
                  + (f"; busy, left to the roller already at them: {', '.join(result.busy_apps)}"
                     if result.busy_apps else ""))
    if result.failed_apps:
        console.print(f"failed (logged; their days are read from the raw rows): {', '.join(result.failed_apps)}")
        return 1
    return 0
