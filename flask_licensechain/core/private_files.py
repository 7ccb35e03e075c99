"""Files and folders that hold secrets: readable by their owner only.

The SQLite store holds license keys and customer e-mail addresses, the key file seals the
signing keys. Whatever the process umask, a file created here is mode 0600 and every folder
created here is 0700 (a umask can only remove more bits). SQLite gives the ``-wal``, ``-shm``
and ``-journal`` files it makes the mode of the database file, so creating that file here
covers them. Files and folders that already exist keep their mode: changing an operator's
choice silently is not ours to do, so a secret file readable by others draws a warning instead.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("licensechain.files")

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent folder, each mode 0700. Existing ones are kept.

    Raises ``OSError`` when a folder cannot be created (another process creating the same
    folder at the same time is not an error).
    """
    missing: list[Path] = []
    current = path.absolute()
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists. Its folder must exist.

    Returns ``True`` when this call created it. An existing file is left as it is, and logged
    at WARNING when other users may read it. Raises ``OSError`` when it cannot be created
    (``FileNotFoundError`` for a missing folder).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        warn_if_shared(path)
        return False
    os.close(fd)
    return True


def warn_if_shared(path: Path) -> bool:
    """Log a WARNING and return ``True`` when users other than the owner may access ``path``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is accessible to other users (mode %o); chmod 600 it", path, mode & 0o777)
        return True
    return False


__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "create_private_file",
    "make_private_dirs",
    "warn_if_shared",
]
