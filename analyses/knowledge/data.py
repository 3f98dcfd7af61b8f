"""Items for the knowledge study, built from the project's fact tables (assets/facts/*.csv).

Facts (ROME's noise variant): subject, a prompt containing it, and the object that completes it:
    "The city of Paris is in the country of" -> " France"
Pairs (the paper's variant, Geometry-of-Truth style): a true statement and a false one of the same template and the
same token length under the pair's tokenizer, differing in the subject only: the subject is swapped for another
entity whose true object differs, so the corrupted statement is false:
    "The city of Lodz is in Poland." / "The city of Krasnodar is in Poland."
"""
from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd
from transformers import PreTrainedTokenizerBase

from steering.errors import InvalidInputError
from steering.registry import ASSETS
from steering.tokens import dataset_hash


@dataclass(frozen=True)
class Template:
    table: str
    subject: str  # column of the subject
    object: str  # column of the object
    statement: str  # true/false statement, {s} and {o}
    prompt: str  # prompt for the object, {s}


TEMPLATES = {
    "cities": Template("cities", "city", "country", "The city of {s} is in {o}.",
                       "The city of {s} is in the country of"),
    "capitals": Template("capitals", "country", "capital", "The capital of {s} is {o}.",
                         "The capital of {s} is the city of"),
    "translations": Template("translations", "spanish", "english", "The Spanish word '{s}' means '{o}'.",
                             "In English, the Spanish word '{s}' means"),
    "elements": Template("elements", "element", "symbol", "The chemical symbol of {s} is {o}.",
                         "The chemical symbol of {s} is"),
}
FACT_COLUMNS = ["item", "set", "subject", "prompt", "object"]
PAIR_COLUMNS = ["item", "set", "subject", "corrupt_subject", "object", "corrupt_object", "true_statement",
                "false_statement"]


def dataset_names() -> list[str]:
    return list(TEMPLATES)


def _template(name: str) -> Template:
    if name not in TEMPLATES:
        raise InvalidInputError(f"Unknown knowledge dataset '{name}': choose one of {', '.join(TEMPLATES)}.")
    return TEMPLATES[name]


def _rows(t: Template) -> list[tuple[str, str]]:
    with (ASSETS / "facts" / f"{t.table}.csv").open(encoding="utf-8") as f:
        rows = [(r[t.subject].strip(), r[t.object].strip()) for r in csv.DictReader(f)]
    seen, out = set(), []
    for s, o in rows:  # one fact per subject; skip subjects that equal their object (e.g. city-states)
        if s and o and s != o and s not in seen:
            seen.add(s)
            out.append((s, o))
    return out


def facts(name: str = "cities") -> pd.DataFrame:
    """(subject, prompt, object) facts; the object carries its leading space (the token the model predicts)."""
    t = _template(name)
    rows = [{"item": i, "set": name, "subject": s, "prompt": t.prompt.format(s=s), "object": " " + o}
            for i, (s, o) in enumerate(_rows(t))]
    return pd.DataFrame(rows, columns=FACT_COLUMNS)


def pairs(name: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> pd.DataFrame:
    """Each true statement with a false one of equal token length: another subject (same token count in the
    statement, a different true object). Subjects without such a partner are left out."""
    t = _template(name)
    rows = _rows(t)
    length = {s: len(tokenizer(t.statement.format(s=s, o="X"), add_special_tokens=False).input_ids) for s, _ in rows}
    by_length: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for s, o in rows:
        by_length[length[s]].append((s, o))
    rng = random.Random(seed)
    out = []
    for s, o in rows:
        partners = [(s2, o2) for s2, o2 in by_length[length[s]] if s2 != s and o2 != o]
        if not partners:
            continue
        s2, o2 = partners[rng.randrange(len(partners))]
        true, false = t.statement.format(s=s, o=o), t.statement.format(s=s2, o=o)
        if len(tokenizer(true).input_ids) != len(tokenizer(false).input_ids):
            continue
        out.append({"item": len(out), "set": name, "subject": s, "corrupt_subject": s2, "object": o,
                    "corrupt_object": o2, "true_statement": true, "false_statement": false})
    return pd.DataFrame(out, columns=PAIR_COLUMNS)


def default_items(config, tokenizer: PreTrainedTokenizerBase) -> pd.DataFrame:
    """The config's dataset as facts (noise) or pairs (paired), in a seeded order."""
    frame = facts(config.dataset) if config.corruption == "noise" else pairs(config.dataset, tokenizer, config.seed)
    return frame.sample(frac=1.0, random_state=config.seed).reset_index(drop=True)


def default_data(pair, config) -> pd.DataFrame:
    """The study's built-in items for this pair (pairs depend on its tokenizer) and config."""
    return default_items(config, pair.tokenizer)


def data_hash(frame: pd.DataFrame) -> str:
    """Identifies an items frame: every row as text, in order (the screening reads its head)."""
    return dataset_hash([str(r) for r in frame.to_dict("records")])


def subject_span(tokenizer: PreTrainedTokenizerBase, text: str, start: int, end: int) -> list[int]:
    """Token positions (in tokenizer(text) with special tokens) overlapping the characters [start, end)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    positions = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not positions:
        raise InvalidInputError(f"The subject is not among the tokens of '{text}'.")
    return positions


ROLES = ["first subject", "middle subject", "last subject", "first after", "further", "last"]


def token_roles(first: int, last: int, n_tokens: int) -> dict[int, list[str]]:
    """ROME's token roles for a subject spanning positions first..last of a prompt of n_tokens: a token may hold
    several (a one-token subject is its first and last subject token; the last token is never 'further')."""
    roles: dict[int, list[str]] = defaultdict(list)
    roles[first].append("first subject")
    for p in range(first + 1, last):
        roles[p].append("middle subject")
    roles[last].append("last subject")
    if last + 1 < n_tokens - 1:
        roles[last + 1].append("first after")
    for p in range(last + 2, n_tokens - 1):
        roles[p].append("further")
    roles[n_tokens - 1].append("last")
    return dict(roles)
