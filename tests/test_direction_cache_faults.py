"""Fault injection on the direction cache (steering/direction_cache.py), as tests/test_store_faults.py does for the
result store: a flipped bit, a truncated or deleted file, a sidecar of an older cache or altered, saves racing each
other and a reader, saves killed at each step. A read is the direction that was saved or a miss, reported in one
line and computed again; never a wrong direction, never an error on every use; killed saves' temporaries are swept."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store_faults import _damage

from steering.direction_cache import DirectionCache
from steering.directions import Direction, DirectionInfo

FORK = multiprocessing.get_context("fork")


def _direction(seed: int = 0) -> Direction:
    g = torch.Generator().manual_seed(seed)
    info = DirectionInfo(model="m", dataset=f"d{seed}", dataset_hash="h", created_at="2026-12-01T00:00:00+00:00")
    return Direction(torch.randn(3, 8, generator=g), info, torch.rand(3, generator=g) + 1)


def _cache(root: Path) -> tuple[DirectionCache, list[str]]:
    notices: list[str] = []
    cache = DirectionCache(root, notice=notices.append)
    cache.put("k", _direction())
    return cache, notices


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_a_damaged_cached_direction_is_a_miss_and_recomputed(tmp_path, suffix, how):
    cache, notices = _cache(tmp_path)
    _damage(cache.path("k").with_suffix(suffix), how)
    assert cache.entries() == [] and cache.get("k") is None
    assert len(notices) == 1 and "\n" not in notices[0] and "Computing it again" in notices[0]
    again = cache.get_or_compute("k", _direction)
    assert torch.equal(again.vectors, _direction().vectors) and len(cache.entries()) == 1
    assert torch.equal(cache.get("k").vectors, _direction().vectors) and len(notices) == 2


@pytest.mark.parametrize("sidecar", ["{not json", "{}", '{"format": "post-training-playground/direction@1"}',
                                     "older"])
def test_a_sidecar_that_is_not_this_caches_is_a_miss(tmp_path, sidecar):
    cache, notices = _cache(tmp_path)
    path = cache.path("k").with_suffix(".json")
    if sidecar == "older":  # written before the sidecar carried the hash
        sidecar = json.dumps({k: v for k, v in json.loads(path.read_text()).items() if "safetensors" not in k})
    path.write_text(sidecar)
    assert cache.entries() == [] and cache.get("k") is None and len(notices) == 1


def test_a_sidecar_whose_metadata_was_altered_is_a_miss(tmp_path):
    cache, notices = _cache(tmp_path)
    path = cache.path("k").with_suffix(".json")
    path.write_text(path.read_text().replace('"n_layers": 3', '"n_layers": 4'))
    assert cache.entries() == [] and cache.get("k") is None and len(notices) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".safetensors", ".json"]), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 7))
def test_any_flipped_bit_in_the_cache_is_a_miss_or_changes_nothing(tmp_path_factory, suffix, where, bit):
    root = tmp_path_factory.getbasetemp() / "cache-flips"
    cache = DirectionCache(root, notice=lambda m: None)
    if not cache.path("k").exists():
        cache.put("k", _direction())
    path = cache.path("k").with_suffix(suffix)
    data = path.read_bytes()
    at = int(where * len(data))
    path.write_bytes(data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1:])
    try:
        found = cache.get("k")
        assert found is None or (torch.equal(found.vectors, _direction().vectors) and found.info == _direction().info
                                 and torch.equal(found.resid_norms, _direction().resid_norms))
    finally:
        path.write_bytes(data)


def _putter(root: Path, seed: int, until: float) -> None:
    cache = DirectionCache(root)
    while time.monotonic() < until:
        cache.put("k", _direction(seed))


def test_puts_of_one_key_at_once_end_whole_and_a_reader_never_misses(tmp_path):
    cache, notices = _cache(tmp_path)
    until = time.monotonic() + 2.0
    putters = [FORK.Process(target=_putter, args=(tmp_path, seed, until)) for seed in (0, 1)]
    for putter in putters:
        putter.start()
    reads = 0
    while time.monotonic() < until:
        found = cache.get("k")
        assert found is not None and any(torch.equal(found.vectors, _direction(s).vectors) for s in (0, 1))
        assert found.info.dataset == {True: "d0", False: "d1"}[torch.equal(found.vectors, _direction(0).vectors)]
        reads += 1
    for putter in putters:
        putter.join()
        assert putter.exitcode == 0
    assert reads > 0 and notices == [] and len(cache.entries()) == 1


@pytest.mark.parametrize("step", range(3))  # the safetensors, the sidecar; 2: not killed
def test_a_killed_cache_save_is_a_miss_or_the_old_entry_and_its_temporaries_are_swept(tmp_path, step):
    cache, notices = _cache(tmp_path)

    def killed():
        count = [0]
        real = os.replace

        def dying(*args):
            count[0] += 1
            if count[0] > step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)

        os.replace = dying
        DirectionCache(tmp_path).put("k", _direction(1))
        os._exit(3)

    child = FORK.Process(target=killed)
    child.start(), child.join()
    found = cache.get("k")
    if step == 1:  # the new safetensors beside the old sidecar: a miss, never the old metadata on new vectors
        assert found is None and len(notices) == 1
    else:
        assert torch.equal(found.vectors, _direction(1 if step == 2 else 0).vectors)
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir()) == (step < 2)
    cache.put("other", _direction(2))  # the next save sweeps the killed one's temporaries
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
