"""The model-diffing study: where, on a text, the post-trained model parts from the base, and what post-training
added to the residual stream on plain text.

1. Per-token view (divergence.py), for each text: KL both ways, total variation and the next token's rank under
   each model at every position (one pass per model), and at one position (Config.position, -1 = the peak of
   KL(post || base)) the logit lens of both models and the tokens whose probability rose and fell most.
2. Activation difference (difference.py): the mean post - base residual at every layer over the first k tokens of
   the plain-text set, a Direction the playground can steer with, read through the unembedding or a Patchscope,
   with its norm per layer. Its cosines with the other studies' stored directions are not part of the run (they
   depend on what the store holds, which the result's key does not cover): compare.py reads them where they are
   shown, on the page and in the CLI's output.

Both models must read the same token ids: the pair has one tokenizer, and a pair whose two folders hold different
vocabularies, or a text with an id past a model's vocabulary, is refused."""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from analyses.common import Progress, Steps
from steering.directions import Direction
from steering.errors import InvalidInputError
from steering.lens import check_position, token_ids

from . import difference as dif
from .config import Config, check
from .data import DiffingData, data_hash
from .divergence import diff_text


@dataclass
class Result:
    tokens: pd.DataFrame  # text, position, token, next_token, kl_post_base, kl_base_post, tv, rank_base, rank_post
    lens: pd.DataFrame  # text, position, layer, model, rank, token, token_id, prob (layer n_layers = the output)
    changes: pd.DataFrame  # text, position, change (rose / fell), rank, token, token_id, p_base, p_post, delta
    answer_layers: pd.DataFrame  # text, model, answer, first_top5_layer
    difference: Direction  # [n_layers, d_model] mean post - base over the plain texts' first k tokens
    difference_norms: pd.DataFrame  # layer, norm, resid_norm, relative (layer n_layers = the final norm's input)
    difference_tokens: pd.DataFrame  # layer, kind (promoted / demoted), rank, token, token_id, score
    texts: dict  # name -> the text as the models saw it
    positions: dict  # name -> the lens position
    reading: str
    k: int
    timings: dict


def check_inputs(pair, config: Config, data: DiffingData | None = None) -> dict:
    """What needs the pair (`check` judges the settings alone first): both models present and reading one
    vocabulary, each text's token ids, the lens position, k against the plain texts (data None: the built-in
    texts). Returns name -> [1, seq] token ids."""
    if data is None:
        from .data import default_data

        data = default_data(pair, config)
    if pair.post is None:
        raise InvalidInputError("The diffing study compares two models: load a pair with a post-trained model.")
    check_same_vocabulary(pair)
    if not data.texts:
        raise InvalidInputError("No text to compare the models on.")
    models = list(pair.models().values())
    ids = {name: token_ids(pair.tokenizer, text, models) for name, text in data.texts}
    if config.position != -1:
        for seq in (x.shape[-1] for x in ids.values()):
            check_position(config.position, seq)
    dif.first_tokens(pair.tokenizer, data.plain, config.k)  # k no longer than the shortest plain text
    return ids


def run(pair, config: Config, *, data: DiffingData | None = None, progress: Progress | None = None) -> Result:
    from .data import default_data

    data = default_data(pair, config) if data is None else data
    check(config)
    ids = check_inputs(pair, config, data)
    steps = Steps(progress, {**{f"text {name}": 2 for name in ids}, "difference": 1, "reading": 1})
    timings, positions = {}, {}
    parts: dict[str, list[pd.DataFrame]] = {"tokens": [], "lens": [], "changes": [], "answer_layers": []}
    for name, text_ids in ids.items():
        start = time.perf_counter()
        steps.stage(f"text {name}", f"both models on the {name} text")(0, 1)
        view = diff_text(pair.tokenizer, pair.models(), text_ids, config.position, config.top_n)
        positions[name] = view.position
        for key in parts:
            frame = getattr(view, key).assign(text=name)
            parts[key].append(frame if key in ("tokens", "answer_layers") else frame.assign(position=view.position))
        timings[f"text_{name}"] = time.perf_counter() - start
    start = time.perf_counter()
    direction, delta, norms = dif.activation_difference(
        pair, data.plain, config.k, config.batch_size, data_hash(data),
        steps.stage("difference", f"both models on the first {config.k} tokens of {len(data.plain)} plain texts"))
    timings["difference"] = time.perf_counter() - start
    start = time.perf_counter()
    steps.stage("reading", f"reading the difference ({config.reading})")(0, 1)
    resid_norms = torch.tensor(norms["resid_norm"].to_numpy(), dtype=torch.float32)
    read = dif.read_difference(pair, delta, resid_norms, config.reading, config.top_n)
    timings["reading"] = time.perf_counter() - start
    steps.done()
    tables = {key: _ordered(pd.concat(frames, ignore_index=True)) for key, frames in parts.items()}
    return Result(**tables, difference=direction, difference_norms=norms, difference_tokens=read,
                  texts=dict(data.texts), positions=positions, reading=config.reading, k=config.k,
                  timings={k: round(v, 2) for k, v in timings.items()})


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The text (and position) columns first."""
    first = [c for c in ("text", "position") if c in frame.columns]
    if "position" in first and "layer" not in frame.columns and "change" not in frame.columns:
        first = ["text"]  # the per-token table's own position column stays where it is
    return frame[first + [c for c in frame.columns if c not in first]]


def check_same_vocabulary(pair) -> None:
    """Refuse a pair whose two model folders hold different tokenizer vocabularies: the positions would not line
    up. Cheap: the tokenizer.json files are compared by hash, and parsed only when they differ."""
    folders = getattr(pair, "folders", {}) or {}
    if "base" in folders and "post" in folders:
        _check_vocabularies(Path(folders["base"]), Path(folders["post"]))


@functools.lru_cache(maxsize=8)
def _check_vocabularies(base: Path, post: Path) -> None:
    files = [folder / "tokenizer.json" for folder in (base, post)]
    if not all(f.is_file() for f in files):
        return  # nothing to compare (a slow tokenizer only): the id check on every text still applies
    raw = [f.read_bytes() for f in files]
    if hashlib.sha256(raw[0]).digest() == hashlib.sha256(raw[1]).digest():
        return
    vocab = [_vocabulary(json.loads(r)) for r in raw]
    if vocab[0] != vocab[1]:
        raise InvalidInputError("The two models of this pair have different tokenizers (their tokenizer.json "
                                "vocabularies differ): the same text would give different token positions, so "
                                "they cannot be compared token by token.")


def _vocabulary(tokenizer_json: dict) -> tuple:
    model = tokenizer_json.get("model") or {}
    vocab = model.get("vocab")
    pieces = tuple(sorted(vocab.items())) if isinstance(vocab, dict) else tuple(entry[0] for entry in vocab or [])
    added = tuple(sorted((t.get("id"), t.get("content")) for t in tokenizer_json.get("added_tokens") or []))
    return pieces, added
