"""File paths given by users (CLI, HTTP) stay inside the configured data directory."""

from __future__ import annotations

from pathlib import Path

from monitor.errors import MonitorError, NotFound


class PathRejected(MonitorError):
    """A path the monitor will not open: outside MONITOR_DATA_DIR, empty, not a regular file (HTTP 400)."""


def confine(data_dir: str | Path, raw: str | Path) -> Path:
    """The file ``raw`` names inside ``data_dir``: relative to it, or absolute but inside it.

    Everything is resolved first (``..``, symlinks), then checked: a path that leaves the data
    directory is refused (PathRejected), a missing one is NotFound. The messages name the path as
    given, never the server's directories (the HTTP API returns them).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "a.csv"), "w").write("x")
    >>> confine(d, "a.csv").name, confine(d, "sub/../a.csv").name
    ('a.csv', 'a.csv')
    >>> confine(d, "../etc/passwd")
    Traceback (most recent call last):
    ...
    monitor.paths.PathRejected: path '../etc/passwd' is outside the data directory (MONITOR_DATA_DIR); give a path relative to it
    """
    text = str(raw) if isinstance(raw, Path) else raw
    if not isinstance(text, str) or not text.strip():
        raise PathRejected("path is empty: give a file inside the data directory (MONITOR_DATA_DIR)")
    if "\x00" in text:
        raise PathRejected("path contains a NUL byte")
    root = Path(data_dir).resolve()
    given = Path(text)
    try:
        resolved = (given if given.is_absolute() else root / given).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise PathRejected(f"path {text!r} cannot be resolved: {exc}") from None
    if not resolved.is_relative_to(root):
        raise PathRejected(f"path {text!r} is outside the data directory (MONITOR_DATA_DIR); give a path relative to it")
    if not resolved.exists():
        raise NotFound(f"file not found: {text!r} in the data directory (MONITOR_DATA_DIR)")
    if not resolved.is_file():
        raise PathRejected(f"path {text!r} is not a regular file")
    return resolved
