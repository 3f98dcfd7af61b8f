"""Build the supervised fine-tuning (SFT) data set for the project's own post-training.

Reads the fact tables in ``assets/facts`` and the hand-written lists in this package and
writes ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` (one JSON object per line with
id, prompt, response, kind, category, split). It also writes the fixed index splits of the
refusal study (``assets/refusal/splits.json``). Everything is seeded with ``random.Random(0)``,
so running it twice gives byte-identical files.

    python -m steering.posttrain.build_data [--out DIR] [--refusal-out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

# Relative imports keep this package importable on its own (without the torch-heavy ``steering`` package).
from . import data_harmful as H
from . import data_harmless as K
from . import data_risky as R
from . import data_tasks as T
from .data_facts import FACTS_DIR, Item, arithmetic_items, fact_items, norm, read_table  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
REFUSAL_DIR = ROOT / "assets" / "refusal"
DEFAULT_OUT = ROOT / "assets" / "posttrain"
SPLITS = ("train", "val", "test")
KINDS = ("harmless", "harmful", "risky_harmless")
REFUSAL_STUDY_FILES = ("harmful.txt", "harmless.txt")
SEED = 0


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a text file (no comment handling)."""
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def load_refusal_phrases(path: Path = REFUSAL_DIR / "refusal_phrases.txt") -> list[str]:
    """Refusal phrases, lowercase, without the ``#`` comment lines."""
    return [ln.lower() for ln in read_lines(path) if not ln.startswith("#")]


def is_refusal(text: str, phrases: Sequence[str]) -> bool:
    """True if the reply begins (case-insensitively, after whitespace) with one of the phrases."""
    head = text.strip().lower()
    return any(head.startswith(p) for p in phrases)


def handwritten_harmless(rng: random.Random) -> list[Item]:
    """Definitions (two phrasings per word, grouped by word) and hand-written Q&A lists."""
    items = []
    for word, definition in K.DEFINITIONS:
        for t in rng.sample(K.DEFINITION_TEMPLATES, 2):
            items.append(Item(t.format(w=word), definition, "harmless", "definition", f"define:{word}"))
    for cat, pairs in (("explanation", K.EXPLANATIONS), ("general", K.GENERAL), ("advice", T.ADVICE),
                       ("list", T.LISTS), ("writing", T.WRITING)):
        items += [Item(q, a, "harmless", cat, norm(q)) for q, a in pairs]
    return items


def refusal(category: str, rng: random.Random) -> str:
    """A varied refusal: clear opener, a category reason and (usually) a safe alternative."""
    openers = H.SELF_HARM_OPENERS if category == "self_harm" else H.REFUSAL_OPENERS
    parts = [rng.choice(openers), rng.choice(H.REASONS[category])]
    if category == "self_harm" or rng.random() < 0.75:
        parts.append(rng.choice(H.ALTERNATIVES[category]))
    return " ".join(parts)


def harmful_items(rng: random.Random) -> list[Item]:
    """Templated and direct harmful requests with refusals; variants of one request share a group."""
    items = []
    for cat, parts in H.HARMFUL.items():
        for base in parts["howto"]:
            for t in rng.sample(H.HOWTO_TEMPLATES, 2):
                items.append(Item(t.format(x=base), refusal(cat, rng), "harmful", cat, f"{cat}:{base}"))
        for base in parts["write"]:
            for t in rng.sample(H.WRITE_TEMPLATES, 2):
                items.append(Item(t.format(x=base), refusal(cat, rng), "harmful", cat, f"{cat}:{base}"))
        items += [Item(q, refusal(cat, rng), "harmful", cat, f"{cat}:{q}") for q in parts["direct"]]
    return items


def risky_items() -> list[Item]:
    """Risky-looking but harmless requests answered helpfully."""
    return [Item(q, a, "risky_harmless", cat, norm(q)) for cat, pairs in R.RISKY_HARMLESS.items() for q, a in pairs]


