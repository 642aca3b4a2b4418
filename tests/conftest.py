"""How the suite shares one machine.

- **Own budget state.** Each pytest process gets its own directory
  for the pacing a memory budget leaves to the next process on the host
  (``TAP_DATAPLATFORMS_STATE_DIR``), so that taps of tests running side by side do not pace
  each other, and the suite writes nothing under the user's ``~/.local/state``.
- **Timing tests alone.** Tests that measure requests per rolling second or seconds at the
  sandbox (budgets at the server, shared budgets, tight limits, wait hints) are marked
  ``timing``. ``make test`` runs them first, one at a time with nothing else running, and
  then the rest in two pytest processes side by side (``scripts/pytest-side-by-side.sh``):
  many of those wait on budgets and on Meltano rather than on the CPU. The mark goes to
  every test of a file in ``TIMING_FILES`` but those marked ``untimed``
  (``@pytest.mark.untimed``): a test there that measures neither time nor rate (it checks
  records, keys, bookmarks, counts of forced faults; a fake clock at most) runs side by
  side with the rest. A test that counts requests per second, waits out a hint, holds a
  budget or compares elapsed times stays ``timing``.
- **One Meltano project.** Tests that run Meltano in the project directory share its
  ``.meltano/`` (the plugins they install, the system database): they are marked
  ``meltano`` and run one after another in one of those two processes.
"""

from __future__ import annotations

import os
import tempfile

import pytest

#: Files whose tests measure time or rate at the sandbox (or at a shared backend).
TIMING_FILES = frozenset(
    {
        "test_budget.py",
        "test_budget_at_server.py",
        "test_scale_out.py",
        "test_redivis_sandbox.py",
        "test_dexi_sandbox.py",
        "test_datalinx_sandbox.py",
        "test_reinfer_sandbox.py",
        "test_invision_sandbox.py",
        "test_sandbox_redivis.py",
        "test_sandbox_faults.py",
        "test_sandbox_bench_knobs.py",
        "test_reinfer_predictions.py",
        "test_reinfer_prefetch.py",
        "test_redivis_read_ahead.py",
    }
)

#: Files whose tests run Meltano in the project directory.
MELTANO_FILES = frozenset(
    {"test_demo.py", "test_e2e_postgres.py", "test_e2e_mirror.py", "test_orchestration.py"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timing: measures time or rate at the sandbox; run alone (make test runs these first)",
    )
    config.addinivalue_line(
        "markers",
        "untimed: in a file of TIMING_FILES, but measures neither time nor rate (not timing)",
    )
    config.addinivalue_line(
        "markers", "meltano: runs Meltano in the project directory; one at a time"
    )
    # Set in every pytest process (the two side by side inherit make's environment).
    state = tempfile.mkdtemp(prefix="tap-dataplatforms-tests-")
    os.environ["TAP_DATAPLATFORMS_STATE_DIR"] = state


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in TIMING_FILES and item.get_closest_marker("untimed") is None:
            item.add_marker(pytest.mark.timing)
        if name in MELTANO_FILES:
            item.add_marker(pytest.mark.meltano)


@pytest.fixture
def loops(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Which record loop each partition took (tests/lean_loop.py)."""
    from tests.lean_loop import count_loops

    return count_loops(monkeypatch)
