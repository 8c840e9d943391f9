"""The multi-process tests' launcher must turn a hang into a failure, not block CI."""

from __future__ import annotations

import pytest
from launch import run_script


def test_a_hanging_process_is_killed_and_reported() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 1s[\s\S]*rc=-9"):
        run_script(["-c", "print('started', flush=True); import time; time.sleep(60)"], timeout=1)


def test_a_failing_process_is_reported_with_its_output() -> None:
    with pytest.raises(AssertionError, match=r"rc=3[\s\S]*boom"):
        run_script(["-c", "import sys; print('boom'); sys.exit(3)"])
