"""What the pages call the two models: "Base" and "Post-trained", or, where two stages of the demo road are loaded
('demo@step108..dpo', 'demo@step36'), the stages' own names, so a page never calls step108 "base"."""
from __future__ import annotations

from steering.registry import BETWEEN, pair_names

PLAIN = {"base": "Base", "post": "Post-trained"}


def role_names(pair_name: str) -> dict[str, str]:
    """{"base": label, "post": label} for a pair's name."""
    registered, _, stages = pair_name.partition("@")
    if not stages or registered not in pair_names():  # a custom pair's path may hold an "@" too
        return dict(PLAIN)
    first, between, second = stages.partition(BETWEEN)
    if between:
        return {"base": f"{first} (as base)", "post": second}
    return {"base": "Base", "post": f"Post-trained, {stages}"}
