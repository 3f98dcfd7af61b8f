"""An on-disk cache of directions keyed by model, dataset hash, method and position: nothing is computed twice.

    <root>/<key>.safetensors   the direction file (Direction.save)
    <root>/<key>.json          its sidecar: the direction's metadata, and the safetensors file's size and sha256

An entry is used only when both files read back, the sidecar's size and sha256 are the safetensors file's, the
sidecar's metadata is the direction's own, and the direction parses. Anything else (a truncated file, a flipped
bit, a sidecar of another save or of an older cache) is a miss: reported through `notice` in one line and computed
again, never an error on every use. Each file is replaced in one step (steering/atomic.py); saves hold an
exclusive flock on <root>/.lock and reads a shared one, so a reader never pairs one save's safetensors with
another's sidecar and two saves of one key end with one whole entry. The next save removes the temporary files of
saves that were killed."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .atomic import remove, sha256, stem_of, writer_gone
from .cache import cache_root
from .directions import Direction
from .errors import InvalidInputError, StoreError
from .extraction import Progress, diff_in_means
from .pairs import ModelPair
from .tokens import dataset_hash

try:
    import fcntl
except ImportError:  # not POSIX: no lock; a reader may then miss an entry being saved (and compute it again)
    fcntl = None

_log = logging.getLogger(__name__)
LOCK = ".lock"


class DirectionCache:
    def __init__(self, root: Path | None = None, notice: Callable[[str], None] | None = None):
        self.root = Path(root) if root is not None else cache_root() / "directions"
        self.root.mkdir(parents=True, exist_ok=True)
        self.notice = notice or _log.warning

    @staticmethod
    def key(model: str, dataset_hash: str, method: str, position: int | str) -> str:
        raw = json.dumps([model, dataset_hash, method, str(position)])
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> Direction | None:
        """The cached direction; None when there is none or it cannot be used (then `notice` says why)."""
        path = self.path(key)
        if not path.exists() and not path.with_suffix(".json").exists():
            return None
        try:
            with _locked(self.root, exclusive=False):
                return read_entry(path)[0]
        except StoreError as e:
            self.notice(" ".join(f"{e} Computing it again.".split()))
            return None

    def put(self, key: str, direction: Direction) -> Path:
        sweep(self.root)
        with _locked(self.root, exclusive=True):
            return direction.save(self.path(key))

    def get_or_compute(self, key: str, compute: Callable[[], Direction]) -> Direction:
        found = self.get(key)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def entries(self) -> list[tuple[Path, dict]]:
        """(file, metadata) of every cached direction that reads back whole and checked, newest first."""
        out = []
        with _locked(self.root, exclusive=False):
            for sidecar in self.root.glob("*.json"):
                try:
                    _, meta, path = read_entry(sidecar.with_suffix(".safetensors"))
                    out.append((sidecar.stat().st_mtime, path, meta))
                except (StoreError, FileNotFoundError):
                    continue
        return [(path, meta) for _, path, meta in sorted(out, key=lambda e: e[0], reverse=True)]


def read_entry(path: Path) -> tuple[Direction, dict, Path]:
    """(direction, sidecar, path) of one cache entry, checked; StoreError (one sentence) when it cannot be used."""
    try:
        meta = json.loads(path.with_suffix(".json").read_bytes())
        data = path.read_bytes()
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise StoreError(f"The cached direction {path.name} cannot be read ({type(e).__name__}).") from None
    if not isinstance(meta, dict) or "safetensors_sha256" not in meta:
        raise StoreError(f"The cached direction {path.name} has no sidecar with its hash (an older cache).")
    if meta.get("safetensors_size") != len(data) or meta["safetensors_sha256"] != sha256(data):
        raise StoreError(f"The cached direction {path.name} is not the file its sidecar describes "
                         f"({len(data)} bytes; truncated or altered).")
    try:
        direction = Direction.from_bytes(data, path.name)
    except InvalidInputError as e:
        raise StoreError(f"The cached direction is unusable: {e}") from None
    own = json.loads(json.dumps({**asdict(direction.info), "n_layers": direction.n_layers,
                                 "d_model": direction.d_model}))
    if any(meta.get(k) != v for k, v in own.items()):
        raise StoreError(f"The cached direction {path.name}'s sidecar does not describe it (altered).")
    return direction, meta, path


@contextmanager
def _locked(root: Path, exclusive: bool) -> Iterator[None]:
    """Hold <root>/.lock: shared for readers, exclusive for a save (released when the file is closed)."""
    try:
        lock = open(root / LOCK, "a+b") if fcntl is not None else None
    except OSError:  # a cache folder this user cannot write: read it unlocked (a save fails on its own)
        lock = None
    if lock is None:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def sweep(root: Path) -> None:
    """Remove the temporary files that killed saves left (their process ended, or older than ten minutes)."""
    for name in os.listdir(root):
        if stem_of(name) is not None and writer_gone(root / name):
            remove(root / name)


def pair_direction(
    pair: ModelPair,
    role: str,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    dataset: str,
    position: int = -1,
    cache: DirectionCache | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> Direction:
    """The difference-in-means direction of one model of the pair, from the cache when it was computed before."""
    cache = cache or DirectionCache()
    key = cache.key(pair.fingerprint(role), dataset_hash(positive, negative), "diff_in_means", position)
    return cache.get_or_compute(key, lambda: diff_in_means(
        pair.models()[role], pair.tokenizer, positive, negative, position=position, dataset=dataset,
        model_name=pair.model_id(role), batch_size=batch_size, progress=progress))
