"""What the four studies' command lines share: the pair options, one option per field of a study's Config, the
error exit, and writing the tables and charts.

    parser = study_parser("python -m analyses.knowledge", __doc__, Config)
    args = parser.parse_args(argv)
    config = config_from_args(args, Config)
    pair = pair_from_args(args)
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from steering import SteeringError

from .common import PrintProgress, ResultCache, write_charts, write_tables


def study_parser(prog: str, description: str, config_cls: type, *,
                 choices: Mapping[str, Sequence[str]] | None = None,
                 helps: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """A parser with --pair/--base/--post/--out/--no-cache and an option per Config field."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="demo", help="a registered pair name (default: demo)")
    parser.add_argument("--base", help="base model source (folder, .gguf, HF id in the cache) instead of --pair")
    parser.add_argument("--post", help="post-trained model source, with --base")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSV/JSON tables and HTML charts")
    parser.add_argument("--no-cache", action="store_true",
                        help="compute again even if a cached result exists (and replace it)")
    add_config_options(parser.add_argument_group("study settings"), config_cls, choices=choices, helps=helps)
    return parser


def add_config_options(parser: argparse._ActionsContainer, config_cls: type, *,
                       choices: Mapping[str, Sequence[str]] | None = None,
                       helps: Mapping[str, str] | None = None) -> None:
    """One option per dataclass field, typed from its default and annotation:

    bools are --x/--no-x; tuples take values separated by spaces or commas (--alphas 1 4, --positions=-2,-1);
    `int | None` fields take a number or 'all'."""
    hints = typing.get_type_hints(config_cls)
    comments = {**field_comments(config_cls), **(helps or {})}
    for f in fields(config_cls):
        default, hint = f.default, hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        described = "all" if default is None else ",".join(map(str, default)) if isinstance(default, tuple) \
            else default
        text = f"{comments.get(f.name, '')} (default: {described})".strip()
        kwargs: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}  # argparse %-formats help
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(nargs="*", type=_list_of(_element_type(hint)))
        elif _is_optional(hint):
            kwargs["type"] = _int_or_all
        else:
            kwargs["type"] = type(default)
        if choices and f.name in choices:
            kwargs["choices"] = list(choices[f.name])
        parser.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace, config_cls: type) -> Any:
    """The Config the parsed options describe (tuple options flattened back into tuples)."""
    values = {}
    for f in fields(config_cls):
        value = getattr(args, f.name)
        if isinstance(value, list):  # nargs="*": one list per token, a token may hold several comma-separated items
            value = tuple(item for token in value for item in token)
        values[f.name] = value
    return config_cls(**values)


def pair_from_args(args: argparse.Namespace):
    """The pair named by --pair, or the one given by --base (and --post)."""
    from steering import load_pair

    if args.post and not args.base:
        raise SystemExit("--post needs --base.")
    return load_pair(None if args.base else args.pair, base=args.base, post=args.post)


def result_cache(args: argparse.Namespace, study: str) -> ResultCache:
    """The study's on-disk cache; with --no-cache it computes again and replaces what it finds."""
    return ResultCache(study, refresh=args.no_cache)


def write_outputs(result: Any, charts: Mapping[str, Any], out: Path) -> None:
    write_tables(result, out)
    write_charts(dict(charts), out)


def exit_code(body: Callable[[], None]) -> int:
    """Run a CLI body; a SteeringError (bad model, data or setting) or an unreadable file becomes a one-line message
    and exit code 2."""
    try:
        body()
    except (SteeringError, OSError) as e:  # OSError: a file given on the command line cannot be read
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def field_comments(config_cls: type) -> dict[str, str]:
    """The comment after each field in the class's source, so --help says what the Config's author wrote."""
    try:
        source = inspect.getsource(config_cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, re.M)}


def run_study(args: argparse.Namespace, config_cls: type, study: str, run: Callable, charts: Callable,
              summary: Callable[[Any, float], str], alone_note: str) -> int:
    """The plain study CLI body: config and pair from the options, `run(pair, config, progress, cache=...)`, its
    tables and `charts(result)` into --out, then `summary(result, seconds)` on stdout. Returns the exit code."""
    def body() -> None:
        config = config_from_args(args, config_cls)
        pair = pair_from_args(args)
        if pair.post is None:
            print(alone_note)
        start = time.perf_counter()
        result = run(pair, config, PrintProgress(), cache=result_cache(args, study))
        write_outputs(result, charts(result), args.out)
        print(summary(result, time.perf_counter() - start))

    return exit_code(body)


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _element_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    return args[0] if args else str


def _list_of(kind: type) -> Callable[[str], list]:
    def parse(token: str) -> list:
        return [kind(item.strip()) for item in token.split(",") if item.strip()]

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _int_or_all(text: str) -> int | None:
    return None if text == "all" else int(text)
