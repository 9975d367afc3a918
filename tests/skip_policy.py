"""The one rule about skipped tests, as pytest hooks (tests/conftest.py imports them).

A test may skip only because the real data beside the checkout (``../shared/data``) is absent: that
data is for development and is not shipped. Every other skip (a missing tool, a missing package) is a
gap in the environment. ``make test`` reports such skips with their reasons (``-ra``) and a line that
CI would fail on them; with ``FINPULSE_STRICT_SKIPS=1`` (what ``.ci/run`` sets) they fail the run.
"""

from __future__ import annotations

import os

import pytest

STRICT_ENV = "FINPULSE_STRICT_SKIPS"
SHARED_DATA_SKIP = "shared data absent:"  # the prefix of the only allowed skip reason


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def allowed(reason: str) -> bool:
    return reason.startswith(SHARED_DATA_SKIP)


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """The reason of a skip report ("Skipped: " stripped); None when the report is not a skip."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


class SkipPolicy:
    """Collects the skips the rule does not allow; fails the session on them in strict mode."""

    def __init__(self) -> None:
        self.bad: list[tuple[str, str]] = []

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        reason = skip_reason(report)
        if reason is not None and not allowed(reason):
            self.bad.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if strict() and self.bad and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.bad:
            return
        verdict = "fail this run" if strict() else f"would fail CI ({STRICT_ENV}=1, as .ci/run sets)"
        terminalreporter.section(f"skips that {verdict}: only '{SHARED_DATA_SKIP} ...' may skip")
        for nodeid, reason in self.bad:
            terminalreporter.line(f"SKIP NOT ALLOWED {nodeid}: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipPolicy(), "finpulse-skip-policy")
