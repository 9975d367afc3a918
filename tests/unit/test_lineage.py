"""The ETL version id is made of input bytes, curation code and configuration (finpulse.data.lineage):
one changed byte of either gives a new id, an unchanged rerun the same id."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

import pytest

from finpulse import storage
from finpulse.data import lineage

CONFIG = {"close_hour": 16, "dedupe_window_s": 3600}


def _inputs(root: Path) -> dict[str, list[str]]:
    (root / "prices").mkdir(parents=True)
    (root / "posts").mkdir()
    (root / "prices" / "AAPL.csv").write_bytes(b"Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,1,2,0.5,1.5,1.5,10\n")
    (root / "posts" / "part-0.csv").write_bytes(b"post_id,ticker,text\n1,AAPL,great quarter\n" * 1000)
    return {"prices": [str(root / "prices" / "AAPL.csv")], "posts": [str(root / "posts" / "part-0.csv")],
            "scores": []}


def _flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20  # 'g' <-> 'G': same size, one byte different
    path.write_bytes(bytes(data))


def test_file_sha256_streams_the_whole_file(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 20_000  # several chunks
    (tmp_path / "f.bin").write_bytes(blob)
    assert storage.file_sha256(str(tmp_path / "f.bin"), chunk_size=4096) == (hashlib.sha256(blob).hexdigest(),
                                                                              len(blob))


def test_unchanged_rerun_gives_the_same_id(tmp_path: Path) -> None:
    files = _inputs(tmp_path)
    first, second = lineage.version_identity(files, CONFIG), lineage.version_identity(files, CONFIG)
    assert first["hash"] == second["hash"] and len(first["hash"]) == 12
    assert first["inputs"]["posts"][0]["sha256"] == hashlib.sha256(Path(files["posts"][0]).read_bytes()).hexdigest()
    assert first["bytes_hashed"] == sum(Path(u).stat().st_size for us in files.values() for u in us)


def test_one_changed_input_byte_gives_a_new_id(tmp_path: Path) -> None:
    files = _inputs(tmp_path)
    before = lineage.version_identity(files, CONFIG)
    post = Path(files["posts"][0])
    size = post.stat().st_size
    _flip_one_byte(post, post.read_bytes().index(b"great", 30_000))
    after = lineage.version_identity(files, CONFIG)
    assert post.stat().st_size == size  # the file size alone (the old fingerprint) would not have noticed
    assert after["hash"] != before["hash"]
    assert after["inputs"]["prices"] == before["inputs"]["prices"]


def test_configuration_is_in_the_id(tmp_path: Path) -> None:
    files = _inputs(tmp_path)
    assert lineage.version_identity(files, CONFIG)["hash"] != \
        lineage.version_identity(files, {**CONFIG, "close_hour": 15})["hash"]


def test_one_changed_byte_of_curation_code_gives_a_new_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a copy of the real curation module, importable by name, stands in as one of the code modules
    pkg = tmp_path / "code"
    pkg.mkdir()
    module = pkg / "fp_curate_copy.py"
    module.write_bytes(lineage.module_source("finpulse.data.curate"))
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(lineage, "CODE_MODULES", (*lineage.CODE_MODULES, "fp_curate_copy"))
    files = _inputs(tmp_path / "in")
    before = lineage.version_identity(files, CONFIG)
    assert "fp_curate_copy" in before["code"]["modules"]
    assert lineage.version_identity(files, CONFIG)["hash"] == before["hash"]
    _flip_one_byte(module, module.read_bytes().index(b"def ") + 1)  # 'def' -> 'dEf'
    assert lineage.version_identity(files, CONFIG)["hash"] != before["hash"]


def _finpulse_imports(name: str) -> set[str]:
    """FinPulse modules that module ``name`` imports anywhere in its source (function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(lineage.module_source(name))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("finpulse")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("finpulse"):
            subs = {f"{node.module}.{a.name}" for a in node.names}
            subs = {s for s in subs if importlib.util.find_spec(s.rsplit(".", 1)[0]).submodule_search_locations
                    and importlib.util.find_spec(s) is not None}
            found |= subs or {node.module}
    return found


def test_code_modules_cover_everything_the_etl_imports() -> None:
    seen, todo = set(), ["finpulse.data.etl"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_finpulse_imports(name) - lineage.NOT_OUTPUT_CODE)
    assert {"finpulse.data.curate", "finpulse.data.vader", "finpulse.storage"} <= seen  # the walk works
    assert seen <= set(lineage.CODE_MODULES), f"modules the ETL imports but the id ignores: {seen - set(lineage.CODE_MODULES)}"
