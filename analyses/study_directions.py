"""Every Direction the studies stored for a pair, for the playground to steer with (no Streamlit).

    for label, direction in directions_for(pair):   # "refusal · directions · post · 2026-12-01", Direction
        ...

It reads the results' manifests and their direction files only, never a whole result: the user's store
(<root>/<study>/<key>) and the demo pair's shipped results (assets/demo/results/<study>/). A result counts when
its manifest's fingerprints are this pair's and the study's version wrote it (another version's numbers are stale,
as in `analyses.store`). Each manifest and each direction file is checked as `analyses.store` checks them (the
manifest's checksum and key, each file's size and sha256); what fails is left out, as `run_cached` would compute
it again."""
from __future__ import annotations

from pathlib import Path

import analyses
from steering.directions import Direction
from steering.errors import SteeringError

from .store import MANIFEST, SHIPPED_ROOT, ResultStore, StoredResultError, fingerprints, read_file, read_manifest
from .store_entry import DIRECTION, dict_files
from .study import Study


def directions_for(pair, store: ResultStore | None = None,
                   shipped_root: Path = SHIPPED_ROOT) -> list[tuple[str, Direction]]:
    """(label, Direction) for every Direction field, and every entry of a dict-of-Directions field, in the stored
    results of every study in `analyses.STUDIES` for this pair: per study, the newest result first."""
    store = store or ResultStore()
    prints = fingerprints(pair)
    found = []
    for study in analyses.STUDIES:
        results = [(m, folder, "") for m, folder in store.entries(study) if _current(study, prints, m)]
        results += [(m, folder, " (shipped)") for m, folder in _shipped(study, prints, shipped_root / study.name)]
        results.sort(key=lambda r: str(r[0].get("created_at", "")), reverse=True)
        for manifest, folder, note in results:
            date = str(manifest.get("created_at", ""))[:10]
            found += [(f"{study.name} · {name} · {date}{note}", direction)
                      for name, direction in _directions_in(folder, manifest)]
    return found


def _current(study: Study, prints: dict, manifest: dict) -> bool:
    """Whether this pair's models and this version of the study wrote the result."""
    return (manifest.get("study"), manifest.get("version")) == (study.name, study.version) \
        and manifest.get("fingerprints") == prints


def _shipped(study: Study, prints: dict, folder: Path) -> list[tuple[dict, Path]]:
    if not (folder / MANIFEST).is_file():
        return []
    try:
        manifest = read_manifest(folder)
    except StoredResultError:
        return []
    return [(manifest, folder)] if _current(study, prints, manifest) else []


def _directions_in(folder: Path, manifest: dict) -> list[tuple[str, Direction]]:
    """("field" or "field · key", Direction) for the result's direction files as its manifest lists them, in field
    order; files that fail their check or cannot be read are left out."""
    out = []
    for field, kind in (manifest.get("fields") or {}).items():
        if kind == "direction":
            files = [(field, f"{field}{DIRECTION}")]
        elif kind == "directions":
            files = [(f"{field} · {key}", name) for key, name in dict_files(field, manifest["files"])]
        else:
            continue
        for label, name in files:
            try:
                out.append((label, Direction.from_bytes(read_file(folder, manifest, name), name)))
            except SteeringError:  # StoredResultError for a failed check, InvalidInputError for a bad file
                continue
    return out
