"""Every Direction the studies stored for a pair, for the playground to steer with (no Streamlit).

    for label, direction in directions_for(pair):   # "refusal · directions · post · 2026-12-01", Direction
        ...

It reads the results' manifests and their direction files only, never a whole result: the user's store
(<root>/<study>/<key>/) and the demo pair's shipped results (assets/demo/results/<study>/). A result counts when
its manifest's fingerprints are this pair's and the study's version wrote it (another version's numbers are stale,
as in `analyses.store`); a folder that cannot be read is left out, as `run_cached` would compute it again."""
from __future__ import annotations

from pathlib import Path

import analyses
from steering.directions import Direction
from steering.errors import SteeringError

from .store import MANIFEST, SHIPPED_ROOT, ResultStore, StoredResultError, fingerprints, read_manifest
from .study import Study

SUFFIX = ".direction.safetensors"


def directions_for(pair, store: ResultStore | None = None,
                   shipped_root: Path = SHIPPED_ROOT) -> list[tuple[str, Direction]]:
    """(label, Direction) for every Direction field, and every entry of a dict-of-Directions field, in the stored
    results of every study in `analyses.STUDIES` for this pair: per study, the newest result first."""
    store = store or ResultStore()
    prints = fingerprints(pair)
    found = []
    for study in analyses.STUDIES:
        results = [(m, folder, "") for m, folder in _current(study, prints, (store.root / study.name).glob("*"))]
        results += [(m, folder, " (shipped)") for m, folder in _current(study, prints, [shipped_root / study.name])]
        results.sort(key=lambda r: str(r[0].get("created_at", "")), reverse=True)
        for manifest, folder, note in results:
            date = str(manifest.get("created_at", ""))[:10]
            found += [(f"{study.name} · {name} · {date}{note}", direction)
                      for name, direction in _directions_in(folder, manifest)]
    return found


def _current(study: Study, prints: dict, folders) -> list[tuple[dict, Path]]:
    """(manifest, folder) of the result folders this pair's models and this version of the study wrote."""
    out = []
    for folder in folders:
        if not (folder / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except StoredResultError:
            continue
        if (manifest.get("study"), manifest.get("version")) == (study.name, study.version) \
                and manifest.get("fingerprints") == prints:
            out.append((manifest, folder))
    return out


def _directions_in(folder: Path, manifest: dict) -> list[tuple[str, Direction]]:
    """("field" or "field · key", Direction) for the result's direction files, in field order; files that
    cannot be read are left out."""
    out = []
    for field, kind in (manifest.get("fields") or {}).items():
        if kind == "direction":
            files = [(field, folder / f"{field}{SUFFIX}")]
        elif kind == "directions":
            files = [(f"{field} · {p.name[len(field) + 1:-len(SUFFIX)]}", p)
                     for p in sorted(folder.glob(f"{field}.*{SUFFIX}"))]
        else:
            continue
        for name, path in files:
            try:
                out.append((name, Direction.load(path)))
            except SteeringError:
                continue
    return out
