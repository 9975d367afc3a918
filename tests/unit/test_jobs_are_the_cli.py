"""One command surface: every `jobs/x.py` (what `ray job submit` and the RayJobs run) is a CLI command,
with exactly the CLI command's options, so a cluster run and a laptop run take the same path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = sorted((REPO / "jobs").glob("*.py"))
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def options(args: list[str]) -> set[str]:
    out = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, timeout=60,
                         cwd=REPO, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "TERM": "dumb"})
    assert out.returncode == 0, out.stderr
    return set(OPTION.findall(out.stdout))


def command_of(job: Path) -> str:
    found = re.search(r'run_job\("([a-z-]+)"\)', job.read_text())
    assert found, f"{job.name} does not call finpulse.cli.run_job"
    return found.group(1)


@pytest.mark.parametrize("job", JOBS, ids=[j.stem for j in JOBS])
def test_job_options_equal_the_cli_commands(job: Path) -> None:
    cmd = command_of(job)
    job_opts = options([str(job)])
    cli_opts = options(["-m", "finpulse.cli", cmd])
    assert len(job_opts) > 1
    assert job_opts == cli_opts


def test_jobs_are_a_few_lines_and_use_no_argparse() -> None:
    assert JOBS
    for job in JOBS:
        text = job.read_text()
        assert "argparse" not in text
        code = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(('"""', "`", "#"))]
        assert len(code) <= 6, job.name
