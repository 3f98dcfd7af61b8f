"""The result store: study results on disk, found again by one key, read back only whole and verified.

    stored = run_cached(STUDY, pair, config)             # found again by its key, or computed and stored
    stored.result, stored.manifest["created_at"]

    <root>/<study>/<key>                 a symbolic link naming the current version of the entry, ".<key>.<tag>"
    <root>/<study>/.<key>.<tag>/         one save: manifest.json and the files it lists (analyses/store_entry.py)

The key is `result_key`: both models' fingerprints, the study's name and version, its config and its data's hash.

Why a link to a version folder: a save writes a new folder under a fresh name (tag = host, pid, random), and only
when it is complete renames a new link over `<key>` (os.replace of a link is atomic on Linux; a folder cannot be
renamed over a non-empty folder). A version folder is never changed once written, and a reader resolves the link
once and reads every file from that one folder, so it never mixes two saves. A save then removes the version it
replaced; a reader still in it finds files gone, and reads again through the link, which now names the new one.
Two saves of one key at once both succeed and the later rename wins; nothing is locked. What killed saves leave
(a version folder never linked, a temporary link, an older store's `<key>.tmp<pid>` and `<key>.old`) is removed by
the next save or read of that study once its process has ended or it is older than ten minutes (steering/atomic.py).

Any entry that is not whole, verified and this key's raises StoredResultError; `run_cached` reports it in one line
and computes the result again. No stored file is ever executed as code."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from steering.atomic import STALE_SECONDS, older_than, pid_alive, remove, stem_of, tagged, writer_gone
from steering.cache import cache_root
from steering.registry import ASSETS

from .store_entry import (FORMAT, MANIFEST, TENSORS, StoredResult, StoredResultError,  # noqa: F401
                          named_directions, read_file, read_manifest, read_result, write_entry, write_result)
from .study import Progress, Study

SHIPPED_ROOT = ASSETS / "demo" / "results"  # the demo pair's default runs, one folder per study (no key level)
READ_TRIES = 3  # reads again through the link when a save replaced the entry during a read
_OLD_LEFTOVER = re.compile(r"^[0-9a-f]+\.(?:tmp(?P<pid>\d+)|old)$")  # what the store before version 2 left


def config_json(config: Any) -> dict:
    """A Config as the plain JSON the manifest holds (tuples become lists)."""
    return json.loads(json.dumps(asdict(config), default=str))


def fingerprints(pair) -> dict[str, str | None]:
    return {"base": pair.fingerprint("base"), "post": pair.fingerprint("post") if pair.post is not None else None}


def result_key(study: Study, pair, config: Any, data_hash: str) -> str:
    """The one key of a result: both models' fingerprints, the study's name and version, its config, its data."""
    raw = json.dumps([fingerprints(pair), study.name, study.version, config_json(config), data_hash], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def replace_folder(tmp: Path, folder: Path) -> None:
    """Put a fully written `tmp` in place of `folder` (shipped results: a plain folder, written by one developer
    at a time): the old one is moved aside first and removed only after."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


# ---- the store ---------------------------------------------------------------------------------------------

class ResultStore:
    """Results under <root>/<study>/<key> (root: $PLAYGROUND_CACHE/results). The page and the CLI share it."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root() / "results"

    def folder(self, study: Study, key: str) -> Path:
        """The entry's stable name (a link to its current version)."""
        return self.root / study.name / key

    def load(self, study: Study, key: str) -> StoredResult | None:
        """The stored result, None when there is none; StoredResultError when the one there cannot be used."""
        link = self.folder(study, key)
        sweep(link.parent)
        for _ in range(READ_TRIES):
            where = resolve(link)
            if where is None:
                return None
            try:
                found = read_version(where, study, key)
                return StoredResult(found.result, found.manifest, link)
            except StoredResultError as e:
                if resolve(link) == where:  # not replaced while it was read: the entry itself is bad
                    raise
                error = e
        raise error

    def entries(self, study: Study) -> list[tuple[dict, Path]]:
        """(checked manifest, version folder) of every entry of the study whose manifest is whole and its key's;
        the files are checked when read (`store_entry.read_file`)."""
        parent, out = self.root / study.name, []
        for link in sorted(parent.iterdir()) if parent.is_dir() else []:
            where = resolve(link) if not link.name.startswith(".") else None
            if where is None:
                continue
            try:
                out.append((_manifest_of(where, link.name), where))
            except StoredResultError:
                continue
        return out

    def save(self, study: Study, key: str, result: Any, manifest: dict) -> StoredResult:
        """Store `result` as the entry of `key`, atomically (see the module docstring)."""
        link = self.folder(study, key)
        link.parent.mkdir(parents=True, exist_ok=True)
        sweep(link.parent)
        version = tagged(link)
        try:
            written = write_entry(result, version, {**manifest, "key": key})
            point(link, version)
        except BaseException:
            remove(version)
            raise
        return StoredResult(result, written, link)


def resolve(link: Path) -> Path | None:
    """The folder an entry's name stands for: the version its link names, the name itself when it is a plain
    folder (an older store, or a test's hand-made entry), None when there is no entry."""
    try:
        return link.parent / os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError:  # not a link
        return link if link.exists() else None


def _manifest_of(where: Path, key: str) -> dict:
    """The checked manifest of the version `where` of entry `key`: its folder's name and its manifest both say so."""
    if where.name != key and stem_of(where.name) != key:
        raise StoredResultError(f"{where} is not a version of the entry {key}.")
    return read_manifest(where, key)


def read_version(where: Path, study: Study, key: str) -> StoredResult:
    _manifest_of(where, key)
    return read_result(where, study, key)


