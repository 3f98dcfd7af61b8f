"""A steering card's readable page (README.md) and its reproduce script, written from the card and its manifest."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .composition import describe
from .playground import PROJECT_ROOT, load_call

if TYPE_CHECKING:
    from .card import SteeringCard


def reproduce_script(load: dict) -> str:
    """Python that loads the card's pair and prints its generations again, run from the card's folder or any other
    (the card's folder is found from the script's own path; the project is put on the import path)."""
    return "\n".join([
        "# Reproduces this steering card's generations. Run it with the project's Python from any folder:",
        "#     .venv/bin/python reproduce.py",
        "import sys",
        "from pathlib import Path",
        "",
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})",
        "",
        "from steering import load_pair",
        "from steering.card import read_card, reproduce",
        "",
        "card = read_card(Path(__file__).resolve().parent)  # every file checked against the manifest",
        f"pair = {load_call(load)}",
        "table = reproduce(card, pair).table  # refused unless the pair's fingerprints are the card's",
        "print(table.to_string())",
        "",
    ])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or "∅"


def card_markdown(card: "SteeringCard", manifest: dict) -> str:
    lines = [
        "# Steering card", "",
        f"Made with post-training-playground {card.project_version} on {card.created_at}. "
        "`manifest.json` holds all of this as data; `reproduce.py` runs it again.", "",
        "## Models", "",
        *(f"- {role}: `{fp}`" for role, fp in sorted(card.fingerprints.items())),
        f"- loaded with `{load_call(card.load)}`", "",
        "## Steerings (applied in this order)", "",
        "| # | what | direction | read from | method | data hash | read at | vector file | llama.cpp |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (entry, raw) in enumerate(zip(card.steerings, manifest["steerings"]), start=1):
        info = entry.spec.direction.info
        lines.append(f"| {i} | {_cell(describe(entry.spec))} | {_cell(entry.label or info.dataset)} | "
                     f"{entry.read_from or 'a loaded file'} | {_cell(info.method)} | `{info.dataset_hash}` | "
                     f"{info.hook_point}, position {info.position} | `{raw['direction']}` | "
                     f"{'`' + raw['control_vector'] + '`' if raw['control_vector'] else '—'} |")
    lines += ["", "Positions count from the end of the prompt: -1 is the last prompt token, 0 the first generated "
              "one. A llama.cpp control vector is written for an addition at every position from layer 2 on "
              "(llama.cpp has no slot before that, and steers every token).", ""]
    own = [f"steering {i}'s in `{raw['reference']}`" for i, raw in enumerate(manifest["steerings"], start=1)
           if raw.get("reference")]
    if own or card.references is not None:
        where = "; ".join(own + (["the others' in `references.safetensors`" if own else "stored in "
                                  "`references.safetensors`"] if card.references is not None else []))
        lines += ["The affine ablations set the component along their direction to each model's own mean on "
                  f"reference prompts: {where}.", ""]
    d = card.decoding
    lines += ["## Decoding", "",
              f"{'greedy' if d.greedy else f'sampling (temperature {d.temperature:g}, top_p {d.top_p:g})'}, "
              f"{d.max_new_tokens} new tokens, seed {d.seed}, prompts "
              f"{'through the chat template' if card.chat else 'as raw text'}.", ""]
    lines += ["## Calibration", ""]
    if card.calibration is None:
        lines += ["None recorded: the layer and strength were chosen by hand.", ""]
    else:
        chosen = card.calibration.get("chosen")
        lines += ([f"Chosen setting: `{json.dumps(chosen)}`", ""] if chosen is not None else []) + [
            "```json", json.dumps(card.calibration, indent=2)[:20_000], "```", ""]
    lines += _generations(card)
    lines += ["## Reproduce", "", "```python", reproduce_script(card.load).rstrip(), "```", ""]
    return "\n".join(lines)


def _generations(card: "SteeringCard") -> list[str]:
    if not card.generations:
        return []
    roles = sorted({row["model"] for row in card.generations}, key=lambda r: (r != "base", r))
    texts = {(row["prompt"], row["model"], row["steered"]): row["text"] for row in card.generations}
    lines = ["## Generations, before and after", "",
             "| prompt | " + " | ".join(f"{r} | {r} · steered" for r in roles) + " |",
             "|---|" + "---|---|" * len(roles)]
    for prompt in card.prompts:
        cells = [_cell(texts.get((prompt, r, s), "")) for r in roles for s in (False, True)]
        lines.append(f"| {_cell(prompt)} | " + " | ".join(cells) + " |")
    return lines + [""]
