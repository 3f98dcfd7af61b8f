"""Bring the shipped lab road up to date by recomputing only the studies whose version moved.

A study's new version makes the whole shipped road out of date, and shipping the road again runs every study at
nine stages (88 min on 2 cores). When only some studies moved, `python -m analyses lab --studies truthfulness
--into-shipped` recomputes those at every stage and keeps every other study's cells from the shipped road, after
checking that each kept study's cells were made by its current version with its current lab settings. The result
is stored under the full road's key (every study, every stage, the current versions: what a full run would store)
and shipped; its manifest names the command that made it and the shipped road it kept cells from
(`merged_from`), so the provenance of every cell stays readable."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from steering.errors import InvalidInputError
from steering.stages import stages

from .. import STUDY_NAMES, find_study
from ..store import SHIPPED_ROOT, ResultStore, config_json, fingerprints, manifest_for, pair_for, read_result, \
    result_key
from ..store_entry import StoredResult, read_manifest
from .compute import Result, merged
from .config import Config, study_config


def shipped_road(lab, pair, root: Path = SHIPPED_ROOT) -> StoredResult:
    """The shipped road of this pair, read and verified whatever version of the lab wrote it."""
    folder = root / lab.name
    try:
        manifest = read_manifest(folder)
    except Exception as e:  # missing or unreadable: nothing to merge into
        raise InvalidInputError(f"There is no readable shipped lab road in {folder} ({e}); run the whole lab with "
                                "--ship instead.") from None
    if manifest.get("fingerprints") != fingerprints(pair_for(lab, pair)):
        raise InvalidInputError("The shipped lab road was computed on another base model than the loaded pair's; "
                                "run the whole lab with --ship instead.")
    return read_result(folder, replace(lab, version=manifest["version"]), manifest["key"])


def kept_cells_problem(old: Result, recomputed: set[str]) -> str | None:
    """Why the shipped road's cells of the studies not recomputed cannot be kept (None when they can)."""
    for name in STUDY_NAMES:
        if name in recomputed:
            continue
        study = find_study(name)
        if old.versions.get(name) != study.version:
            return (f"its {name} cells were made by {old.versions.get(name) or 'no version'}, the code is "
                    f"{study.version}: recompute {name} too (--studies ... {name})")
        if old.settings.get(name) != config_json(study_config(study)):
            return f"its {name} cells were made with other lab settings: recompute {name} too"
    if "refusal" in recomputed:
        return "refusal's transfer rows depend on it: run the whole lab with --ship instead"
    return None


def merge_into_shipped(lab, pair, part: StoredResult, command: str, store: ResultStore | None = None,
                       root: Path = SHIPPED_ROOT) -> StoredResult:
    """The shipped road with `part`'s studies (recomputed at every stage) in place of its own cells, stored under
    the full road's key. InvalidInputError when a kept cell is not current or `part` misses a stage."""
    old_stored = shipped_road(lab, pair, root)
    old, new = old_stored.result, part.result
    recomputed = set(new.settings)
    road = [s.name for s in stages(pair.name)]
    for name in recomputed:
        if new.settings[name] != config_json(study_config(find_study(name))):
            raise InvalidInputError(f"--into-shipped needs {name} run with the lab's own settings.")
        covered = set(new.runs.loc[new.runs["study"] == name, "stage"])
        if missing := [s for s in road if s not in covered]:
            raise InvalidInputError(f"--into-shipped needs {name} at every stage; missing: {', '.join(missing)}.")
    problem = kept_cells_problem(old, recomputed)
    if problem:
        raise InvalidInputError(f"The shipped lab road cannot be kept in part: {problem}.")
    road_result = merged(old, new)
    redone = old.runs["study"].isin(recomputed)
    road_result.runs = pd.concat([old.runs[~redone], new.runs], ignore_index=True)
    full, base = Config(), pair_for(lab, pair)  # the whole road, keyed by the base as the lab always is
    data_hash = lab.data_hash(lab.resolve_data(base, full))
    key = result_key(lab, base, full, data_hash)
    manifest = manifest_for(lab, base, full, key, data_hash, part.manifest["seconds"], command)
    manifest["merged_from"] = {"key": old_stored.manifest["key"], "version": old_stored.manifest["version"],
                               "command": old_stored.manifest.get("command"),
                               "created_at": old_stored.manifest.get("created_at"),
                               "recomputed": sorted(recomputed), "recomputed_key": part.manifest["key"],
                               # a road merged before keeps the chain back to the full run it started from
                               "merged_from": old_stored.manifest.get("merged_from")}
    return (store or ResultStore()).save(lab, key, road_result, manifest)
