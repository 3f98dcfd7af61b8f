"""The studies' shared command line (analyses/cli.py): options typed from a Config, errors as exit code 2."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest

from analyses import STUDY_NAMES, cli
from analyses.study import Study, setting
from steering.errors import InvalidInputError


@dataclass(frozen=True)
class Settings:
    name: str = setting("cities", "which set", choices=("cities", "animals"))
    flag: bool = setting(True, "whether to compare")
    alphas: tuple[float, ...] = setting((1.0, 4.0), "strengths")
    positions: tuple[int, ...] = setting((), "offsets")
    n_test: int | None = setting(None, "per side")
    rate: float = setting(0.5, "a share: 20% of the norm")


@dataclass
class Result:
    table: pd.DataFrame
    note: str = ""


def toy_study(calls: list) -> Study:
    def run(pair, config, *, data=None, progress=None):
        calls.append(config)
        return Result(pd.DataFrame({"x": [len(calls)]}), config.name)

    return Study(name="toy", title="Toy", about="A toy study.", version="toy@1", Config=Settings, Result=Result,
                 run=run, charts=lambda r: {}, headline=lambda r: {"x/base": int(r.table["x"][0])},
                 default_data=lambda pair, config: None, data_hash=lambda data: "")


def parse(*argv: str) -> Settings:
    parser = cli.study_parser(toy_study([]))
    return cli.config_from_args(parser.parse_args(["--out", "x", *argv]), Settings)


def test_defaults_come_from_the_config():
    assert parse() == Settings()


def test_each_option_is_typed_from_its_field():
    got = parse("--no-flag", "--alphas", "2", "0.5", "--positions=-2,-1", "--n-test", "7", "--rate", "0.25",
                "--name", "animals")
    assert got == Settings(name="animals", flag=False, alphas=(2.0, 0.5), positions=(-2, -1), n_test=7, rate=0.25)
    assert parse("--alphas", "1,3", "5").alphas == (1.0, 3.0, 5.0)
    assert parse("--n-test", "all").n_test is None
    assert parse("--flag").flag is True


@pytest.mark.parametrize("argv", [["--name", "planets"], ["--rate", "fast"], ["--positions", "x"],
                                  ["--flag", "False"]])
def test_bad_values_stop_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(*argv)
    assert stop.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_shows_the_field_help_and_defaults():
    text = " ".join(cli.study_parser(toy_study([])).format_help().split())
    assert "strengths (default: 1.0,4.0)" in text
    assert "per side (default: all)" in text
    assert "a share: 20% of the norm (default: 0.5)" in text  # a bare % must not break argparse
    assert "--no-cache" in text and "--base" in text and "--ship" in text


def test_no_cache_computes_again_and_replaces_the_stored_result(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "pair_from_args", lambda args, **kwargs: FakePair())
    calls = []
    study = toy_study(calls)
    for extra in ([], [], ["--no-cache"]):
        args = cli.study_parser(study).parse_args(["--out", str(tmp_path / "out"), *extra])
        assert cli.run_from_args(study, args, "python -m analyses toy") == 0
    assert len(calls) == 2
    assert json.loads((tmp_path / "out" / "headline.json").read_text()) == {"x/base": 2}
    assert pd.read_csv(tmp_path / "out" / "table.csv")["x"].tolist() == [2]


class FakePair:
    post = None

    def fingerprint(self, role: str) -> str:
        return f"toy/{role}"


def test_library_errors_become_a_message_and_exit_code_2(capsys):
    def body():
        raise InvalidInputError("Layer 99 is out of range.")

    assert cli.exit_code(body) == 2
    assert "error: Layer 99 is out of range." in capsys.readouterr().err
    assert cli.exit_code(lambda: None) == 0


@pytest.mark.parametrize("command", ["python -m analyses {study}", "python -m analyses.{study}"])
@pytest.mark.parametrize("study", STUDY_NAMES)
def test_every_study_prints_its_help(study, command):
    """`--help` as a user types it, both ways: a Config help text with a bare % once crashed it."""
    import subprocess
    import sys
    from pathlib import Path

    argv = [sys.executable, *command.format(study=study).split()[1:], "--help"]
    run = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert run.returncode == 0, run.stderr
    assert "--pair" in run.stdout and "study settings" in run.stdout
