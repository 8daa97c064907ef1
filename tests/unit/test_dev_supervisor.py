"""`apprefer dev`'s restart policy: a child that keeps exiting is given up on, one that exits now and
then is restarted."""

from __future__ import annotations

from services.dev_supervisor import CRASH_WINDOW_SECONDS, CRASHES_ALLOWED, Child


def test_a_child_that_keeps_exiting_is_given_up_on() -> None:
    child = Child("gateway", ["true"], {})
    for n in range(CRASHES_ALLOWED - 1):
        assert child.note_exit(100.0 + n) is True
    assert child.note_exit(100.0 + CRASHES_ALLOWED) is False and child.given_up


def test_exits_far_apart_are_restarted_for_ever() -> None:
    child = Child("audit", ["true"], {})
    for n in range(3 * CRASHES_ALLOWED):
        assert child.note_exit(n * (CRASH_WINDOW_SECONDS / (CRASHES_ALLOWED - 1) + 1)) is True
    assert not child.given_up


def test_a_child_s_last_lines_are_kept_for_the_message(tmp_path: object) -> None:
    import sys
    import time

    child = Child("noisy", [sys.executable, "-c", "import sys\nfor i in range(50): print('line', i)\nsys.exit(3)"], {})
    child.start()
    deadline = time.monotonic() + 10
    while child.exited() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.wait(time.monotonic() + 5)
    assert child.exited() == 3
    assert list(child.last_lines)[-1] == "line 49" and len(child.last_lines) == 20
