"""Fault injection on the result store (analyses/store.py), on small synthetic results: a flipped bit, a truncated,
deleted or extra file, another key's entry, saves racing each other and a reader, saves killed at every step. Each
read is whole and equal to what was saved, or it is a miss (None, or StoredResultError that `run_cached` reports in
one line and computes again); never a wrong value, never a crash; and what killed saves leave is swept.
The direction cache gets the same treatment in tests/test_direction_cache_faults.py."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store import Config, FakePair, assert_same
from test_store import make_result as made_now
from test_store import make_study as toy_study

from analyses import store_entry
from analyses.store import ResultStore, StoredResultError, resolve, result_key, run_cached
from steering.atomic import STALE_SECONDS, tagged

FORK = multiprocessing.get_context("fork")  # children inherit the test's study and patches
FILES = ["manifest.json", "table.parquet", "tensors.safetensors", "directions.base.direction.safetensors",
         "directions.post.direction.safetensors"]


def make_result(config: Config, offset: float = 0.0):
    """test_store's result with its directions' dates fixed, so that two computations are equal."""
    result = made_now(config, offset)
    for role, d in result.directions.items():
        result.directions[role] = replace(d, info=replace(d.info, created_at="2026-12-01T00:00:00+00:00"))
    return result


def make_study(calls: list):
    def run(pair, config, *, data=None, progress=None):
        calls.append(config)
        return make_result(config)

    return replace(toy_study([]), run=run)


def _same(a, b) -> bool:
    try:
        assert_same(a, b)
        return True
    except AssertionError:
        return False


def _entry(root: Path):
    """A store with one entry written by a process that has ended (as the CLI leaves it)."""
    store, study, pair = ResultStore(root), make_study([]), FakePair()
    child = FORK.Process(target=run_cached, args=(study, pair, Config()), kwargs={"store": store})
    child.start(), child.join()
    stored = store.load(study, result_key(study, pair, Config(), "a|b"))
    return store, study, stored


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:])
    elif how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    else:
        path.unlink()


def _recomputed(store, study, link: Path) -> None:
    """The damaged entry is refused, then reported in one line and recomputed into a whole one."""
    with pytest.raises(StoredResultError):
        store.load(study, link.name)
    calls, notices = [], []
    again = run_cached(make_study(calls), FakePair(), Config(), store=store, notice=notices.append)
    assert len(calls) == 1 and len(notices) == 1 and "\n" not in notices[0]
    assert_same(make_result(Config()), again.result)
    assert_same(make_result(Config()), store.load(study, link.name).result)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_is_refused_and_recomputed(tmp_path, name, how):
    store, study, stored = _entry(tmp_path)
    _damage(resolve(stored.folder) / name, how)
    _recomputed(store, study, stored.folder)


def test_an_extra_file_is_refused_and_recomputed(tmp_path):
    store, study, stored = _entry(tmp_path)
    shutil.copy(resolve(stored.folder) / "directions.post.direction.safetensors",
                resolve(stored.folder) / "directions.extra.direction.safetensors")
    _recomputed(store, study, stored.folder)


@pytest.mark.parametrize("how", ["copied folder", "link"])
def test_another_keys_entry_is_not_served_as_this_keys(tmp_path, how):
    store, study, stored = _entry(tmp_path)
    other = run_cached(study, FakePair(), Config(layers=2), store=store).folder
    link = stored.folder
    link.unlink()
    if how == "copied folder":
        shutil.copytree(resolve(other), link)
    else:
        os.symlink(resolve(other).name, link)
    _recomputed(store, study, link)


def test_whatever_a_parser_raises_on_an_entry_is_reported(tmp_path, monkeypatch):
    import pyarrow as pa

    store, study, stored = _entry(tmp_path)

    def unreadable(*args, **kwargs):
        raise pa.ArrowNotImplementedError("Unsupported encoding")

    monkeypatch.setattr(store_entry.pd, "read_parquet", unreadable)
    with pytest.raises(StoredResultError, match="ArrowNotImplementedError"):
        store.load(study, stored.folder.name)


def test_an_entry_of_the_store_before_hashes_is_reported_and_recomputed(tmp_path):
    store, study, stored = _entry(tmp_path)
    manifest = resolve(stored.folder) / "manifest.json"
    old = json.loads(manifest.read_text())
    for field in ("files", "checksum"):
        old.pop(field)
    manifest.write_text(json.dumps({**old, "format_version": 1}))
    _recomputed(store, study, stored.folder)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(FILES), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused_or_changes_nothing(tmp_path_factory, name, where, bit):
    root = tmp_path_factory.getbasetemp() / "flips"
    if not root.exists():
        _entry(root)
    store, study = ResultStore(root), make_study([])
    link = next(p for p in (root / "toy").iterdir() if not p.name.startswith("."))
    path = resolve(link) / name
    data = path.read_bytes()
    at = int(where * len(data))
    path.write_bytes(data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1:])
    try:
        found = store.load(study, link.name)
        assert_same(make_result(Config()), found.result)  # only a flip that changes no value may pass
    except StoredResultError:
        pass
    finally:
        path.write_bytes(data)


# ---- saves racing each other and a reader ---------------------------------------------------------------------

def _saver(root: Path, key: str, i: int, until: float) -> None:
    store, study = ResultStore(root), make_study([])
    result = make_result(Config(), offset=float(i))
    while time.monotonic() < until:
        store.save(study, key, result, {"study": "toy", "version": "toy@1", "command": f"writer {i}"})


def test_saves_of_one_key_at_once_end_whole_and_a_reader_never_mixes_them(tmp_path):
    store, study, key = ResultStore(tmp_path), make_study([]), "0123456789abcdef0123"
    results = [make_result(Config(), offset=float(i)) for i in range(2)]
    until = time.monotonic() + 2.0
    savers = [FORK.Process(target=_saver, args=(tmp_path, key, i, until)) for i in range(2)]
    for saver in savers:
        saver.start()
    whole = misses = 0
    while time.monotonic() < until:
        try:
            found = store.load(study, key)
        except StoredResultError:
            found = None
        if found is None:
            misses += 1
            continue
        i = int(found.manifest["command"].split()[1])  # the manifest says whose tables these must be
        assert _same(results[i], found.result), f"a read mixed saves: manifest of writer {i}, other tables"
        whole += 1
    for saver in savers:
        saver.join()
        assert saver.exitcode == 0  # no OSError, FileNotFoundError or "no manifest.json" in either save
    assert whole > 0, (whole, misses)
    final = store.load(study, key)  # this read sweeps what the savers left
    assert any(_same(r, final.result) for r in results)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == sorted([key, resolve(final.folder).name])


# ---- saves killed at every step --------------------------------------------------------------------------------

def _killed_save(root: Path, step: int) -> None:
    """Save a new result for the entry's key, and die by SIGKILL (no cleanup runs) at write step `step`."""
    count = [0]

    def dying(real):
        def call(*args, **kwargs):
            count[0] += 1
            if count[0] > step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call

    Path.write_bytes, Path.write_text = dying(Path.write_bytes), dying(Path.write_text)
    os.symlink, os.replace, shutil.rmtree = dying(os.symlink), dying(os.replace), dying(shutil.rmtree)
    run_cached(make_study([]), FakePair(), Config(), store=ResultStore(root), refresh=True)
    os._exit(3)  # every step was passed


