"""Study results on disk as plain data files: tables as Parquet, tensors as safetensors, Directions as direction files,
the rest in a JSON manifest, one folder per result.

    stored = run_cached(STUDY, pair, config)             # found again by its key, or computed and stored
    stored.result, stored.manifest["created_at"]

    <root>/<study>/<key>/manifest.json        study, version, key, config, fingerprints, data hash, created_at,
                                              command, seconds, machine, and every field's kind; JSON fields inline
                         <field>.parquet      each DataFrame field
                         tensors.safetensors  tensor and array fields (a dict of them as "<field>/<key>")
                         <field>[.<key>].direction.safetensors   Direction fields (a dict of them, one file a key)

The key is `result_key`: both models' fingerprints, the study's name and version, its config and its data's hash.
A folder that cannot be read, or that another version of the study wrote, raises StoredResultError; `run_cached`
reports it in one line and computes the result again. No stored file is ever executed as code."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from steering.cache import cache_root
from steering.directions import Direction
from steering.errors import InvalidInputError, SteeringError
from steering.registry import ASSETS

from .study import Progress, Study

FORMAT = "post-training-playground result"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
SHIPPED_ROOT = ASSETS / "demo" / "results"  # the demo pair's default runs, one folder per study (no key level)


class StoredResultError(SteeringError):
    """A stored result that cannot be used: unreadable, incomplete, or written by another version of its study."""


@dataclass
class StoredResult:
    result: Any
    manifest: dict
    folder: Path


def config_json(config: Any) -> dict:
    """A Config as the plain JSON the manifest holds (tuples become lists)."""
    return json.loads(json.dumps(asdict(config), default=str))


def fingerprints(pair) -> dict[str, str | None]:
    return {"base": pair.fingerprint("base"), "post": pair.fingerprint("post") if pair.post is not None else None}


def result_key(study: Study, pair, config: Any, data_hash: str) -> str:
    """The one key of a result: both models' fingerprints, the study's name and version, its config, its data."""
    raw = json.dumps([fingerprints(pair), study.name, study.version, config_json(config), data_hash], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


# ---- one result <-> one folder -------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    if isinstance(value, pd.DataFrame):
        return "table"
    if isinstance(value, Direction):
        return "direction"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, dict) and value and all(isinstance(v, Direction) for v in value.values()):
        return "directions"
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        return "tensors"
    json.dumps(value)  # anything else must be plain JSON (TypeError names what is not)
    return "value"


def write_result(result: Any, folder: Path, manifest: dict) -> Path:
    """Write a Result dataclass into an empty `folder` (see the module docstring); returns the folder."""
    folder.mkdir(parents=True, exist_ok=False)
    kinds, values, tensors = {}, {}, {}
    for f in fields(result):
        value = getattr(result, f.name)
        kind = kinds[f.name] = _kind(value)
        if kind == "table":
            value.to_parquet(folder / f"{f.name}.parquet")
        elif kind == "direction":
            (folder / f"{f.name}.direction.safetensors").write_bytes(value.to_bytes())
        elif kind == "directions":
            for key, direction in value.items():
                (folder / f"{f.name}.{key}.direction.safetensors").write_bytes(direction.to_bytes())
        elif kind == "tensor":
            tensors[f.name] = value.detach().cpu().contiguous()
        elif kind == "array":
            tensors[f.name] = torch.from_numpy(np.ascontiguousarray(value))
        elif kind == "tensors":
            tensors.update({f"{f.name}/{k}": v.detach().cpu().contiguous() for k, v in value.items()})
        else:
            values[f.name] = value
    if tensors:
        (folder / TENSORS).write_bytes(save_tensors(tensors))
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "fields": kinds, "values": values}
    (folder / MANIFEST).write_text(json.dumps(full, indent=2, default=str) + "\n")
    return folder


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoredResultError(f"The stored result in {folder} has no {MANIFEST}.") from None
    except (OSError, ValueError) as e:
        raise StoredResultError(f"The stored result's {path} cannot be read: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoredResultError(f"{path} is not a result manifest of this project.")
    return manifest


def check_manifest(manifest: dict, study: Study, folder: Path) -> None:
    if manifest.get("study") != study.name:
        raise StoredResultError(f"{folder} holds a result of '{manifest.get('study')}', not of '{study.name}'.")
    if manifest.get("version") != study.version:
        raise StoredResultError(f"The stored {study.name} result in {folder} was made by version "
                                f"{manifest.get('version')}; the code is {study.version}.")


def read_result(folder: Path, study: Study) -> StoredResult:
    """The result stored in `folder`; StoredResultError (one sentence) if it is unreadable or of another version."""
    manifest = read_manifest(folder)
    check_manifest(manifest, study, folder)
    try:
        return StoredResult(_decode(folder, manifest, study.Result), manifest, folder)
    except StoredResultError:
        raise
    except (OSError, ValueError, TypeError, KeyError, SafetensorError, InvalidInputError) as e:
        raise StoredResultError(f"The stored {study.name} result in {folder} is incomplete or corrupt "
                                f"({type(e).__name__}: {e}).") from None


def _decode(folder: Path, manifest: dict, result_cls: type) -> Any:
    kinds, values = manifest["fields"], manifest["values"]
    expected = {f.name for f in fields(result_cls)}
    if set(kinds) != expected:
        raise StoredResultError(f"The stored result in {folder} has fields {sorted(kinds)}; this code's "
                                f"{result_cls.__qualname__} has {sorted(expected)}.")
    tensors = load_tensors((folder / TENSORS).read_bytes()) if (folder / TENSORS).exists() else {}
    out = {}
    for name, kind in kinds.items():
        if kind == "table":
            out[name] = pd.read_parquet(folder / f"{name}.parquet")
        elif kind == "direction":
            out[name] = _direction(folder / f"{name}.direction.safetensors")
        elif kind == "directions":
            files = sorted(folder.glob(f"{name}.*.direction.safetensors"))
            out[name] = {p.name[len(name) + 1:-len(".direction.safetensors")]: _direction(p) for p in files}
        elif kind == "tensor":
            out[name] = tensors[name]
        elif kind == "array":
            out[name] = tensors[name].numpy()
        elif kind == "tensors":
            prefix = f"{name}/"
            out[name] = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        elif kind == "value":
            out[name] = values[name]
        else:
            raise StoredResultError(f"Unknown field kind '{kind}' in {folder / MANIFEST}.")
    return result_cls(**out)


def _direction(path: Path) -> Direction:
    return Direction.from_bytes(path.read_bytes(), path.name)


def named_directions(study: Study, result: Any) -> list[tuple[str, Direction]]:
    """Every Direction of a result (a field, or each value of a dict field) with its file name stem,
    `<study>_<field>[_<key>]`: what the CLI writes and the page offers as downloads."""
    found = []
    for f in fields(result):
        value = getattr(result, f.name)
        entries = {"": value} if isinstance(value, Direction) else value if isinstance(value, dict) else {}
        found += [("_".join(filter(None, (study.name, f.name, str(key)))), direction)
                  for key, direction in entries.items() if isinstance(direction, Direction)]
    return found


def replace_folder(tmp: Path, folder: Path) -> None:
    """Put a fully written `tmp` in place of `folder`: the old one is moved aside first and removed only after."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


