"""One command line for every study in the registry:

    python -m analyses <study> --pair demo --out DIR [settings...]     # or: python -m analyses.<study> ...
    python -m analyses refusal --help                                  # every setting, with its help

It runs `store.run_cached` (so the page finds what the CLI computed, and the other way round) and writes into --out:
each table as CSV, the JSON values as summary.json, headline.json, every chart as HTML, and each Direction of the
result as a direction file the playground opens. `--ship` (demo pair only) also copies the result into
assets/demo/results/<study>/, the results the pages show at once. A library error or an unreadable file prints one
`error:` line and exits 2."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from steering import InvalidInputError, SteeringError

from .common import PrintProgress, write_charts, write_tables
from .study import Study, choices_of, config_fields, element_type, help_of


def study_parser(study: Study, prog: str | None = None,
                 parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """--pair/--base/--post/--out/--no-cache/--ship, an option per Config field, and the study's own options."""
    parser = parser or argparse.ArgumentParser(prog=prog or f"python -m analyses {study.name}")
    parser.description = f"{study.title}: {study.about}"
    parser.add_argument("--pair", default="demo", help="a registered pair name (default: demo)")
    parser.add_argument("--base", help="base model source (folder, .gguf, HF id in the cache) instead of --pair")
    parser.add_argument("--post", help="post-trained model source, with --base")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSV/JSON tables and HTML charts")
    parser.add_argument("--no-cache", action="store_true",
                        help="compute again even if a stored result exists (and replace it)")
    parser.add_argument("--ship", action="store_true",
                        help="demo pair only: also write the result into assets/demo/results/%s/, which the "
                             "page shows at once" % study.name)
    add_config_options(parser.add_argument_group("study settings"), study.Config)
    if study.cli.add_options is not None:
        study.cli.add_options(parser.add_argument_group("your own data"))
    return parser


def add_config_options(parser: argparse._ActionsContainer, config_cls: type) -> None:
    """One option per Config field, typed from its default and annotation, its help from the field's metadata:

    bools are --x/--no-x; tuples take values separated by spaces or commas (--alphas 1 4, --positions=-2,-1);
    `int | None` fields take a number or 'all'."""
    hints = typing.get_type_hints(config_cls)
    for f in config_fields(config_cls):
        default, hint = f.default, hints[f.name]
        described = "all" if default is None else ",".join(map(str, default)) if isinstance(default, tuple) \
            else default
        text = f"{help_of(f)} (default: {described})".strip()
        kwargs: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}  # argparse %-formats help
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(nargs="*", type=_list_of(element_type(hint)))
        elif _is_optional(hint):
            kwargs["type"] = _int_or_all
        else:
            kwargs["type"] = type(default)
        choices = choices_of(f)
        if choices is not None and not isinstance(default, tuple):
            kwargs["choices"] = choices
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def config_from_args(args: argparse.Namespace, config_cls: type) -> Any:
    """The Config the parsed options describe (tuple options flattened back into tuples)."""
    values = {}
    for f in fields(config_cls):
        value = getattr(args, f.name)
        if isinstance(value, list):  # nargs="*": one list per token, a token may hold several comma-separated items
            value = tuple(item for token in value for item in token)
        values[f.name] = value
    return config_cls(**values)


def pair_from_args(args: argparse.Namespace, base_only: bool = False):
    """The pair named by --pair, or the one given by --base (and --post); its base alone with base_only, or when
    --base comes without --post (the study then runs on that one model)."""
    from steering import load_pair

    if args.post and not args.base:
        raise InvalidInputError("--post needs --base: give --base SOURCE --post SOURCE, or --pair NAME.")
    return load_pair(None if args.base else args.pair, base=args.base, post=args.post,
                     base_only=base_only or bool(args.base and not args.post))


def exit_code(body: Callable[[], None]) -> int:
    """Run a CLI body; a SteeringError (bad model, data or setting) or an unreadable file becomes a one-line message
    and exit code 2."""
    try:
        body()
    except (SteeringError, OSError) as e:  # OSError: a file given on the command line cannot be read
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line, as the README promises
        return 2
    return 0


def write_outputs(study: Study, stored, out: Path) -> list[Path]:
    """Tables, summary, headline, charts and direction files of a stored result into `out`."""
    result = stored.result
    written = write_tables(result, out)
    headline = out / "headline.json"
    headline.write_text(json.dumps(dict(study.headline(result)), indent=2) + "\n")
    written += [headline, *write_charts(dict(study.charts(result)), out)]
    from .store import named_directions

    written += [direction.save(out / name) for name, direction in named_directions(study, result)]
    return written


def headline_text(headline: dict) -> str:
    width = max((len(k) for k in headline), default=0)
    return "\n".join(f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}"
                     for k, v in headline.items())


def run_from_args(study: Study, args: argparse.Namespace, command: str) -> int:
    from .store import SHIPPED_ROOT, run_cached, ship

    def body() -> None:
        config = config_from_args(args, study.Config)
        study.check(config)  # a bad setting is refused before the pair is loaded (issue 27)
        data = study.cli.data(args) if study.cli.data is not None else None
        study.check(config, data=data)
        if args.ship and (args.base or args.pair != "demo" or data is not None):
            raise InvalidInputError("--ship is for the demo pair on the built-in data only.")
        pair = pair_from_args(args, base_only=study.base_only)
        if pair.post is None and not study.base_only:
            print("Note: this pair has no post-trained model; the study runs on the base model alone.")
        study.check(config, pair, data)  # what needs the pair (its depth, its vocabulary), as the page checks it
        start = time.perf_counter()
        stored = run_cached(study, pair, config, data=data, progress=PrintProgress(), refresh=args.no_cache,
                            command=command)
        elapsed = time.perf_counter() - start
        write_outputs(study, stored, args.out)
        if study.cli.write is not None:
            study.cli.write(args, pair, stored.result, args.out)
        if args.ship:
            print(f"shipped: {ship(study, stored)} (relative: {SHIPPED_ROOT.name}/{study.name})")
        print(f"{study.title}, headline:\n{headline_text(dict(study.headline(stored.result)))}")
        print(f"stored in {stored.folder}; computed in {stored.manifest['seconds']} s on {stored.manifest['created_at']}"
              f"; this call {elapsed:.1f} s; tables and charts in {args.out}")

    return exit_code(body)


def study_main(name: str, argv: list[str] | None = None) -> int:
    """`python -m analyses.<name>`: the same command as `python -m analyses <name>`."""
    from . import find_record

    argv = sys.argv[1:] if argv is None else argv
    record = find_record(name)
    args = study_parser(record, f"python -m analyses.{name}").parse_args(argv)
    return run_from_args(record, args, shlex.join(["python", "-m", "analyses", name, *argv]))


def main(argv: list[str] | None = None) -> int:
    """`python -m analyses <study> ...`: one sub-command per study of the registry."""
    from . import RECORDS

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m analyses",
                                     description="Run one study of the paper on a model pair.")
    sub = parser.add_subparsers(dest="study", required=True, metavar="STUDY")
    records = {s.name: s for s in RECORDS}
    for s in records.values():
        study_parser(s, parser=sub.add_parser(s.name, help=s.title.replace("%", "%%"), prog=f"python -m analyses {s.name}"))
    args = parser.parse_args(argv)
    return run_from_args(records[args.study], args, shlex.join(["python", "-m", "analyses", *argv]))


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _list_of(kind: type) -> Callable[[str], list]:
    def parse(token: str) -> list:
        return [kind(item.strip()) for item in token.split(",") if item.strip()]

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _int_or_all(text: str) -> int | None:
    return None if text == "all" else int(text)
