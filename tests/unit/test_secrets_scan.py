"""No secret in the repository outside the audited baseline, and proof that the check would see one.

The scan is ``tests/support/secrets_scan.py`` (detect-secrets 1.5.0 over ``git ls-files``); updating
the baseline is in the README (Security checks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.secrets_scan import BASELINE, REPO, NotAGitCheckout, unaudited_entries, unbaselined_secrets

# Realistic fakes, split so that no detector matches them in this file: AWS's documented example key pair
# and a private-key header. The planted test writes them, whole, into a throwaway repository.
FAKE_AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
FAKE_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"  # pragma: allowlist secret - AWS docs example
FAKE_KEY_HEADER = "-----BEGIN RSA " + "PRIVATE KEY-----"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)  # noqa: S607 - git from PATH


def test_no_secret_outside_the_baseline_in_tracked_files() -> None:
    found = unbaselined_secrets(REPO)
    assert found == [], ("possible secrets not in .secrets.baseline (remove them, or mark a placeholder "
                         "`# pragma: allowlist secret - why`, or re-baseline and audit; see README):\n"
                         + "\n".join(found))


def test_baseline_entries_are_all_audited_as_not_secret() -> None:
    assert unaudited_entries() == [], "run `detect-secrets audit .secrets.baseline` and mark each entry"


def test_baseline_excludes_no_file_from_the_scan() -> None:
    """`detect-secrets scan --exclude-files` would record a filter that the check then obeys: every
    tracked file is scanned, so a placeholder is allowlisted on its line, not its file left out."""
    filters = [f["path"] for f in json.loads((REPO / BASELINE).read_text())["filters_used"]]
    assert "detect_secrets.filters.regex.should_exclude_file" not in filters


@pytest.fixture
def planted_repo(tmp_path: Path) -> Path:
    """A throwaway repository: the real baseline, a real file that holds allowlisted placeholders,
    and a planted config with a key pair and a private key (all tracked)."""
    shutil.copy(REPO / BASELINE, tmp_path / BASELINE)
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prod.env").write_text(
        f'REGION=us-east-1\nAWS_ACCESS_KEY_ID={FAKE_AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY="{FAKE_AWS_SECRET}"\n')
    (tmp_path / "deploy" / "id_rsa").write_text(f"{FAKE_KEY_HEADER}\nMIIEow\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    return tmp_path


def test_the_scan_reports_planted_secrets_and_only_them(planted_repo: Path) -> None:
    found = unbaselined_secrets(planted_repo, workers=1)
    assert "deploy/prod.env:2: AWS Access Key" in found
    assert "deploy/prod.env:3: AWS Access Key" in found  # the secret half of the pair
    assert "deploy/id_rsa:1: Private Key" in found
    assert not [f for f in found if not f.startswith("deploy/")], found  # conftest's placeholders are allowlisted


def test_rebaselining_holds_findings_that_audit_must_then_clear(planted_repo: Path) -> None:
    """The README's update path: ``detect-secrets scan --baseline`` takes new findings in, unaudited;
    the audit test fails until each is marked ``is_secret: false``."""
    subprocess.run([sys.executable, "-m", "detect_secrets", "scan", "--baseline", BASELINE], cwd=planted_repo,
                   check=True, capture_output=True)
    assert unbaselined_secrets(planted_repo, workers=1) == []
    pending = unaudited_entries(planted_repo / BASELINE)
    assert {e.split(":")[0] for e in pending} == {"deploy/id_rsa", "deploy/prod.env"}, pending
    doc = json.loads((planted_repo / BASELINE).read_text())
    for entries in doc["results"].values():
        for entry in entries:
            entry["is_secret"] = False  # what answering "no" in `detect-secrets audit` writes
    (planted_repo / BASELINE).write_text(json.dumps(doc))
    assert unaudited_entries(planted_repo / BASELINE) == []


def test_the_scan_fails_clearly_outside_a_git_checkout(tmp_path: Path) -> None:
    shutil.copy(REPO / BASELINE, tmp_path / BASELINE)
    with pytest.raises(NotAGitCheckout, match="not a git checkout"):
        unbaselined_secrets(tmp_path)
