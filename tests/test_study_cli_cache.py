"""A study run from its command line (`python -m analyses.<study>`) leaves a cached result the page can load: the
pickle must name the importable module's Result, not __main__'s."""
import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import save_tiny_pair

ROOT = Path(__file__).resolve().parent.parent
SMALL = {
    "knowledge": ["--n-items", "1", "--n-screen", "40", "--top-k", "100000", "--min-gap", "1e-9",
                  "--components", "resid", "--window", "2", "--n-samples", "1", "--no-cross-model"],
    "confidence": ["--null-dims", "4", "--n-candidates", "3", "--n-random", "1", "--max-tokens", "40",
                   "--n-questions", "4"],
}


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("cli-cache-pair"))


@pytest.mark.parametrize("study", sorted(SMALL))
def test_the_cli_result_is_found_by_the_page(study, tiny_sources, tmp_path):
    base, post = tiny_sources
    env = {**os.environ, "PLAYGROUND_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", f"analyses.{study}", "--base", str(base), "--post", str(post),
                           "--out", str(tmp_path / "out"), *SMALL[study]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    stored = list((tmp_path / "cache" / "results" / study).glob("*.pkl"))
    assert len(stored) == 1
    result = pickle.loads(stored[0].read_bytes())  # fails with "Can't get attribute 'Result' on __main__"
    assert type(result) is importlib.import_module(f"analyses.{study}").Result
