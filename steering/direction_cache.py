"""An on-disk cache of directions keyed by model, dataset hash, method and position: nothing is computed twice."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .cache import cache_root
from .directions import Direction
from .extraction import Progress, diff_in_means
from .pairs import ModelPair
from .tokens import dataset_hash


class DirectionCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root() / "directions"
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model: str, dataset_hash: str, method: str, position: int | str) -> str:
        raw = json.dumps([model, dataset_hash, method, str(position)])
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> Direction | None:
        return Direction.load(self.path(key)) if self.path(key).exists() else None

    def put(self, key: str, direction: Direction) -> Path:
        return direction.save(self.path(key))

    def get_or_compute(self, key: str, compute: Callable[[], Direction]) -> Direction:
        found = self.get(key)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def entries(self) -> list[tuple[Path, dict]]:
        """(file, metadata) of every cached direction, newest first."""
        files = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [(f.with_suffix(".safetensors"), json.loads(f.read_text())) for f in files]


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