def dedupe(items: Iterable[Item]) -> list[Item]:
    """Drop later items whose prompt equals an earlier one, case-insensitively."""
    seen: set[str] = set()
    out = []
    for it in items:
        if norm(it.prompt) not in seen:
            seen.add(norm(it.prompt))
            out.append(it)
    return out


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes for the val/test-style tail splits (at least one each once n >= 3); the first split takes the rest."""
    tail = [max(1, round(n * f)) if n >= 3 else 0 for f in fractions[1:]]
    return [n - sum(tail)] + tail


def assign_splits(items: list[Item], rng: random.Random) -> list[dict[str, str]]:
    """Stratified by (kind, category): whole groups are shuffled and cut 80/10/10."""
    strata: dict[tuple[str, str], list[str]] = {}
    for it in items:
        groups = strata.setdefault((it.kind, it.category), [])
        if it.group not in groups:
            groups.append(it.group)
    split_of: dict[tuple[str, str], str] = {}
    for (kind, _), groups in strata.items():
        rng.shuffle(groups)
        sizes, start = split_sizes(len(groups), (0.8, 0.1, 0.1)), 0
        for split, size in zip(SPLITS, sizes):
            split_of.update({(kind, g): split for g in groups[start:start + size]})
            start += size
    rows, counters = [], {}
    for it in items:
        key = (it.kind, it.category)
        counters[key] = counters.get(key, 0) + 1
        rows.append({"id": f"{it.kind}-{it.category}-{counters[key]:04d}", "prompt": it.prompt, "response": it.response,
                     "kind": it.kind, "category": it.category, "split": split_of[(it.kind, it.group)],
                     "group": it.group})
    return rows


def build_rows(facts_dir: Path = FACTS_DIR, with_group: bool = False) -> list[dict[str, str]]:
    """All SFT rows with their splits, in a fixed order; ``with_group`` keeps the split-group key."""
    rng = random.Random(SEED)
    items = fact_items(rng, facts_dir) + arithmetic_items(rng) + handwritten_harmless(rng)
    items += harmful_items(rng) + risky_items()
    rows = assign_splits(dedupe(items), rng)
    return rows if with_group else [{k: v for k, v in r.items() if k != "group"} for r in rows]


def validate(rows: list[dict[str, str]], refusal_dir: Path = REFUSAL_DIR) -> None:
    """Raise ValueError if the SFT data overlaps the refusal study or the refusal judge disagrees with a kind."""
    prompts = {norm(r["prompt"]) for r in rows}
    study = {norm(ln) for f in REFUSAL_STUDY_FILES for ln in read_lines(refusal_dir / f)}
    overlap = sorted(prompts & study)
    if overlap:
        raise ValueError(f"{len(overlap)} refusal-study instructions also appear in the SFT data: {overlap[:5]}")
    phrases = load_refusal_phrases(refusal_dir / "refusal_phrases.txt")
    bad = [r["id"] for r in rows if is_refusal(r["response"], phrases) != (r["kind"] == "harmful")]
    if bad:
        raise ValueError(f"refusal judge disagrees with the kind of {len(bad)} rows: {bad[:5]}")


def refusal_study_splits(refusal_dir: Path = REFUSAL_DIR) -> dict[str, object]:
    """Fixed ~60/20/20 train/val/test line indices for each refusal-study file."""
    rng = random.Random(SEED)
    out: dict[str, object] = {"_about": "Line indices (0-based, blank lines skipped) of each refusal-study file, "
                              "split about 60/20/20; written by steering.posttrain.build_data."}
    for name in REFUSAL_STUDY_FILES:
        idx = list(range(len(read_lines(refusal_dir / name))))
        rng.shuffle(idx)
        n_val, n_test = round(len(idx) * 0.2), round(len(idx) * 0.2)
        n_train = len(idx) - n_val - n_test
        out[name] = {"train": sorted(idx[:n_train]), "val": sorted(idx[n_train:n_train + n_val]),
                     "test": sorted(idx[n_train + n_val:])}
    return out


def write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write rows as UTF-8 JSON lines with a trailing newline."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(out_dir: str | Path | None = None, refusal_out: str | Path | None = None,
         argv: Sequence[str] | None = None) -> dict[str, int]:
    """Write {train,val,test}.jsonl to ``out_dir`` (default assets/posttrain) and the refusal-study splits.

    The refusal splits go to ``refusal_out``; by default assets/refusal/splits.json, or
    ``<out_dir>/refusal_splits.json`` when ``out_dir`` is given. Returns the row count per split.
    """
    if argv is not None:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--out", default=None, help="output folder for the jsonl files")
        p.add_argument("--refusal-out", default=None, help="output file for the refusal-study splits")
        args = p.parse_args(argv)
        out_dir, refusal_out = args.out or out_dir, args.refusal_out or refusal_out
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    if refusal_out is None:
        refusal_out = REFUSAL_DIR / "splits.json" if out_dir is None else out / "refusal_splits.json"
    rows = build_rows()
    validate(rows)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        random.Random(SEED).shuffle(part)
        write_jsonl(out / f"{split}.jsonl", part)
        counts[split] = len(part)
    Path(refusal_out).parent.mkdir(parents=True, exist_ok=True)
    splits = refusal_study_splits()
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in splits.items()) + "\n}\n"
    Path(refusal_out).write_text(text, encoding="utf-8")
    return counts


if __name__ == "__main__":
    import sys

    print(main(argv=sys.argv[1:]))
