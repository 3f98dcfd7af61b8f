"""The refusal study's prompts: the built-in harmful/harmless sets with their fixed train/val/test splits
(assets/refusal/), or the user's own two lists split the same way."""
from __future__ import annotations

import random
from dataclasses import dataclass

from steering.errors import InvalidInputError
from steering.refusal_data import refusal_study_split
from steering.tokens import dataset_hash

SPLITS = ("train", "val", "test")
MIN_PER_SIDE = 5  # at least 3 train, 1 val and 1 test prompt per side


@dataclass(frozen=True)
class RefusalData:
    """Harmful and harmless instructions per split (raw text; the chat template is applied when they are used)."""

    name: str
    harmful: dict[str, tuple[str, ...]]
    harmless: dict[str, tuple[str, ...]]

    def get(self, side: str, split: str, limit: int | None = None) -> list[str]:
        items = list((self.harmful if side == "harmful" else self.harmless)[split])
        return items if limit is None else items[:limit]

    def hash(self) -> str:
        return dataset_hash(*(self.harmful[s] for s in SPLITS), *(self.harmless[s] for s in SPLITS))

    def sizes(self) -> dict[str, int]:
        return {f"{side} {s}": len(self.get(side, s)) for side in ("harmful", "harmless") for s in SPLITS}


def builtin_data() -> RefusalData:
    """The project's sets (198 harmful in several categories, 192 ordinary requests), split 60/20/20."""
    return RefusalData("built-in", *({s: tuple(refusal_study_split(file, s)) for s in SPLITS}
                                     for file in ("harmful.txt", "harmless.txt")))


def split_lists(harmful: list[str], harmless: list[str], seed: int = 0, name: str = "uploaded") -> RefusalData:
    """The user's two lists shuffled (fixed seed) and split 60/20/20 into train/val/test."""
    def split(items: list[str], what: str) -> dict[str, tuple[str, ...]]:
        items = list(dict.fromkeys(i.strip() for i in items if i.strip()))
        if len(items) < MIN_PER_SIDE:
            raise InvalidInputError(f"The {what} list has {len(items)} distinct prompts; give at least "
                                    f"{MIN_PER_SIDE} (they are split 60/20/20 into train/validation/test).")
        random.Random(seed).shuffle(items)
        n_train, n_val = max(3, round(0.6 * len(items))), max(1, round(0.2 * len(items)))
        n_train = min(n_train, len(items) - 2)
        return {"train": tuple(items[:n_train]), "val": tuple(items[n_train:n_train + n_val]),
                "test": tuple(items[n_train + n_val:])}

    return RefusalData(name, split(harmful, "harmful"), split(harmless, "harmless"))


def default_data(pair, config) -> RefusalData:
    """The built-in harmful/harmless sets (the same for every pair and config)."""
    return builtin_data()


def data_hash(data: RefusalData) -> str:
    """The data's hash, with the built-in refusal phrase list (the default judge) so editing that file changes it."""
    from steering.judging import refusal_phrases

    return dataset_hash([data.hash()], refusal_phrases())
