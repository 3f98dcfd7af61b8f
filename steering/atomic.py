"""Files that readers see whole or not at all, and the leftovers of writers that were killed (no Streamlit).

A writer writes under a temporary name in the same folder, `.<name>.<tag>.tmp`, and renames it over the final name
with `os.replace`. On Linux (and any POSIX system) rename(2) within one filesystem is atomic: a reader that opens
the final name gets the old file or the new one, never a mix and never a prefix. The tag, `<host>-<pid>-<random>`,
names the writer: a writer killed before its rename leaves its temporary behind, and `writer_gone` tells when it
may be removed (its process is no longer running on this machine, or it is older than STALE_SECONDS, which covers
a writer on another machine sharing the folder; writing a file takes seconds, not minutes).
Nothing here calls fsync: after a power cut a file may be torn, and the readers of this project find that out by
its sha256 and compute it again, which is the promise they make (never a wrong value; sometimes a recompute)."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path

STALE_SECONDS = 600.0
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
# ".<stem>.<host>-<pid>-<random>" with an optional ".tmp": every name this module hands out
_TAGGED = re.compile(r"^\.(?P<stem>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}(?:\.tmp)?$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tag() -> str:
    """This writer's `<host>-<pid>-<random>`: unique per call, and it says which process wrote a name."""
    return f"{HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def tagged(path: Path, suffix: str = "") -> Path:
    """A fresh hidden name beside `path` that `stem_of` and `writer_gone` understand."""
    return path.with_name(f".{path.name}.{tag()}{suffix}")


def stem_of(name: str) -> str | None:
    """The final name a tagged name was made for (None when `name` is not one)."""
    match = _TAGGED.match(name)
    return match["stem"] if match else None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` by `data` in one step: readers see the old content or the new one."""
    tmp = tagged(path, ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writer_gone(path: Path) -> bool:
    """Whether the tagged `path` was left by a writer that no longer writes: its process has ended on this machine,
    or the name is older than STALE_SECONDS. False for a name this module did not make."""
    match = _TAGGED.match(path.name)
    if match is None:
        return False
    if match["host"] == HOST and not pid_alive(int(match["pid"])):
        return True
    return older_than(path, STALE_SECONDS)


def older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > seconds
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove(path: Path) -> None:
    """Remove a file, a link (not what it names) or a folder tree; nothing when it is already gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # a leftover that cannot be removed must not fail a save or a read; the next sweep tries again
        pass
