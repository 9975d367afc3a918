"""The head's cloud-init never formats a data volume that holds anything: the format guard it installs
is rendered through `terraform console` and run here on disk images (blank, ext4, swap, partitioned,
missing), and the mount script formats only through it and mounts with nofail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.terraform import head_vars, needs_terraform, render

SYSTEM = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # where the guard finds blkid, wipefs and mkfs.ext4
GUARD = "/usr/local/sbin/finpulse-format-if-blank"
MOUNT = "/usr/local/sbin/finpulse-mount-data"
pytestmark = needs_terraform


@pytest.fixture(scope="module")
def head_files(tmp_path_factory) -> dict[str, str]:
    text = render("head.yaml.tftpl", head_vars(), tmp_path_factory.mktemp("render"))
    return {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}


def tool(name: str) -> str:
    """util-linux and e2fsprogs are on every Debian and Ubuntu: a missing one fails, it does not skip."""
    path = shutil.which(name, path=SYSTEM["PATH"])
    assert path, f"{name} is missing (util-linux / e2fsprogs)"
    return path


@pytest.fixture()
def guard(head_files, tmp_path) -> Path:
    for name in ("blkid", "wipefs", "mkfs.ext4"):
        tool(name)
    path = tmp_path / "format-if-blank"
    path.write_text(head_files[GUARD])
    path.chmod(0o755)
    return path


def image(tmp_path: Path, name: str, size_mb: int = 16) -> Path:
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(size_mb << 20)
    return path


def probe(path: Path, tag: str) -> str:
    r = subprocess.run([tool("blkid"), "-p", "-o", "value", "-s", tag, str(path)], capture_output=True, text=True)
    return r.stdout.strip()


def run_guard(guard: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(guard), str(target)], capture_output=True, text=True, timeout=60, env=SYSTEM)


def test_blank_volume_is_formatted_once_and_then_kept(guard, tmp_path):
    disk = image(tmp_path, "blank.img")
    first = run_guard(guard, disk)
    assert first.returncode == 0, first.stderr
    uuid = probe(disk, "UUID")
    assert probe(disk, "TYPE") == "ext4" and probe(disk, "LABEL") == "finpulse-data" and uuid
    again = run_guard(guard, disk)  # a rebuilt head runs the same script on the same volume
    assert again.returncode == 0 and "keeping it" in again.stdout
    assert probe(disk, "UUID") == uuid  # not reformatted


@pytest.mark.parametrize("kind", ["swap", "dos-partition-table"])
def test_volume_with_any_signature_is_never_formatted(kind, guard, tmp_path):
    disk = image(tmp_path, f"{kind}.img")
    if kind == "swap":
        subprocess.run([tool("mkswap"), str(disk)], check=True, capture_output=True)
    else:  # an MBR with one Linux partition, as `fdisk` would leave it
        with disk.open("r+b") as f:
            f.seek(446)
            f.write(bytes([0, 0, 2, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (20000).to_bytes(4, "little"))
            f.seek(510)
            f.write(b"\x55\xaa")
    before = disk.read_bytes()
    r = run_guard(guard, disk)
    assert r.returncode == 0 and "keeping it" in r.stdout, r.stdout + r.stderr
    assert disk.read_bytes() == before


def test_missing_volume_is_refused(guard, tmp_path):
    r = run_guard(guard, tmp_path / "absent.img")  # blkid says 2 ("nothing found") for a missing file too
    assert r.returncode != 0 and "not formatting" in r.stderr
    assert not (tmp_path / "absent.img").exists()


def test_mount_script_formats_only_through_the_guard(head_files):
    mount = head_files[MOUNT]
    assert "mkfs" not in mount and f"{GUARD} \"$dev\"" in mount
    assert mount.index(GUARD) < mount.index('mount "$mnt"')
    assert "nofail" in mount and "UUID=$uuid $mnt ext4" in mount  # fstab by filesystem UUID, boot goes on without it
    assert "serial='vol-serial-for-tests'" in mount and "/dev/disk/by-id/virtio-" in mount
    for folder in ("minio", "postgres", "nats"):
        assert f'mkdir -p "$mnt/{folder}"' in mount
    assert "After=mnt-finpulse.mount" in head_files["/etc/systemd/system/k3s.service.d/10-finpulse-data.conf"]
    all_text = "\n".join(head_files.values())
    assert all_text.count("mkfs") == 1  # the guard's, and no other
