"""What goes out (issue 27, section 5): the CSV files the CLI writes and the pages offer escape a text cell a
spreadsheet would run as a formula (OWASP, CSV injection), and leave numbers alone; the playground's reproduce
snippet is valid Python for any text, an emoji included."""
from __future__ import annotations

import ast
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from steering.directions import Direction, DirectionInfo

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class _Result:
    table: pd.DataFrame


DANGEROUS = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\ry", "plain", "it's =fine"]


def _read_back(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_exported_csv_escapes_formula_cells_but_not_numbers(tmp_path):
    from analyses.common import write_tables
    from analyses.csv_files import table_csv

    frame = pd.DataFrame({"text": DANGEROUS, "number": [-1.5, -2.0, 3.0, -0.25, 0.0, -7.0, 1.0, -1e-9],
                          "count": [-1, -2, 3, 4, 5, 6, 7, -8]})
    write_tables(_Result(frame), tmp_path)
    for text in ((tmp_path / "table.csv").read_bytes().decode(), table_csv(frame)):
        rows = _read_back(text)
        assert [r["text"] for r in rows] == ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "'\ry", "plain",
                                             "it's =fine"]
        assert [float(r["number"]) for r in rows] == frame["number"].tolist()
        assert [r["count"] for r in rows][:2] == ["-1", "-2"]
    assert frame["text"].tolist() == DANGEROUS  # the result itself is not changed


def test_every_csv_export_goes_through_the_escaping_writer():
    """The CLI's --out, the study pages' downloads and any later writer: no module but csv_files calls to_csv."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("analyses", "app_pages", "steering")
                 for p in (ROOT / folder).rglob("*.py")
                 if ".to_csv(" in p.read_text() and p.name != "csv_files.py"]
    assert offenders == []


def test_the_reproduce_snippet_compiles_and_round_trips_an_emoji():
    from steering.generation import DecodingSettings, SteeringSpec
    from steering.playground import ContrastPrompts, reproduce_snippet

    pair = SimpleNamespace(settings=SimpleNamespace(dtype="float32", quantization=None, device="cpu"),
                           spec=SimpleNamespace(name="./a | ./b", base="./a", post="./b"))
    prompts = ["Say hi 😀", "naïve \"quotes\" and \\ backslash", "tab\tand\nnewline"]
    contrast = ContrastPrompts("mine", ("good 👍",), ("bad 👎\u2028",))
    direction = Direction(torch.ones(3, 4), DirectionInfo("m", "d", "h"), torch.ones(3))
    code = reproduce_snippet(pair, prompts, False, contrast, "base", SteeringSpec(direction), DecodingSettings())
    code.encode("utf-8")  # no lone surrogates
    tree = ast.parse(code)
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.walk(tree)
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("positive", "negative")}
    assert values == {"positive": ["good 👍"], "negative": ["bad 👎\u2028"]}
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "compare")
    assert ast.literal_eval(call.args[2]) == prompts
