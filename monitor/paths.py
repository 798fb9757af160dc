"""File paths given by users (CLI, HTTP) stay inside the configured data directory."""

from __future__ import annotations

from pathlib import Path

from monitor.errors import MonitorError, NotFound


class PathOutsideDataDir(MonitorError):
    """A path that resolves outside MONITOR_DATA_DIR."""


def confine(path: str | Path, data_dir: str | Path) -> Path:
    """The resolved path, if it lies inside ``data_dir`` (links followed); else a clear error.

    A relative path is taken relative to ``data_dir``.

    >>> import tempfile, os
    >>> root = tempfile.mkdtemp(); _ = open(os.path.join(root, "a.csv"), "w").close()
    >>> confine("a.csv", root).name
    'a.csv'
    >>> confine("../etc/passwd", root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    monitor.paths.PathOutsideDataDir: ../etc/passwd is outside the data directory ...; move the file there or set MONITOR_DATA_DIR
    """
    root = Path(data_dir).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise PathOutsideDataDir(f"{path} is outside the data directory {root}; move the file there "
                                 f"or set MONITOR_DATA_DIR")
    if not resolved.exists():
        raise NotFound(f"file not found: {path} (looked for {resolved})")
    return resolved
