"""The diffing study's data: the texts of the per-token view (as the models see them) and the plain-text set of
the activation difference (assets/diffing/plain_text.txt, ordinary prose written for this project, no chat)."""
from __future__ import annotations

from dataclasses import dataclass

from steering.refusal_data import refusal_study_split
from steering.registry import ASSETS
from steering.tokens import chat_prompt, dataset_hash

PLAIN_TEXT = ASSETS / "diffing" / "plain_text.txt"


@dataclass(frozen=True)
class DiffingData:
    """texts: (name, text) for the per-token view, the chat template already applied where asked; plain: the
    plain texts whose first k tokens give the activation difference."""

    texts: tuple[tuple[str, str], ...]
    plain: tuple[str, ...]


def plain_texts() -> list[str]:
    """The non-empty, non-comment lines of the plain-text file."""
    lines = PLAIN_TEXT.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def example_turns() -> dict[str, str]:
    """The built-in chat turns: the first harmless and the first harmful instruction of the refusal test split."""
    return {"harmless": refusal_study_split("harmless.txt", "test")[0],
            "harmful": refusal_study_split("harmful.txt", "test")[0]}


def default_data(pair, config) -> DiffingData:
    """The config's own text (through the chat template when `chat`), or the two built-in chat turns; and the
    plain-text set."""
    if config.text:
        text = chat_prompt(pair.tokenizer, config.text) if config.chat else config.text
        texts = (("text", text),)
    else:
        texts = tuple((name, chat_prompt(pair.tokenizer, turn)) for name, turn in example_turns().items())
    return DiffingData(texts, tuple(plain_texts()))


def data_hash(data: DiffingData) -> str:
    return dataset_hash([name for name, _ in data.texts], [text for _, text in data.texts], list(data.plain))
