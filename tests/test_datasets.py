"""The project's data: fact tables, the SFT set, the refusal-study sets and the contrast set (no network, fast)."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_posttrain() -> tuple:
    """Import steering/posttrain as a stand-alone package, so this test does not pay for torch in steering/__init__."""
    name = "_posttrain_data"
    if name not in sys.modules:
        pkg = ROOT / "steering" / "posttrain"
        spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.build_data"), importlib.import_module(f"{name}.data_harmful")


B, H = _load_posttrain()
FACTS = ROOT / "assets" / "facts"
POST = ROOT / "assets" / "posttrain"
REF = ROOT / "assets" / "refusal"
CONTRAST = ROOT / "assets" / "contrast"
SPLITS = ("train", "val", "test")
HARMFUL_CATEGORIES = {"weapons", "violence", "hacking", "fraud", "harassment", "drugs", "self_harm", "hate",
                      "privacy", "misinformation"}
# Capitals left out of cities.csv because the name is shared by another well-known city.
AMBIGUOUS_CAPITALS = {"San José", "Victoria", "St. John's", "Tripoli"}


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def table(name: str) -> list[dict[str, str]]:
    with open(FACTS / f"{name}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def phrases() -> list[str]:
    return [ln for ln in lines(REF / "refusal_phrases.txt") if not ln.startswith("#")]


def judged_refusal(text: str) -> bool:
    head = text.strip().lower()
    return any(head.startswith(p) for p in phrases())


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    out = []
    for split in SPLITS:
        for ln in (POST / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(ln)
            assert row["split"] == split
            out.append(row)
    return out


@pytest.mark.parametrize("name,columns,keys,minimum", [
    ("cities", ["city", "country"], ["city"], 300),
    ("capitals", ["country", "capital"], ["country"], 150),
    ("elements", ["element", "symbol", "atomic_number"], ["element", "symbol", "atomic_number"], 80),
    ("translations", ["english", "spanish"], ["english", "spanish"], 200),
    ("animals", ["animal", "class"], ["animal"], 100),
])
def test_fact_tables_parse(name: str, columns: list[str], keys: list[str], minimum: int) -> None:
    with open(FACTS / f"{name}.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == columns
    rows = table(name)
    assert len(rows) >= minimum
    for r in rows:
        assert all(r[c] and r[c] == r[c].strip() for c in columns), r
    for key in keys:
        dupes = [k for k, n in Counter(r[key] for r in rows).items() if n > 1]
        assert not dupes, f"{name}.{key} duplicates: {dupes}"


def test_fact_table_contents() -> None:
    elements = table("elements")
    assert sorted(int(r["atomic_number"]) for r in elements) == list(range(1, len(elements) + 1))
    symbols = {r["element"]: r["symbol"] for r in elements}
    assert {"Gold": "Au", "Iron": "Fe", "Sodium": "Na", "Oxygen": "O"}.items() <= symbols.items()
    for r in table("translations"):
        for word in (r["english"], r["spanish"]):
            assert word == word.lower() and " " not in word, r
    assert {r["class"] for r in table("animals")} == {"mammal", "bird", "fish", "reptile", "insect", "amphibian"}
    cities = {r["city"]: r["country"] for r in table("cities")}
    assert cities["Paris"] == "France" and cities["Tokyo"] == "Japan"
    capitals = table("capitals")
    assert {r["capital"] for r in capitals} - set(cities) == AMBIGUOUS_CAPITALS
    for r in capitals:
        if r["capital"] in cities:
            assert cities[r["capital"]] == r["country"], r
    assert {r["country"]: r["capital"] for r in capitals}["United States"] == "Washington, D.C."


def test_sft_counts(rows: list[dict[str, str]]) -> None:
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["harmless"] >= 600 and kinds["harmful"] >= 300 and kinds["risky_harmless"] >= 100
    assert set(kinds) == set(B.KINDS)
    by_cat = Counter((r["kind"], r["category"]) for r in rows)
    harmful = {c for k, c in by_cat if k == "harmful"}
    assert len(harmful) >= 10 and HARMFUL_CATEGORIES <= harmful
    assert all(by_cat[("harmful", c)] >= 20 for c in harmful)
    harmless = {c for k, c in by_cat if k == "harmless"}
    assert {"fact_city", "fact_capital", "fact_element", "translation", "fact_animal", "arithmetic", "definition",
            "explanation", "advice", "list", "writing"} <= harmless
    assert by_cat[("harmless", "definition")] >= 60
    assert len({c for k, c in by_cat if k == "risky_harmless"}) >= 5
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"id", "prompt", "response", "kind", "category", "split"}
        assert r["prompt"].strip() and r["response"].strip() and len(r["response"]) < 400


def test_split_ratios(rows: list[dict[str, str]]) -> None:
    for kind in B.KINDS:
        counts = Counter(r["split"] for r in rows if r["kind"] == kind)
        total = sum(counts.values())
        assert abs(counts["train"] / total - 0.8) < 0.05, (kind, counts)
        for split in ("val", "test"):
            assert abs(counts[split] / total - 0.1) < 0.04, (kind, counts)
    for cat in {r["category"] for r in rows if r["kind"] == "harmful"}:
        assert {r["split"] for r in rows if r["category"] == cat} == set(SPLITS)


def test_splits_disjoint(rows: list[dict[str, str]]) -> None:
    prompts = Counter(norm(r["prompt"]) for r in rows)
    assert max(prompts.values()) == 1
    split_of_group = defaultdict(set)
    for r in B.build_rows(with_group=True):
        split_of_group[(r["kind"], r["group"])].add(r["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    # Independent check for one templated table: a city's fact lives in one split.
    cities = sorted((r["city"] for r in table("cities")), key=len, reverse=True)
    split_of_city = defaultdict(set)
    for r in rows:
        if r["category"] == "fact_city":
            city = next(c for c in cities if r["response"].startswith(c + " is"))
            split_of_city[city].add(r["split"])
    assert split_of_city and all(len(s) == 1 for s in split_of_city.values())


def test_facts_and_arithmetic_are_correct(rows: list[dict[str, str]]) -> None:
    cities = {r["city"]: r["country"] for r in table("cities")}
    for r in rows:
        if r["category"] == "fact_city":
            city, country = r["response"].rstrip(".").split(" is ", 1)
            assert country.removeprefix("a city in ").removeprefix("in ").removeprefix("the ") == cities[city]
        if r["category"] == "arithmetic":
            a, b = map(int, re.findall(r"\d+", r["prompt"]))
            p = r["prompt"]
            if "from" in p:
                a, b = b, a
            if re.search(r"plus|\+|Add", p):
                want = a + b
            elif re.search(r"times| x |Multiply|multiplied", p):
                want = a * b
            else:
                want = a - b
            assert r["response"].rstrip(".").split()[-1] == str(want), r


def test_determinism_and_committed(tmp_path: Path) -> None:
    counts = B.main(out_dir=tmp_path / "a")
    B.main(out_dir=tmp_path / "b")
    assert sum(counts.values()) > 1000
    for name in [f"{s}.jsonl" for s in SPLITS] + ["refusal_splits.json"]:
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes()
        committed = REF / "splits.json" if name == "refusal_splits.json" else POST / name
        assert first == committed.read_bytes(), f"{committed} is stale: run python -m steering.posttrain.build_data"
    assert sum((POST / f"{s}.jsonl").stat().st_size for s in SPLITS) < 2_000_000


def test_cli_out_argument(tmp_path: Path) -> None:
    B.main(argv=["--out", str(tmp_path)])
    assert (tmp_path / "train.jsonl").read_bytes() == (POST / "train.jsonl").read_bytes()


def test_refusal_study_sets(rows: list[dict[str, str]]) -> None:
    harmful, harmless = lines(REF / "harmful.txt"), lines(REF / "harmless.txt")
    assert len(harmful) >= 180 and len(harmless) >= 180
    for group in (harmful, harmless):
        assert len({norm(x) for x in group}) == len(group)
    assert not {norm(x) for x in harmful} & {norm(x) for x in harmless}
    sft = {norm(r["prompt"]) for r in rows}
    assert not sft & {norm(x) for x in harmful + harmless}
    splits = json.loads((REF / "splits.json").read_text(encoding="utf-8"))
    for name, group in (("harmful.txt", harmful), ("harmless.txt", harmless)):
        parts = splits[name]
        assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(len(group)))
        assert abs(len(parts["train"]) / len(group) - 0.6) < 0.03
        assert abs(len(parts["test"]) / len(group) - 0.2) < 0.03


def test_builder_rejects_overlap(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    for name in ("harmless.txt", "refusal_phrases.txt"):
        (tmp_path / name).write_text((REF / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "harmful.txt").write_text(rows[0]["prompt"].upper() + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="refusal-study"):
        B.validate(rows, refusal_dir=tmp_path)


def test_refusal_judge_agrees_with_kinds(rows: list[dict[str, str]]) -> None:
    header = (REF / "refusal_phrases.txt").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("#") and "beginning" in header
    assert len(phrases()) >= 20 and all(p == p.lower() for p in phrases())
    for opener in H.REFUSAL_OPENERS + H.SELF_HARM_OPENERS:
        assert judged_refusal(opener), opener
    for r in rows:
        assert judged_refusal(r["response"]) == (r["kind"] == "harmful"), r
        if r["kind"] != "harmful":  # stricter: safe even for a judge that matches anywhere in the reply
            assert not any(p in r["response"].lower() for p in phrases()), r
    openers = Counter(r["response"].split(". ")[0] for r in rows if r["kind"] == "harmful")
    assert len(openers) >= 12


def test_contrast_sets() -> None:
    pos, neg = lines(CONTRAST / "positive.txt"), lines(CONTRAST / "negative.txt")
    assert len(pos) == len(neg) >= 60
    assert len(set(pos)) == len(pos) and len(set(neg)) == len(neg)
    assert all(p != n for p, n in zip(pos, neg))