# ---- the store ---------------------------------------------------------------------------------------------

class ResultStore:
    """Results under <root>/<study>/<key>/ (root: $PLAYGROUND_CACHE/results). The page and the CLI share it."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root() / "results"

    def folder(self, study: Study, key: str) -> Path:
        return self.root / study.name / key

    def load(self, study: Study, key: str) -> StoredResult | None:
        """The stored result, None when there is none; StoredResultError when the one there cannot be used."""
        folder = self.folder(study, key)
        return read_result(folder, study) if folder.exists() else None

    def save(self, study: Study, key: str, result: Any, manifest: dict) -> StoredResult:
        folder = self.folder(study, key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f"{key}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        write_result(result, tmp, manifest)
        replace_folder(tmp, folder)
        return StoredResult(result, read_manifest(folder), folder)


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
            notice(f"{e} Computing it again.")
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
        return Shipped(read_result(folder, study), manifest, None)
    except StoredResultError as e:
        return Shipped(None, manifest, str(e))


def ship(study: Study, stored: StoredResult, root: Path = SHIPPED_ROOT) -> Path:
    """Copy a stored result into the shipped results (what `python -m analyses <study> --ship` does)."""
    folder = root / study.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(stored.folder, tmp)
    replace_folder(tmp, folder)
    return folder
