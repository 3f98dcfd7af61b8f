"""One result <-> one folder of plain data files, every byte of which is checked when it is read back.

    <folder>/manifest.json        study, version, key, config, fingerprints, data hash, created_at, command, seconds,
                                  machine, every field's kind, JSON fields inline ("values"), the name, size and
                                  sha256 of every other file ("files"), and the sha256 of all of that ("checksum")
             <field>.parquet      each DataFrame field
             tensors.safetensors  tensor and array fields (a dict of them as "<field>/<key>")
             <field>[.<key>].direction.safetensors   Direction fields (a dict of them, one file a key)

Reading checks the manifest's checksum, that the folder holds exactly the files it lists, each with its size and
sha256, and, when a key is asked for, that the manifest is that key's; only then are the bytes parsed (from the
very bytes that were checked). Anything else raises StoredResultError, in one sentence: a flipped bit, a truncated
or missing file, an extra file, another key's entry, another version of the study. No file is ever executed as code."""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from steering.atomic import sha256
from steering.directions import Direction
from steering.errors import StoreError

from .study import Study

FORMAT = "post-training-playground result"
FORMAT_VERSION = 2  # 2: the manifest lists every file's size and sha256 and carries its own checksum
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
DIRECTION = ".direction.safetensors"


class StoredResultError(StoreError):
    """A stored result that cannot be used: unreadable, incomplete, altered, another key's, or written by another
    version of its study. Not the user's error: `run_cached` reports it in one line and computes the result again."""


@dataclass
class StoredResult:
    result: Any
    manifest: dict
    folder: Path


# ---- writing -------------------------------------------------------------------------------------------------

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


def encode(result: Any) -> tuple[dict[str, bytes], dict[str, str], dict[str, Any]]:
    """A Result dataclass as (file name -> bytes, field -> kind, JSON field -> value)."""
    files, kinds, values, tensors = {}, {}, {}, {}
    for f in fields(result):
        value = getattr(result, f.name)
        kind = kinds[f.name] = _kind(value)
        if kind == "table":
            files[f"{f.name}.parquet"] = value.to_parquet()
        elif kind == "direction":
            files[f"{f.name}{DIRECTION}"] = value.to_bytes()
        elif kind == "directions":
            files.update({f"{f.name}.{key}{DIRECTION}": d.to_bytes() for key, d in value.items()})
        elif kind == "tensor":
            tensors[f.name] = value.detach().cpu().contiguous()
        elif kind == "array":
            tensors[f.name] = torch.from_numpy(np.ascontiguousarray(value))
        elif kind == "tensors":
            tensors.update({f"{f.name}/{k}": v.detach().cpu().contiguous() for k, v in value.items()})
        else:
            values[f.name] = value
    if tensors:
        files[TENSORS] = save_tensors(tensors)
    return files, kinds, values


def checksum(manifest: dict) -> str:
    """The sha256 of the manifest's content without its "checksum", as canonical JSON: any changed value, key or
    file entry changes it; the file's whitespace does not matter."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())


def with_files(manifest: dict, files: dict[str, bytes]) -> dict:
    """The manifest with every file's size and sha256 and, last, its checksum (the same JSON it is read back as)."""
    full = json.loads(json.dumps(manifest, default=str))
    full["files"] = {name: {"size": len(data), "sha256": sha256(data)} for name, data in sorted(files.items())}
    full["checksum"] = checksum(full)
    return full


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2) + "\n"


def write_entry(result: Any, folder: Path, manifest: dict) -> dict:
    """Write a Result into a new `folder` (see the module docstring); returns the manifest written. The manifest
    comes last, so a folder without one was never finished."""
    files, kinds, values = encode(result)
    full = with_files({"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "fields": kinds,
                       "values": values}, files)
    folder.mkdir(parents=True, exist_ok=False)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / MANIFEST).write_text(manifest_text(full))
    return full


def write_result(result: Any, folder: Path, manifest: dict) -> Path:
    """Write a Result into a new `folder`; returns the folder."""
    write_entry(result, folder, manifest)
    return folder


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


# ---- reading -------------------------------------------------------------------------------------------------

