"""Where the report files live: a local folder or an object store, through Airflow's ObjectStoragePath.

`report_dir` is a local folder (a path or `file://…`, written atomically: temp file + os.replace, as before)
or an object-store URL such as `s3://bucket/prefix` (the Amazon provider's s3 filesystem over the
`aws_default` connection, so its `extra.endpoint_url` is honoured; `s3://conn_id@bucket/prefix` names another
connection). One PUT per object is atomic there: a reader sees the old object or the new one, never half.

`build_report` writes with `put`, and hands the files' URLs (strings, never contents) through XCom; `send_report`
reads them back with `read_bytes` on whatever worker it runs, so workers need no shared folder.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from include.settings.connections import AWS_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

LOCAL_SCHEMES = ("", "file", "local")
S3_SCHEMES = ("s3", "s3a", "s3n")


def _scheme(url: str) -> str:
    return urlsplit(str(url)).scheme.lower()


def is_local(url: str) -> bool:
    return _scheme(url) in LOCAL_SCHEMES


def problem(report_dir: str | None) -> str | None:
    """What is wrong with a report_dir that can be told without a network call (None when nothing is)."""
    if not report_dir:
        return None
    parts = urlsplit(str(report_dir))
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES:
        return None
    if scheme in S3_SCHEMES:
        if not parts.netloc.rpartition("@")[2]:
            return f"param report_dir: {report_dir!r} names no bucket (write s3://bucket/prefix)"
        import importlib.util

        if importlib.util.find_spec("s3fs") is None:
            return "param report_dir: s3:// needs the s3fs package (requirements.txt), which is not installed"
        return None
    from airflow.sdk.io import has_fs

    if not has_fs(scheme):
        return (f"param report_dir: no filesystem for {scheme}:// is installed; use a local folder or "
                "s3://bucket/prefix")
    return None


def location(url: str) -> "ObjectStoragePath":
    """`url` as an ObjectStoragePath; an s3 URL without `conn_id@` uses the AWS connection (aws_default)."""
    from airflow.sdk import ObjectStoragePath

    parts = urlsplit(str(url))
    if parts.scheme.lower() in S3_SCHEMES and "@" not in parts.netloc:
        return ObjectStoragePath(str(url), conn_id=AWS_CONN_ID)
    return ObjectStoragePath(str(url))


def _local_path(url: str) -> Path:
    parts = urlsplit(str(url))
    return Path(parts.path if parts.scheme else str(url))


def join(report_dir: str, name: str) -> str:
    """The URL (or, for a local folder, the path) of file `name` in `report_dir`."""
    if is_local(report_dir):
        return str(_local_path(report_dir) / name)
    target = location(report_dir) / name
    if target.conn_id in (None, AWS_CONN_ID):  # the default connection is implied: a plain s3://bucket/key
        return f"{target.protocol}://{target.path}"
    return str(target)


def prepare(report_dir: str) -> None:
    """Create a local folder (parents too); an object store's prefix needs nothing."""
    if is_local(report_dir):
        _local_path(report_dir).mkdir(parents=True, exist_ok=True)


def put(url: str, data: bytes) -> None:
    """Write one file whole: locally a temp file in the same folder, then os.replace; elsewhere one PUT."""
    if is_local(url):
        path = _local_path(url)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    try:
        location(url).write_bytes(data)
    except (FileNotFoundError, PermissionError) as exc:
        raise type(exc)(f"report_dir: cannot write {url} (does the bucket exist, may the AWS connection "
                        f"write to it?): {exc}") from exc


def read_bytes(url: str) -> bytes:
    if is_local(url):
        return _local_path(url).read_bytes()
    return location(url).read_bytes()


def safe_name(text: str, limit: int) -> str:
    """`text` as one file-name part (run ids hold ':' and '+'): letters, digits and -_. kept, the rest '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:limit]


def name(url: str) -> str:
    """The file name at the end of a path or URL."""
    return str(url).rstrip("/").rsplit("/", 1)[-1]
