"""The studies' shared command line (analyses/cli.py): options typed from a Config, errors as exit code 2."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from analyses import cli
from steering.errors import InvalidInputError


@dataclass(frozen=True)
class Settings:
    name: str = "cities"  # which set
    flag: bool = True  # whether to compare
    alphas: tuple[float, ...] = (1.0, 4.0)  # strengths
    positions: tuple[int, ...] = ()  # offsets
    n_test: int | None = None  # per side
    rate: float = 0.5


def parse(*argv: str) -> Settings:
    parser = cli.study_parser("prog", "doc", Settings, choices={"name": ("cities", "animals")})
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


def test_help_shows_the_field_comments_and_defaults():
    text = cli.study_parser("prog", "doc", Settings).format_help()
    assert "strengths (default: 1.0,4.0)" in text
    assert "per side (default: all)" in text
    assert "--no-cache" in text and "--base" in text


def test_library_errors_become_a_message_and_exit_code_2(capsys):
    def body():
        raise InvalidInputError("Layer 99 is out of range.")

    assert cli.exit_code(body) == 2
    assert "error: Layer 99 is out of range." in capsys.readouterr().err
    assert cli.exit_code(lambda: None) == 0


def test_no_cache_replaces_the_stored_result(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    calls = []
    parser = cli.study_parser("prog", "doc", Settings)
    stored = cli.result_cache(parser.parse_args(["--out", "x"]), "study").get_or_compute(
        "k", lambda: calls.append(1) or "first")
    found = cli.result_cache(parser.parse_args(["--out", "x"]), "study").get_or_compute(
        "k", lambda: calls.append(2) or "second")
    again = cli.result_cache(parser.parse_args(["--out", "x", "--no-cache"]), "study").get_or_compute(
        "k", lambda: calls.append(3) or "third")
    assert (stored, found, again, calls) == ("first", "first", "third", [1, 3])
    assert cli.ResultCache("study").get("k") == "third"


@pytest.mark.parametrize("study", ["truthfulness", "refusal", "knowledge", "confidence"])
def test_every_study_prints_its_help(study):
    """`python -m analyses.<study> --help` as a user types it: a Config help text with a bare % once crashed it."""
    import subprocess
    import sys
    from pathlib import Path

    run = subprocess.run([sys.executable, "-m", f"analyses.{study}", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], timeout=120)
    assert run.returncode == 0, run.stderr
    assert "--pair" in run.stdout and "study settings" in run.stdout