def parse_manifest(data: bytes, where: Path) -> dict:
    """A manifest's bytes as a checked dict: this project's format, version 2, checksum intact."""
    try:
        manifest = json.loads(data)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StoredResultError(f"The stored result's {where / MANIFEST} is not JSON ({e}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoredResultError(f"{where / MANIFEST} is not a result manifest of this project.")
    if "checksum" not in manifest or not isinstance(manifest.get("files"), dict):
        raise StoredResultError(f"The stored result in {where} was written by an older version of the store, "
                                "without the sizes and hashes of its files, so it cannot be checked.")
    if manifest["checksum"] != checksum(manifest):
        raise StoredResultError(f"The stored result's {where / MANIFEST} was altered: its checksum does not match.")
    return manifest


def read_manifest(folder: Path, key: str | None = None) -> dict:
    """The folder's checked manifest; StoredResultError when it is missing, altered, or (given `key`) another key's."""
    try:
        data = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise StoredResultError(f"The stored result in {folder} has no {MANIFEST}.") from None
    except OSError as e:
        raise StoredResultError(f"The stored result's {folder / MANIFEST} cannot be read: {e}") from None
    manifest = parse_manifest(data, folder)
    if key is not None and manifest.get("key") != key:
        raise StoredResultError(f"The stored result in {folder} is the entry of key {manifest.get('key')}, "
                                f"not of {key}.")
    return manifest


def read_file(folder: Path, manifest: dict, name: str) -> bytes:
    """One listed file's bytes, checked against its size and sha256 in the manifest."""
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict):
        raise StoredResultError(f"{name} is not listed in {folder / MANIFEST}.")
    try:
        data = (folder / name).read_bytes()
    except OSError as e:
        raise StoredResultError(f"The stored result in {folder} lacks {name} ({type(e).__name__}).") from None
    if len(data) != entry.get("size") or sha256(data) != entry.get("sha256"):
        raise StoredResultError(f"The stored result's {folder / name} is not the file its manifest lists "
                                f"({len(data)} bytes; {entry.get('size')} listed, or another sha256).")
    return data


def read_files(folder: Path, manifest: dict) -> dict[str, bytes]:
    """Every file the manifest lists, checked; the folder must hold those and nothing else."""
    try:
        present = set(os.listdir(folder)) - {MANIFEST}
    except OSError as e:
        raise StoredResultError(f"The stored result in {folder} cannot be listed ({e}).") from None
    listed = set(manifest["files"])
    if present != listed:
        missing, extra = sorted(listed - present), sorted(present - listed)
        raise StoredResultError(f"The stored result in {folder} does not hold the files its manifest lists "
                                f"(missing: {missing or 'none'}; not listed: {extra or 'none'}).")
    return {name: read_file(folder, manifest, name) for name in sorted(listed)}


def check_manifest(manifest: dict, study: Study, folder: Path) -> None:
    if manifest.get("study") != study.name:
        raise StoredResultError(f"{folder} holds a result of '{manifest.get('study')}', not of '{study.name}'.")
    if manifest.get("version") != study.version:
        raise StoredResultError(f"The stored {study.name} result in {folder} was made by version "
                                f"{manifest.get('version')}; the code is {study.version}.")


def read_result(folder: Path, study: Study, key: str | None = None) -> StoredResult:
    """The result stored in `folder`, every file checked (and, given `key`, the manifest's key); StoredResultError
    (one sentence) otherwise. The parsers see only checked bytes, and whatever they still raise means the entry
    cannot be used: it is reported as such rather than crashing the caller."""
    manifest = read_manifest(folder, key)
    check_manifest(manifest, study, folder)
    files = read_files(folder, manifest)
    try:
        return StoredResult(_decode(files, manifest, study.Result, folder), manifest, folder)
    except StoredResultError:
        raise
    except Exception as e:  # pyarrow, safetensors, torch: any of them, on any entry, is a bad entry
        raise StoredResultError(f"The stored {study.name} result in {folder} is incomplete or corrupt "
                                f"({type(e).__name__}: {e}).") from None


def _decode(files: dict[str, bytes], manifest: dict, result_cls: type, folder: Path) -> Any:
    kinds, values = manifest["fields"], manifest["values"]
    expected = {f.name for f in fields(result_cls)}
    if set(kinds) != expected:
        raise StoredResultError(f"The stored result in {folder} has fields {sorted(kinds)}; this code's "
                                f"{result_cls.__qualname__} has {sorted(expected)}.")
    tensors = load_tensors(files[TENSORS]) if TENSORS in files else {}
    out = {}
    for name, kind in kinds.items():
        if kind == "table":
            out[name] = pd.read_parquet(io.BytesIO(files[f"{name}.parquet"]))
        elif kind == "direction":
            out[name] = Direction.from_bytes(files[f"{name}{DIRECTION}"], f"{name}{DIRECTION}")
        elif kind == "directions":
            out[name] = {key: Direction.from_bytes(files[file], file) for key, file in dict_files(name, files)}
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


def dict_files(field: str, names) -> list[tuple[str, str]]:
    """(key, file name) of a dict-of-Directions field's files among `names`, sorted by file name."""
    prefix = f"{field}."
    return [(name[len(prefix):-len(DIRECTION)], name) for name in sorted(names)
            if name.startswith(prefix) and name.endswith(DIRECTION) and len(name) > len(prefix) + len(DIRECTION)]
