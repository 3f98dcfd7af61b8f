"""What the pages call the two models: "Base" and "Post-trained", or, where two stages of the demo road are loaded
('demo@step108..dpo', 'demo@step36'), the stages' own names, so a page never calls step108 "base".

The studies label their tables and charts with the roles ("base", "post") or the plain names; `named_chart`,
`named_table` and `named_columns` rename them for a road pair, the one place that does."""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

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


def _short(names: dict[str, str]) -> dict[str, str]:
    """The names in a chart's cells, legends and arrows: a road stage without '(as base)'."""
    return {role: name.removesuffix(" (as base)") for role, name in names.items()}


def _value_names(names: dict[str, str]) -> dict[str, str]:
    """Every way a study writes a model in a cell (its role key, the plain name, lower case) -> the pair's name."""
    short = _short(names)
    return {"base": short["base"], "Base": names["base"], "post": short["post"], "Post-trained": names["post"],
            "post-trained": short["post"], "post trained": short["post"]}


def _renamer(names: dict[str, str]):
    values, short = _value_names(names), _short(names)
    arrows = re.compile(r"(?<![\w-])(base|post)(→|->)(base|post)(?![\w-])")  # a transfer: "forward (base→post)"
    words = re.compile(r"(?<![\w-])(post-trained|Post-trained|base|Base)(?![\w-])")

    def cell(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value in values:
            return values[value]
        return arrows.sub(lambda m: f"{short[m.group(1)]}{m.group(2)}{short[m.group(3)]}", value)

    def title(text: str) -> str:  # "Post-trained − base, attention" -> "dpo − step108, attention"
        text = cell(text)
        return words.sub(lambda m: values.get(m.group(1), m.group(1)), text)

    return cell, title


# keys of a Vega-Lite spec whose strings name a field or a kind, never a model
_NAME_KEYS = {"field", "as", "groupby", "fields", "type", "$schema", "name", "op", "format", "timeUnit", "key",
              "aggregate", "mark", "bin", "stack", "orient", "align", "baseline", "fontWeight", "interpolate",
              "shape", "strokeCap", "scheme", "data", "param", "on", "clear", "encodings", "resolve", "theta"}
_TITLE_KEYS = {"title", "text", "subtitle"}


def named_chart(chart, pair_name: str):
    """The chart with the models named as the pair's stages (cells, scale domains, sort orders, filters, titles);
    the chart itself for a pair with the plain names."""
    names = role_names(pair_name)
    if names == PLAIN:
        return chart
    cell, title = _renamer(names)
    quoted = {f"'{old}'": f"'{new}'" for old, new in _value_names(names).items()}
    quoted |= {f'"{old}"': f'"{new}"' for old, new in _value_names(names).items()}

    def expression(text: str) -> str:
        for old, new in quoted.items():
            text = text.replace(old, new)
        return text

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: (v if k in _NAME_KEYS and not isinstance(v, (dict, list)) else
                        {n: [{c: cell(x) for c, x in row.items()} for row in rows] for n, rows in v.items()}
                        if k == "datasets" else walk(v, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str):
            if key in _TITLE_KEYS:
                return title(node)
            if key in ("filter", "test", "expr", "calculate", "labelExpr"):
                return expression(node)
            return cell(node)
        return node

    return type(chart).from_dict(walk(chart.to_dict()), validate=False)


def named_table(table: pd.DataFrame, pair_name: str) -> pd.DataFrame:
    """The table with its cells that name a model ('base', 'post', 'base→post') renamed for the pair."""
    names = role_names(pair_name)
    if names == PLAIN:
        return table
    cell, _ = _renamer(names)
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(cell)
    return out.rename(columns=lambda c: cell(c) if isinstance(c, str) else c)
