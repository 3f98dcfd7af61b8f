"""A result the command line computes (`python -m analyses <study>`, another process) is found by the page's path
(`store.run_cached` in this process) without computing again, for every study in the registry."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tiny import save_tiny_pair

from analyses import STUDY_NAMES, find_study
from analyses.cli import config_from_args, study_parser
from analyses.store import run_cached
from steering import load_pair

ROOT = Path(__file__).resolve().parent.parent
TRUE = [f"the cat is w{i} ." for i in range(12)]
FALSE = [f"the dog is w{i} ." for i in range(12)]
HARMFUL = [f"w{i} w{i + 1} the cat" for i in range(10)]
HARMLESS = [f"w{i + 40} w{i + 41} a dog" for i in range(10)]


def small_args(name: str, files: Path) -> list[str]:
    """Settings that make each study a few seconds on the tiny pair (its words are w0..w89, true, false...)."""
    if name == "truthfulness":
        csv = files / "statements.csv"
        csv.write_text("statement,label\n" + "".join(f"{s},1\n" for s in TRUE) + "".join(f"{s},0\n" for s in FALSE))
        return ["--statements", str(csv), "--n-shots", "2", "--n-steer", "4", "--n-calib", "4", "--alphas", "1",
                "--answers", "true", "false"]
    if name == "refusal":
        (files / "harmful.txt").write_text("\n".join(HARMFUL))
        (files / "harmless.txt").write_text("\n".join(HARMLESS))
        return ["--harmful", str(files / "harmful.txt"), "--harmless", str(files / "harmless.txt"),
                "--refusal-tokens", "w1", "w2", "--n-val", "2", "--n-test", "2", "--max-new-tokens", "3",
                "--positions=-2,-1", "--layer-step", "2"]
    if name == "knowledge":
        return ["--n-items", "1", "--n-screen", "40", "--top-k", "100000", "--min-gap", "1e-9",
                "--components", "resid", "--window", "2", "--n-samples", "1", "--no-cross-model"]
    if name == "diffing":
        return ["--k", "2", "--top-n", "3"]
    return ["--null-dims", "4", "--n-candidates", "3", "--n-random", "1", "--max-tokens", "40", "--n-questions", "4"]


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("cli-cache-pair"))


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_the_cli_result_is_found_by_the_page(name, tiny_sources, tmp_path, monkeypatch):
    base, post = tiny_sources
    argv = ["--base", str(base), "--post", str(post), "--out", str(tmp_path / "out"), *small_args(name, tmp_path)]
    env = {**os.environ, "PLAYGROUND_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "analyses", name, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "headline.json").exists()

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    record = find_study(name)
    args = study_parser(record).parse_args(argv)
    data = record.cli.data(args) if record.cli.data is not None else None

    def must_not_run(*args, **kwargs):
        raise AssertionError("the stored result was not found: the study ran again")

    found = run_cached(replace(record, run=must_not_run), load_pair(base=base, post=post),
                       config_from_args(args, record.Config), data=data)
    assert found.manifest["command"].startswith(f"python -m analyses {name} ")
    assert isinstance(found.result, record.Result)
