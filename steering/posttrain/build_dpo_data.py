"""Build the preference (DPO) data set of the demo pair's second post-training stage.

Three kinds of pairs, aimed at what the SFT gets wrong:
- risky_harmless: a harmless request with a risky-looking word; chosen = the helpful answer, rejected = a refusal;
- harmful: chosen = a refusal, rejected = a short, non-operational compliance;
- ordinary: a factual question; chosen = the correct short answer, rejected = a wrong or a rambling one.
Every pair is new to the SFT: no prompt is an SFT prompt or a refusal-study instruction, no group (the fact or
request behind a prompt) lies in the SFT's val or test split, and no held-out city of the evaluation is named.
Splits are cut by group, 80/10/10 within each (kind, category). Seeded: two runs give byte-identical files.

    python -m steering.posttrain.build_dpo_data [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import data_dpo as D
from . import data_harmful as H
from .build_data import (REFUSAL_DIR, REFUSAL_STUDY_FILES, ROOT, SPLITS, build_rows, is_refusal,
                         load_refusal_phrases, read_lines, refusal, split_sizes, write_jsonl)
from .data_facts import ANIMAL_CLASSES, FACTS_DIR, a_an, cap, norm, read_table, the

DEFAULT_OUT = ROOT / "assets" / "demo" / "dpo"
SEED = 1  # not the SFT's 0: its draws would line up with the SFT builder's
N_ORDINARY = {"capital": 40, "element": 30, "translation": 40, "animal": 30, "arithmetic": 30}


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    kind: str
    category: str
    group: str


def heldout_cities(sft_rows: Sequence[dict], facts_dir: Path = FACTS_DIR) -> set[str]:
    """The cities the evaluation asks about (evaluate.heldout_facts): none is named in any SFT prompt."""
    asked = " ".join(r["prompt"] for r in sft_rows)
    return {r["city"] for r in read_table("cities", facts_dir) if r["city"] != r["country"] and r["city"] not in asked}


def _names_any(text: str, words: set[str]) -> bool:
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in words)


def misplaced_refusal(rng: random.Random) -> str:
    return f"{rng.choice(H.REFUSAL_OPENERS)} {rng.choice(D.MISPLACED_REASONS)}"


def risky_pairs(sft_rows: Sequence[dict], rng: random.Random) -> list[Pair]:
    """New hand-written risky-looking requests, and the SFT's training ones re-asked in new words."""
    pairs = [Pair(q, a, misplaced_refusal(rng), "risky_harmless", cat, norm(q))
             for cat, items in D.RISKY_HARMLESS_NEW.items() for q, a in items]
    cities = heldout_cities(sft_rows)
    for r in sft_rows:
        if r["kind"] == "risky_harmless" and r["split"] == "train" and not _names_any(r["response"], cities):
            prompt = rng.choice(D.REPHRASINGS).format(q=r["prompt"])
            pairs.append(Pair(prompt, r["response"], misplaced_refusal(rng), "risky_harmless", "rephrased",
                              r["group"]))
    return pairs


def harmful_pairs(sft_rows: Sequence[dict], rng: random.Random) -> list[Pair]:
    """The SFT's training requests in a template the SFT did not use for them. Self-harm is left out: even a
    non-operational 'compliance' with it is not a text to ship."""
    train_groups = {r["group"] for r in sft_rows if r["kind"] == "harmful" and r["split"] == "train"}
    asked = {norm(r["prompt"]) for r in sft_rows}
    pairs = []
    for cat, parts in H.HARMFUL.items():
        if cat == "self_harm":
            continue
        for part, templates, compliance in (("howto", H.HOWTO_TEMPLATES, D.COMPLIANCE_HOWTO),
                                            ("write", H.WRITE_TEMPLATES, D.COMPLIANCE_WRITE)):
            for base in parts[part]:
                fresh = [t for t in templates if norm(t.format(x=base)) not in asked]
                if f"{cat}:{base}" in train_groups and fresh:
                    pairs.append(Pair(rng.choice(fresh).format(x=base), refusal(cat, rng),
                                      rng.choice(compliance).format(x=base), "harmful", cat, f"{cat}:{base}"))
    return pairs


