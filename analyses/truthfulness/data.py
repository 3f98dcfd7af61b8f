"""The truthfulness study's data: a statement set, a DataFrame with columns statement, label (1 true, 0 false), fact
and split (train/test), built in (analyses.statements) or the user's own CSV (statement,label).

An uploaded set carries its name in `frame.attrs["source"]`, which the result reports as its dataset."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyses.contrast_sets import decode_upload
from analyses.statements import parse_statement_csv, statement_set
from steering.errors import InvalidInputError
from steering.tokens import dataset_hash

REQUIRED = ("statement", "label", "fact", "split")


def default_data(pair, config) -> pd.DataFrame:
    """The built-in statement set the config names; with the paper method it names the built-in sets the
    direction comes from in `attrs["train_sets"]`, so that the data hash covers them too."""
    frame = statement_set(config.dataset)
    if getattr(config, "method", "single_set") == "paper":
        frame.attrs["train_sets"] = tuple(config.train_sets)
    return frame


def _frame_parts(frame: pd.DataFrame) -> list[list[str]]:
    return [list(frame["statement"]), [str(v) for v in frame["label"]], [str(v) for v in frame["split"]],
            [str(v) for v in frame["fact"]]]


def data_hash(frame: pd.DataFrame) -> str:
    """What identifies a statement set: its statements, labels, splits and facts, in order (and an upload's name,
    which the result reports), and those of the built-in sets named in `attrs["train_sets"]`."""
    parts = _frame_parts(frame)
    source = frame.attrs.get("source")
    for name in frame.attrs.get("train_sets", ()):
        parts += [[f"train set {name}"], *_frame_parts(statement_set(name))]
    return dataset_hash(*parts, *([[str(source)]] if source else []))


def data_name(frame: pd.DataFrame, config) -> str:
    """The name a result gives its statements: the upload's, else the config's built-in set."""
    return str(frame.attrs.get("source") or config.dataset)


def check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"The statement set lacks the column(s) {', '.join(missing)}.")


def uploaded_statements(content: bytes, name: str) -> pd.DataFrame:
    """The user's CSV (statement,label) as a statement set; InvalidInputError names the bad line."""
    frame = parse_statement_csv(decode_upload(content, name), name)
    frame.attrs["source"] = f"upload:{name}"
    return frame


def statements_file(path: Path) -> pd.DataFrame:
    """A statement CSV given on the command line (`--statements FILE.csv`)."""
    return uploaded_statements(Path(path).read_bytes(), Path(path).name)


def balanced(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """n rows, half true and half false (all rows when n <= 0 or n is at least the frame's size)."""
    if n <= 0 or n >= len(frame):
        return frame
    parts = [g.sample(min(len(g), n // 2 + (label == 1) * (n % 2)), random_state=seed)
             for label, g in frame.groupby("label")]
    return pd.concat(parts).sort_index()
