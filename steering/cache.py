"""Where the project keeps what it computes once: converted models, merged adapters, directions."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PLAYGROUND_CACHE"


def cache_root() -> Path:
    """$PLAYGROUND_CACHE, else the user's cache directory (~/.cache/post-training-playground)."""
    root = os.environ.get(ENV_VAR) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "post-training-playground"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