def point(link: Path, version: Path) -> None:
    """Make `link` name `version` in one step: a new link made under a temporary name is renamed over it; then
    the version it named before is removed (it can never be named again: every version's name is new)."""
    tmp = tagged(link, ".tmp")
    os.symlink(version.name, tmp)
    try:
        for _ in range(READ_TRIES):
            before = resolve(link)
            try:
                os.replace(tmp, link)
                break
            except IsADirectoryError:  # a plain folder is in the way: moved aside, then removed
                aside = tagged(link)
                try:
                    link.rename(aside)
                except FileNotFoundError:  # another save moved it first
                    pass
                remove(aside)
        else:
            raise StoredResultError(f"{link} could not be replaced by a link to {version.name}.")
    finally:
        remove(tmp)
    if before is not None and before != version and before != link:
        remove(before)


def sweep(parent: Path) -> None:
    """Remove from a study's folder what saves left behind (see the module docstring)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        path = parent / name
        key = stem_of(name)
        if key is not None:
            # the writer's end is checked before the link is read: a writer that ended has renamed its last link
            if writer_gone(path) and resolve(parent / key) != path:
                remove(path)
        elif (old := _OLD_LEFTOVER.match(name)) and not (parent / name).is_symlink():
            if older_than(path, STALE_SECONDS) or (old["pid"] and not pid_alive(int(old["pid"]))):
                remove(path)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return f"{os.cpu_count()}-core {cpu}" + (f", {gpu}" if gpu else "")


def project_version() -> str:
    import tomllib

    return tomllib.loads((ASSETS.parent / "pyproject.toml").read_text())["project"]["version"]


def manifest_for(study: Study, pair, config: Any, key: str, data_hash: str, seconds: float,
                 command: str | None = None) -> dict:
    return {"study": study.name, "version": study.version, "key": key, "config": config_json(config),
            "fingerprints": fingerprints(pair), "data_hash": data_hash,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or "(from the page)", "seconds": round(seconds, 1), "machine": machine(),
            "load_average": round(os.getloadavg()[0], 1),  # other work on the machine makes `seconds` an upper bound
            "project_version": project_version(), "python": sys.version.split()[0], "torch": torch.__version__}


def pair_for(study: Study, pair):
    """The pair as the study reads it: the base alone for a base_only study (its key then names the base only)."""
    if study.base_only and pair.post is not None:
        from steering.pairs import with_base_only

        return with_base_only(pair)
    return pair


def run_cached(study: Study, pair, config: Any, *, data: Any = None, progress: Progress | None = None,
               store: ResultStore | None = None, refresh: bool = False, command: str | None = None,
               notice: Callable[[str], None] = print) -> StoredResult:
    """The study's result for this pair, config and data: the stored one, or computed now and stored.

    refresh computes again and replaces what is stored (the CLI's --no-cache). A stored result that cannot be
    used is reported through `notice` in one line and replaced by the new one."""
    store, pair = store or ResultStore(), pair_for(study, pair)
    data = study.resolve_data(pair, config, data)
    data_hash = study.data_hash(data)
    key = result_key(study, pair, config, data_hash)
    if not refresh:
        try:
            found = store.load(study, key)
        except StoredResultError as e:
            notice(" ".join(f"{e} Computing it again.".split()))  # one line, whatever a parser's message held
            found = None
        if found is not None:
            return found
    start = time.perf_counter()
    result = study.run(pair, config, data=data, progress=progress)
    manifest = manifest_for(study, pair, config, key, data_hash, time.perf_counter() - start, command)
    return store.save(study, key, result, manifest)


# ---- the demo pair's shipped results -------------------------------------------------------------------------

@dataclass
class Shipped:
    """A study's shipped result and whether it is current for this pair and the default settings."""

    stored: StoredResult | None  # read only when current; None otherwise (see reason)
    manifest: dict
    reason: str | None  # why it is out of date; None when current


def shipped(study: Study, pair, root: Path = SHIPPED_ROOT) -> Shipped | None:
    """The result shipped for the demo pair in <root>/<study>/, when this pair is the one it was computed on.
    It is current when its key is the key of the default config on the built-in data for this code."""
    folder, pair = root / study.name, pair_for(study, pair)
    if not (folder / MANIFEST).exists():
        return None
    manifest = read_manifest(folder)
    if manifest.get("fingerprints") != fingerprints(pair):
        return None
    config = study.Config()
    reason = None
    if manifest.get("version") != study.version:
        reason = f"it was computed by version {manifest.get('version')} of the study; the code is {study.version}"
    elif manifest.get("config") != config_json(config):
        reason = "it was computed with other settings than the study's defaults"
    elif manifest.get("key") != result_key(study, pair, config, study.data_hash(study.resolve_data(pair, config))):
        reason = "the built-in data changed since it was computed"
    if reason is not None:  # never shown, so not read
        return Shipped(None, manifest, reason)
    try:
        return Shipped(read_result(folder, study, manifest["key"]), manifest, None)
    except StoredResultError as e:
        return Shipped(None, manifest, str(e))


def ship(study: Study, stored: StoredResult, root: Path = SHIPPED_ROOT) -> Path:
    """Copy a stored result into the shipped results (what `python -m analyses <study> --ship` does)."""
    folder = root / study.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = tagged(folder, ".tmp")
    try:
        shutil.copytree(resolve(stored.folder) or stored.folder, tmp)
        read_result(tmp, study, stored.manifest["key"])  # the copy is whole and verified before it is shipped
        replace_folder(tmp, folder)
    finally:
        remove(tmp)
    return folder
