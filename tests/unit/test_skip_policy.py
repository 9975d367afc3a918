"""The skip rule (tests/skip_policy.py) run inside a real inner pytest session: under
FINPULSE_STRICT_SKIPS=1 a skip for any reason but absent shared data fails the run and says why;
without it the run passes and says CI would fail; `.ci/run` turns the rule on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import skip_policy

REPO = Path(__file__).resolve().parents[2]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(Path(skip_policy.__file__).parent)!r})
from skip_policy import pytest_configure  # noqa: F401
"""

ALLOWED = f"""
import pytest

@pytest.fixture
def shared():
    pytest.skip("{skip_policy.SHARED_DATA_SKIP} /nowhere/shared/data (development data, not shipped)")

def test_needs_data(shared):
    pass

def test_passes():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    raise AssertionError
"""

NOT_ALLOWED = """
import pytest

@pytest.mark.skipif(True, reason="promtool not on PATH")
def test_marker():
    pass

def test_call():
    pytest.skip("prometheus not on PATH")
"""

MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_module_finpulse", reason="optional parser not installed")

def test_never():
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv(skip_policy.STRICT_ENV, raising=False)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_strict_run_fails_on_a_skip_that_is_not_shared_data(inner: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    inner.makepyfile(test_allowed=ALLOWED, test_not_allowed=NOT_ALLOWED, test_module_skip=MODULE_SKIP)
    monkeypatch.setenv(skip_policy.STRICT_ENV, "1")
    result = inner.runpytest("-ra")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    out = result.stdout.str()
    for reason in ("promtool not on PATH", "prometheus not on PATH", "optional parser not installed"):
        assert f": {reason}" in out and "SKIP NOT ALLOWED" in out
    assert "SKIP NOT ALLOWED test_allowed.py" not in out  # the shared-data skip is fine


def test_strict_run_passes_when_only_shared_data_is_missing(inner: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    inner.makepyfile(test_allowed=ALLOWED)
    monkeypatch.setenv(skip_policy.STRICT_ENV, "1")
    result = inner.runpytest("-ra")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert "SKIP NOT ALLOWED" not in result.stdout.str()


def test_make_test_stays_green_and_names_what_ci_would_fail_on(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_not_allowed=NOT_ALLOWED)
    result = inner.runpytest("-ra")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*would fail CI*", "SKIP NOT ALLOWED *test_call*: prometheus not on PATH"])


def test_a_failing_run_stays_failing(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    inner.makepyfile(test_fail="def test_fail():\n    assert False\n")
    monkeypatch.setenv(skip_policy.STRICT_ENV, "1")
    assert inner.runpytest().ret == pytest.ExitCode.TESTS_FAILED


def test_ci_entrypoint_turns_the_rule_on_before_make_test() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert f"export {skip_policy.STRICT_ENV}=1" in script
    make_test = re.search(r"^make test\b", script, re.MULTILINE)
    assert make_test and script.index(f"export {skip_policy.STRICT_ENV}=1") < make_test.start()
