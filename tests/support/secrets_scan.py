"""The secrets check of ``make test``: detect-secrets over every file git tracks, against ``.secrets.baseline``.

A finding fails the check unless the baseline holds it (audited, ``is_secret: false``) or its line says
``# pragma: allowlist secret - <why>``. The plugins and filters are the baseline's, so the check, the
baseline and ``detect-secrets scan --baseline .secrets.baseline`` agree on what counts. Files are
scanned in fresh (spawned) processes, one chunk per core: the vendored CRD schemas and the shipped
corpora make up most of the bytes, and a fork of a pytest process that imported torch or Ray is not safe.

Run it directly with ``python -m tests.support.secrets_scan`` (``make lint`` does).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BASELINE = ".secrets.baseline"


class NotAGitCheckout(RuntimeError):
    """The scan covers what git tracks: without git there is no list of files to trust."""


def tracked_files(root: Path) -> list[str]:
    """``git ls-files`` below ``root`` (relative paths); raises :class:`NotAGitCheckout` outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,  # noqa: S607 - git from PATH, fixed argv
                              check=True).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip())
        if top.resolve() != root.resolve():
            raise NotAGitCheckout(f"{root} is not a git checkout's top (that is {top})")
        listed = git("ls-files", "-z")
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = str(getattr(exc, "stderr", "") or exc).strip()
        raise NotAGitCheckout(f"{root} is not a git checkout ({detail}); the secrets scan covers every file "
                              "git tracks, so it needs one: run it in a clone") from exc
    return [f for f in listed.split("\0") if f and (root / f).is_file()]


def _scan_chunk(root: str, files: list[str], settings: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    """(file, line, type, hashed secret) of every finding in ``files``, under the baseline's settings."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import configure_settings_from_baseline

    configure_settings_from_baseline(settings)
    return [(f, s.line_number, s.type, s.secret_hash) for f in files for s in scan_file(os.path.join(root, f))]


def _chunks(root: Path, files: list[str], n: int) -> list[list[str]]:
    """``files`` in ``n`` chunks of about equal bytes (largest first, each to the lightest chunk)."""
    chunks: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for f in sorted(files, key=lambda f: -(root / f).stat().st_size):
        i = loads.index(min(loads))
        chunks[i].append(f)
        loads[i] += (root / f).stat().st_size
    return [c for c in chunks if c]


def unbaselined_secrets(root: Path = REPO, baseline: Path | None = None, workers: int | None = None) -> list[str]:
    """``file:line: type`` of each finding in ``root``'s tracked files that ``baseline`` does not hold."""
    from detect_secrets.core import baseline as ds_baseline

    baseline_path = baseline or root / BASELINE
    loaded = ds_baseline.load_from_file(str(baseline_path))
    known = {(f, e["type"], e["hashed_secret"]) for f, entries in loaded["results"].items() for e in entries}
    settings = {"plugins_used": loaded["plugins_used"], "filters_used": loaded["filters_used"]}
    files = [f for f in tracked_files(root) if (root / f).resolve() != baseline_path.resolve()]
    chunks = _chunks(root, files, workers or min(8, os.cpu_count() or 1))
    with ProcessPoolExecutor(len(chunks), mp_context=mp.get_context("spawn")) as pool:
        found = [hit for part in pool.map(_scan_chunk, [str(root)] * len(chunks), chunks, [settings] * len(chunks))
                 for hit in part]
    return sorted(f"{f}:{line}: {kind}" for f, line, kind, hashed in found if (f, kind, hashed) not in known)


def unaudited_entries(baseline: Path = REPO / BASELINE) -> list[str]:
    """Baseline entries not marked ``is_secret: false`` by ``detect-secrets audit`` (or marked real)."""
    import json

    results = json.loads(baseline.read_text())["results"]
    return [f"{f}:{e['line_number']}: {e['type']} (is_secret={e.get('is_secret')})"
            for f, entries in results.items() for e in entries if e.get("is_secret") is not False]


def main() -> int:
    try:
        problems = unbaselined_secrets() + [f"unaudited: {e}" for e in unaudited_entries()]
    except NotAGitCheckout as exc:
        print(exc, file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} finding(s) outside {BASELINE}; see README (Security checks)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