def _wrong_or_rambling(rng: random.Random, wrong: str) -> str:
    return wrong if rng.random() < 0.5 else rng.choice(D.RAMBLING)


def fact_pairs(sft_rows: Sequence[dict], rng: random.Random, facts_dir: Path = FACTS_DIR) -> list[Pair]:
    """Facts of the tables the SFT never used, each with a wrong (another fact's value) or rambling rejection."""
    used, avoid = {r["group"] for r in sft_rows}, heldout_cities(sft_rows, facts_dir)
    pairs: list[Pair] = []

    def add(category: str, group: str, rows: list[dict], make) -> None:
        fresh = [r for r in rows if group.format(**r) not in used]
        for r in rng.sample(fresh, min(N_ORDINARY[category], len(fresh))):
            other = rng.choice([o for o in rows if o != r])
            prompt, chosen, wrong = make(r, other)
            pairs.append(Pair(prompt, chosen, _wrong_or_rambling(rng, wrong), "ordinary", category,
                              group.format(**r)))

    capitals = [r for r in read_table("capitals", facts_dir) if r["capital"] != r["country"]
                and r["capital"] not in avoid]
    add("capital", "capital:{country}", capitals, lambda r, o: (
        f"What is the capital of {the(r['country'])}?", f"The capital of {the(r['country'])} is {r['capital']}.",
        f"The capital of {the(r['country'])} is {o['capital']}."))
    add("element", "element:{element_lower}", [r | {"element_lower": r["element"].lower()}
                                               for r in read_table("elements", facts_dir)], lambda r, o: (
        f"What is the chemical symbol for {r['element_lower']}?",
        f"The chemical symbol for {r['element_lower']} is {r['symbol']}.",
        f"The chemical symbol for {r['element_lower']} is {o['symbol']}."))
    add("translation", "word:{english}", read_table("translations", facts_dir), lambda r, o: (
        f'What is the Spanish word for "{r["english"]}"?', f'The Spanish word for "{r["english"]}" is "{r["spanish"]}".',
        f'The Spanish word for "{r["english"]}" is "{o["spanish"]}".'))
    add("animal", "animal:{animal}", read_table("animals", facts_dir), lambda r, o: (
        f"Which class of animals does {a_an(r['animal'])} belong to?",
        f"{cap(a_an(r['animal']))} is {a_an(r['class'])}.",
        f"{cap(a_an(r['animal']))} is {a_an(rng.choice([c for c in ANIMAL_CLASSES if c != r['class']]))}."))
    sums = [{"a": a, "b": b} for a in range(2, 61) for b in range(a, 61)]
    add("arithmetic", "add:{a}:{b}", sums, lambda r, o: (
        f"What is {r['a']} plus {r['b']}?", f"{r['a']} plus {r['b']} is {r['a'] + r['b']}.",
        f"{r['a']} plus {r['b']} is {r['a'] + r['b'] + rng.choice((-10, -2, -1, 1, 2, 10))}."))
    return pairs


def assign_splits(pairs: Sequence[Pair], rng: random.Random) -> list[dict[str, str]]:
    """Whole groups shuffled and cut 80/10/10 within each (kind, category), as the SFT's are."""
    strata: dict[tuple[str, str], list[str]] = {}
    for p in pairs:
        groups = strata.setdefault((p.kind, p.category), [])
        if p.group not in groups:
            groups.append(p.group)
    split_of: dict[tuple[str, str], str] = {}
    for (kind, _), groups in strata.items():
        rng.shuffle(groups)
        start = 0
        for split, size in zip(SPLITS, split_sizes(len(groups), (0.8, 0.1, 0.1))):
            split_of.update({(kind, g): split for g in groups[start:start + size]})
            start += size
    counters: dict[tuple[str, str], int] = {}
    rows = []
    for p in pairs:
        key = (p.kind, p.category)
        counters[key] = counters.get(key, 0) + 1
        rows.append({"id": f"dpo-{p.kind}-{p.category}-{counters[key]:04d}", "prompt": p.prompt, "chosen": p.chosen,
                     "rejected": p.rejected, "kind": p.kind, "category": p.category,
                     "split": split_of[(p.kind, p.group)], "group": p.group})
    return rows


