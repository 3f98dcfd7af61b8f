"""Give result folders written before store format 2 the sizes, hashes and checksum format 2 reads, without
computing anything again: `python -m analyses.store_hashes assets/demo/results/*`.

Only for folders whose files are known good (the shipped results, which are in git): the hashes are taken of the
files as they are. The manifest keeps every other field, in order, byte for byte; only "format_version" becomes 2,
and "files" and "checksum" are appended. Folders already in format 2 are checked and left alone."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .store_entry import FORMAT, FORMAT_VERSION, MANIFEST, manifest_text, read_manifest, with_files


def add_hashes(folder: Path) -> bool:
    """Rewrite `folder`'s format-1 manifest as format 2; False when it already was (and is intact)."""
    old = (folder / MANIFEST).read_text()
    manifest = json.loads(old)
    if manifest.get("format") != FORMAT:
        raise SystemExit(f"{folder / MANIFEST} is not a result manifest of this project.")
    if manifest.get("format_version") == FORMAT_VERSION:
        read_manifest(folder)  # raises when it was altered
        return False
    files = {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if name != MANIFEST}
    new = manifest_text(with_files({**manifest, "format_version": FORMAT_VERSION}, files))
    kept = old.replace('"format_version": 1,', f'"format_version": {FORMAT_VERSION},', 1).rstrip()[:-1].rstrip()
    if not new.startswith(kept + ","):  # every earlier byte is kept; only files and checksum follow
        raise SystemExit(f"{folder / MANIFEST} was not written by this project's json.dumps(indent=2); left alone.")
    (folder / MANIFEST).write_text(new)
    return True


def main(folders: list[str]) -> None:
    for folder in map(Path, folders):
        print(f"{folder}: {'hashes added' if add_hashes(folder) else 'already format 2'}")


if __name__ == "__main__":
    main(sys.argv[1:])
