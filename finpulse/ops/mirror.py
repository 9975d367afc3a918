"""The object mirror: every object of the live buckets copied to the backup target, incrementally.

An object whose size and ETag match the copy already there is skipped. A copy's ETag may differ from its
source's (a multipart upload's ETag depends on the part size, and the two endpoints may chunk
differently), so each copy records the source's ETag in its metadata and that counts as a match too.
Nothing is deleted at the target unless asked (``delete=True``): a mirror that followed an accidental
delete would lose the backup with the original. The same function restores (target to live).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finpulse.ops.stores import BackupSettings, Store

SOURCE_ETAG = "finpulse-source-etag"  # metadata key a copy carries (S3 lowercases it)


@dataclass(frozen=True)
class Location:
    """A bucket and a folder in it on one endpoint."""

    store: Store
    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.store.endpoint}/{self.bucket}/{self.prefix}"


@dataclass
class MirrorResult:
    copied: list[str] = field(default_factory=list)  # keys relative to the prefixes
    skipped: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def list_objects(loc: Location) -> dict[str, dict[str, Any]]:
    """Relative key -> {size, etag} of every object under the location."""
    found: dict[str, dict[str, Any]] = {}
    with loc.store.reaching(f"listing {loc.bucket}/{loc.prefix}"):
        pages = loc.store.client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.prefix)
        for page in pages:
            for o in page.get("Contents", []):
                found[o["Key"][len(loc.prefix):]] = {"size": o["Size"], "etag": o["ETag"].strip('"')}
    return found


def _source_etag(loc: Location, rel: str) -> str | None:
    with loc.store.reaching(f"reading {loc.bucket}/{loc.prefix}{rel}"):
        head = loc.store.client.head_object(Bucket=loc.bucket, Key=loc.prefix + rel)
    return head.get("Metadata", {}).get(SOURCE_ETAG)


def is_current(src: Location, dst: Location, rel: str, s: dict, d: dict | None) -> bool:
    """Whether the copy at ``dst`` is the source object: same size and ETag, or a copy made from it
    (either side's recorded source ETag); the HEAD requests happen only when sizes match and ETags don't."""
    if d is None or d["size"] != s["size"]:
        return False
    if d["etag"] == s["etag"]:
        return True
    return _source_etag(dst, rel) == s["etag"] or _source_etag(src, rel) == d["etag"]


def copy_object(src: Location, dst: Location, rel: str, etag: str, transfer: Any = None) -> None:
    """Stream one object from source to target (no local copy), recording the source's ETag."""
    with src.store.reaching(f"reading {src.bucket}/{src.prefix}{rel}"):
        obj = src.store.client.get_object(Bucket=src.bucket, Key=src.prefix + rel)
    extra = {"Metadata": {SOURCE_ETAG: etag}, "ContentType": obj.get("ContentType", "binary/octet-stream")}
    with dst.store.reaching(f"writing {dst.bucket}/{dst.prefix}{rel}"), obj["Body"] as body:
        dst.store.client.upload_fileobj(body, dst.bucket, dst.prefix + rel, ExtraArgs=extra, Config=transfer)


def mirror(src: Location, dst: Location, *, delete: bool = False, transfer: Any = None) -> MirrorResult:
    """Make ``dst`` hold every object of ``src``: copy what is missing or different, skip the rest;
    with ``delete``, remove what ``src`` no longer has. ``transfer``: a boto3 TransferConfig."""
    result = MirrorResult()
    source, target = list_objects(src), list_objects(dst)
    for rel, s in sorted(source.items()):
        if is_current(src, dst, rel, s, target.get(rel)):
            result.skipped += 1
            continue
        copy_object(src, dst, rel, s["etag"], transfer)
        result.copied.append(rel)
        result.bytes_copied += s["size"]
    if delete:
        result.deleted = sorted(set(target) - set(source))
        with dst.store.reaching(f"deleting {len(result.deleted)} objects"):
            for i in range(0, len(result.deleted), 1000):
                batch = [{"Key": dst.prefix + k} for k in result.deleted[i:i + 1000]]
                dst.store.client.delete_objects(Bucket=dst.bucket, Delete={"Objects": batch, "Quiet": True})
    return result


def backup_location(backup: BackupSettings, target: Store, bucket: str) -> Location:
    """Where a live bucket's mirror lives at the target: ``<prefix>/objects/<bucket>/``."""
    return Location(target, backup.bucket, f"{backup.prefix.strip('/')}/objects/{bucket}/")


def mirror_buckets(live: Store, target: Store, backup: BackupSettings, buckets: list[str], *,
                   restore: bool = False, delete: bool = False, transfer: Any = None) -> dict[str, MirrorResult]:
    """Mirror each live bucket to the target (or, ``restore``, each mirror back into its live bucket)."""
    results = {}
    for bucket in buckets:
        pair = (Location(live, bucket), backup_location(backup, target, bucket))
        src, dst = pair[::-1] if restore else pair
        results[bucket] = mirror(src, dst, delete=delete, transfer=transfer)
    return results