def build_dpo_rows(sft_rows: Sequence[dict] | None = None) -> list[dict[str, str]]:
    """All preference rows with their splits, in a fixed order."""
    sft_rows = build_rows(with_group=True) if sft_rows is None else sft_rows
    rng = random.Random(SEED)
    pairs = risky_pairs(sft_rows, rng) + harmful_pairs(sft_rows, rng) + fact_pairs(sft_rows, rng)
    return assign_splits(pairs, rng)


def validate_dpo(rows: Sequence[dict], sft_rows: Sequence[dict], refusal_dir: Path = REFUSAL_DIR,
                 facts_dir: Path = FACTS_DIR) -> None:
    """Raise ValueError if the preference data overlaps the SFT data or the refusal study, names a held-out city,
    lets a group or prompt cross its own splits, or pairs a refusal with the wrong side."""
    problems = []
    prompts = [norm(r["prompt"]) for r in rows]
    sft_prompts = {norm(r["prompt"]) for r in sft_rows}
    study = {norm(ln) for f in REFUSAL_STUDY_FILES for ln in read_lines(refusal_dir / f)}
    heldout_groups = {r["group"] for r in sft_rows if r["split"] != "train"}
    for what, clash in (("SFT prompts", sorted(set(prompts) & sft_prompts)),
                        ("refusal-study instructions", sorted(set(prompts) & study)),
                        ("groups of the SFT's val or test split", sorted({r["group"] for r in rows} & heldout_groups)),
                        ("repeated prompts", sorted({p for p in prompts if prompts.count(p) > 1}))):
        if clash:
            problems.append(f"{len(clash)} {what} ({clash[:3]})")
    split_of: dict[str, set[str]] = {}
    for r in rows:
        split_of.setdefault(r["group"], set()).add(r["split"])
    crossing = sorted(g for g, splits in split_of.items() if len(splits) > 1)
    if crossing:
        problems.append(f"{len(crossing)} groups in more than one split ({crossing[:3]})")
    cities = re.compile(r"\b(" + "|".join(map(re.escape, sorted(heldout_cities(sft_rows, facts_dir)))) + r")\b")
    named = sorted({r["id"] for r in rows if cities.search(" ".join((r["prompt"], r["chosen"], r["rejected"])))})
    if named:
        problems.append(f"{len(named)} rows naming a held-out city ({named[:3]})")
    phrases = load_refusal_phrases(refusal_dir / "refusal_phrases.txt")
    wrong = [r["id"] for r in rows if is_refusal(r["chosen"], phrases) != (r["kind"] == "harmful")
             or is_refusal(r["rejected"], phrases) != (r["kind"] == "risky_harmless")]
    if wrong:
        problems.append(f"{len(wrong)} rows whose refusal is on the wrong side ({wrong[:3]})")
    if problems:
        raise ValueError("The DPO data is not disjoint from what it must not touch: " + "; ".join(problems) + ".")


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Write {train,val,test}.jsonl to --out (default assets/demo/dpo); returns the row count per split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder for the jsonl files")
    args = parser.parse_args(argv)
    sft_rows = build_rows(with_group=True)
    rows = build_dpo_rows(sft_rows)
    validate_dpo(rows, sft_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        random.Random(SEED).shuffle(part)
        write_jsonl(args.out / f"{split}.jsonl", part)
        counts[split] = len(part)
    return counts


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
