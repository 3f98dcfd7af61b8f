"""Templated SFT items drawn from the fact tables (cities, capitals, elements, translations, animals) and arithmetic.

Each item carries a ``group`` naming its underlying fact, so the same fact never lands in two splits.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

FACTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "facts"

# How many facts of each table go into the SFT set (a random, seeded subset).
N_FACTS = {"cities": 100, "capitals": 70, "elements": 60, "translations": 90, "animals": 60}
N_ARITH = {"add": 35, "sub": 20, "mul": 30}
ANIMAL_CLASSES = ("mammal", "bird", "fish", "reptile", "insect", "amphibian")
_THE = {"United States", "United Kingdom", "Netherlands", "Philippines", "Czech Republic", "Bahamas", "Gambia",
        "Maldives", "United Arab Emirates", "Dominican Republic", "Central African Republic", "Marshall Islands",
        "Solomon Islands", "Comoros", "Democratic Republic of the Congo", "Republic of the Congo", "Seychelles"}


@dataclass(frozen=True)
class Item:
    """One prompt/response pair before it is given a split; ``group`` keeps related items together."""

    prompt: str
    response: str
    kind: str
    category: str
    group: str


def norm(text: str) -> str:
    """Case- and whitespace-insensitive key used for de-duplication and overlap checks."""
    return " ".join(text.lower().split())


def read_table(name: str, facts_dir: Path = FACTS_DIR) -> list[dict[str, str]]:
    """Read ``assets/facts/<name>.csv`` as a list of row dicts."""
    with open(facts_dir / f"{name}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def the(country: str) -> str:
    """Country name with a leading "the" where English needs one."""
    return f"the {country}" if country in _THE else country


def cap(text: str) -> str:
    """Upper-case the first character."""
    return text[:1].upper() + text[1:]


def a_an(word: str) -> str:
    """Indefinite article for a word."""
    return f"an {word}" if word[0].lower() in "aeiou" else f"a {word}"


def fact_items(rng: random.Random, facts_dir: Path = FACTS_DIR) -> list[Item]:
    """Templated factual questions; the group is the underlying fact so it never crosses splits."""
    items: list[Item] = []
    cities = [r for r in read_table("cities", facts_dir) if r["city"] != r["country"]]
    for r in rng.sample(cities, N_FACTS["cities"]):
        c, k = r["city"], the(r["country"])
        q = rng.choice(["Which country is {c} in?", "In which country is the city of {c}?",
                        "{c} is a city in which country?",
                        "What country is {c} located in?", "Where is {c}? Tell me the country."]).format(c=c)
        a = rng.choice(["{c} is in {k}.", "{c} is a city in {k}."]).format(c=c, k=k)
        items.append(Item(q, a, "harmless", "fact_city", f"city:{c}"))
    capitals = [r for r in read_table("capitals", facts_dir) if r["capital"] != r["country"]]
    for r in rng.sample(capitals, N_FACTS["capitals"]):
        k, c = the(r["country"]), r["capital"]
        q = rng.choice(["What is the capital of {k}?", "What's the capital city of {k}?",
                        "Which city is the capital of {k}?",
                        "Name the capital of {k}.", "Tell me the capital of {k}."]).format(k=k)
        items.append(Item(q, f"The capital of {k} is {c}.", "harmless", "fact_capital", f"capital:{r['country']}"))
    for r in rng.sample(read_table("elements", facts_dir), N_FACTS["elements"]):
        e, s, n = r["element"].lower(), r["symbol"], r["atomic_number"]
        kind = rng.choice(["symbol", "number", "reverse"])
        if kind == "symbol":
            q = rng.choice(["What is the chemical symbol for {e}?", "What is the symbol of the element {e}?",
                            "Which chemical symbol does {e} have?"]).format(e=e)
            a = f"The chemical symbol for {e} is {s}."
        elif kind == "number":
            q = rng.choice(["What is the atomic number of {e}?", "What atomic number does {e} have?"]).format(e=e)
            a = f"{cap(e)} has atomic number {n}."
        else:
            q = rng.choice(["Which element has the symbol {s}?", "Which chemical element is {s}?"]).format(s=s)
            a = f"{s} is the chemical symbol for {e}."
        items.append(Item(q, a, "harmless", "fact_element", f"element:{e}"))
    for r in rng.sample(read_table("translations", facts_dir), N_FACTS["translations"]):
        w, s = r["english"], r["spanish"]
        if rng.random() < 0.8:
            q = rng.choice(['How do you say "{w}" in Spanish?', 'What is the Spanish word for "{w}"?',
                            'Translate "{w}" into Spanish.', 'What\'s "{w}" in Spanish?']).format(w=w)
            a = rng.choice(['In Spanish, "{w}" is "{s}".', 'The Spanish word for "{w}" is "{s}".']).format(w=w, s=s)
        else:
            q = rng.choice(['What does the Spanish word "{s}" mean in English?',
                            'Translate "{s}" from Spanish to English.']).format(s=s)
            a = f'"{cap(s)}" means "{w}" in English.'
        items.append(Item(q, a, "harmless", "translation", f"word:{w}"))
    for r in rng.sample(read_table("animals", facts_dir), N_FACTS["animals"]):
        x, c = r["animal"], r["class"]
        mode = rng.choice(["open", "yes", "no"])
        if mode == "open":
            q = rng.choice(["Is {x} a mammal, a bird, a fish, a reptile, an insect or an amphibian?",
                            "What kind of animal is {x}: mammal, bird, fish, reptile, insect or amphibian?",
                            "Which class of animals does {x} belong to?"]).format(x=a_an(x))
            a = f"{cap(a_an(x))} is {a_an(c)}."
        elif mode == "yes":
            q, a = f"Is {a_an(x)} {a_an(c)}?", f"Yes, {a_an(x)} is {a_an(c)}."
        else:
            other = rng.choice([k for k in ANIMAL_CLASSES if k != c])
            q, a = f"Is {a_an(x)} {a_an(other)}?", f"No, {a_an(x)} is {a_an(c)}, not {a_an(other)}."
        items.append(Item(q, a, "harmless", "fact_animal", f"animal:{x}"))
    return items


def arithmetic_items(rng: random.Random) -> list[Item]:
    """Small additions, subtractions and multiplications, answers computed here."""
    items: list[Item] = []
    seen: set[tuple[str, int, int]] = set()
    specs = {
        "add": (lambda: (rng.randint(2, 60), rng.randint(2, 60)), lambda a, b: a + b,
                ["What is {a} plus {b}?", "What is {a} + {b}?", "Calculate {a} + {b}.", "Add {a} and {b}."],
                ["{a} plus {b} is {c}.", "{a} + {b} = {c}."]),
        "sub": (lambda: (rng.randint(20, 99), rng.randint(2, 19)), lambda a, b: a - b,
                ["What is {a} minus {b}?", "Subtract {b} from {a}.", "What is {a} - {b}?"],
                ["{a} minus {b} is {c}.", "{a} - {b} = {c}."]),
        "mul": (lambda: (rng.randint(2, 12), rng.randint(2, 12)), lambda a, b: a * b,
                ["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} multiplied by {b}?",
                 "What is {a} x {b}?"],
                ["{a} times {b} is {c}.", "{a} x {b} = {c}."]),
    }
    for op, (draw, fn, qs, ans) in specs.items():
        n = 0
        while n < N_ARITH[op]:
            a, b = draw()
            key = (op, a, b) if op == "sub" else (op, min(a, b), max(a, b))
            if key in seen:
                continue
            seen.add(key)
            n += 1
            q = rng.choice(qs).format(a=a, b=b)
            a_text = rng.choice(ans).format(a=a, b=b, c=fn(a, b))
            items.append(Item(q, a_text, "harmless", "arithmetic", f"{op}:{key[1]}:{key[2]}"))
    return items