@pytest.mark.parametrize("existing", [True, False], ids=["over an entry", "new key"])
@pytest.mark.parametrize("step", range(9))  # 4 files, the manifest, the new link, its rename, removing the old
#                                            version (only over an entry); then no step is left and none is killed
def test_a_save_killed_at_any_step_leaves_no_partial_entry_and_its_leftovers_are_swept(tmp_path, step, existing):
    store, study = ResultStore(tmp_path), make_study([])
    link = _entry(tmp_path)[2].folder if existing else store.folder(study, result_key(study, FakePair(), Config(),
                                                                                      "a|b"))
    child = FORK.Process(target=_killed_save, args=(tmp_path, step))
    child.start(), child.join()
    killed = step < (8 if existing else 7)
    assert child.exitcode == (-signal.SIGKILL if killed else 3)
    found = store.load(study, link.name)  # the old entry or the new one, whole, or none; and the sweep runs
    if found is None:
        assert killed and not existing and list((tmp_path / "toy").iterdir()) == []
        return
    assert_same(make_result(Config()), found.result)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == sorted([link.name, resolve(link).name])


def test_leftovers_of_the_older_store_and_of_other_machines_are_swept(tmp_path):
    store, study, stored = _entry(tmp_path)
    parent, key = stored.folder.parent, stored.folder.name
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (parent / f"{key}.tmp{ended.stdout.strip()}").mkdir()  # before format 2: `<key>.tmp<pid>` of a killed save
    (parent / f"{key}.old").mkdir()
    young = tagged(stored.folder)  # a live writer's folder: kept
    young.mkdir()
    remote = parent / f".{key}.abcdef-1-12345678"  # another machine's: kept until it is old
    remote.mkdir()
    os.utime(parent / f"{key}.old", (time.time() - 2 * STALE_SECONDS,) * 2)
    store.load(study, key)
    assert sorted(p.name for p in parent.iterdir()) == sorted([key, resolve(stored.folder).name, young.name,
                                                               remote.name])
    os.utime(remote, (time.time() - 2 * STALE_SECONDS,) * 2)
    store.load(study, key)
    assert remote.exists() is False and young.exists()


def test_a_format_1_folder_is_given_its_hashes_without_changing_anything_else(tmp_path):
    from analyses.store_hashes import add_hashes

    store, study, stored = _entry(tmp_path)
    folder = shutil.copytree(resolve(stored.folder), tmp_path / "shipped" / "toy")
    old = {k: v for k, v in json.loads((folder / "manifest.json").read_text()).items()
           if k not in ("files", "checksum")}
    (folder / "manifest.json").write_text(json.dumps({**old, "format_version": 1}, indent=2) + "\n")
    before = (folder / "manifest.json").read_text()
    assert add_hashes(folder) and not add_hashes(folder)
    after = (folder / "manifest.json").read_text()
    assert after.startswith(before.replace('"format_version": 1', '"format_version": 2').rstrip()[:-1].rstrip())
    assert_same(make_result(Config()), store_entry.read_result(folder, study, stored.manifest["key"]).result)
