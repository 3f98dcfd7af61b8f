"""The steering card: one folder that holds everything needed to reproduce a steering, and reads back exactly.

    card = card_for(pair, composition, prompts, chat=True, decoding=decoding, table=comparison.table,
                    references=references, read_from=("post", None))   # references: one {role: mean} for
                                                     # every affine ablation, or one per steering (None: needs none)
    write_card(card, "cards/refusal-off")            # the folder; card_zip(card) is the same as a zip's bytes
    again = read_card("cards/refusal-off")           # every file checked, as any upload is
    table = reproduce(again, pair).table             # refused unless the pair's fingerprints are the card's

The folder:
    manifest.json                       what the card is (FORMAT), the models' fingerprints, every steering, the
                                        prompts, decoding, generations, an optional `calibration` (plain JSON), the
                                        project version, and the sha256 of every other file
    README.md                           the same for a reader (card_page.py)
    reproduce.py                        the script that loads the pair and prints the generations again
    directions/steering-N.safetensors   each steering's direction in the project's format (+ its .json sidecar)
    control_vectors/steering-N.gguf     llama.cpp's control vector, for an addition at every position from layer 2
    references/steering-N.safetensors   each model's mean residual [n_layers, d] that steering N's affine ablation
                                        sets its component to (steerings with the same means share the first file)
    references.safetensors              one such set for every affine ablation without its own (cards made with a
                                        shared set, as every card was before per-steering means)
Only JSON, Markdown, safetensors and GGUF files: no Python object serialisation.
"""
from __future__ import annotations

import io
import json
import tomllib
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pandas as pd
import torch
from safetensors.torch import save as save_tensors

from .atomic import sha256, write_atomic
from .composition import Composition, PositionRule
from .control_vector import write_control_vector
from .errors import BadFileError, IncompatibleCardError, InvalidInputError, SteeringError
from .generation import Comparison, DecodingSettings, SteeringSpec, compare
from .pairs import ModelPair
from .playground import PROJECT_ROOT, pair_load_settings

FORMAT = "post-training-playground/steering-card@1"
MANIFEST = "manifest.json"
MAX_FILES = 64
MAX_BYTES = 512 << 20  # a card of 16 directions of a large model is tens of MB; a zip bomb is stopped here
FIX = "Export the card again from the Playground (or steering.card.write_card) and open that folder or zip."


def project_version() -> str:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class CardSteering:
    """One steering of a card, and where its direction came from: the model it was read from ('base' or 'post';
    None for a loaded file) and a label in words. `reference`: role -> [n_layers, d], the means this steering's
    affine ablation sets its component to (None: it needs none, or it uses the card's shared `references`)."""

    spec: SteeringSpec
    read_from: str | None = None
    label: str = ""
    reference: dict[str, torch.Tensor] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SteeringCard:
    fingerprints: dict[str, str]  # role -> ModelPair.fingerprint(role) of the pair the card was made on
    load: dict  # playground.pair_load_settings: what loads that pair again
    model_type: str
    steerings: tuple[CardSteering, ...]
    prompts: tuple[str, ...]
    chat: bool
    decoding: DecodingSettings
    generations: tuple[dict, ...] = ()  # the comparison's rows: prompt, model, steered, text
    # role -> [n_layers, d]: the means of every affine ablation without its own (a card of one shared set)
    references: dict[str, torch.Tensor] | None = field(default=None, compare=False)
    calibration: dict | None = None  # a calibration's frontier and chosen setting, as plain JSON
    project_version: str = field(default_factory=project_version)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def composition(self) -> Composition:
        return Composition(tuple(s.spec for s in self.steerings))

    def reference_sets(self) -> tuple[dict[str, torch.Tensor] | None, ...]:
        """Each steering's reference means as it runs (compare()'s per-steering `references`): its own, else the
        card's shared set for an affine ablation, else None."""
        return tuple(s.reference if s.reference is not None else self.references if _needs_reference(s.spec)
                     else None for s in self.steerings)

    def check_pair(self, pair: ModelPair) -> None:
        """Refuse a pair whose models are not the card's, naming both."""
        loaded = {role: pair.fingerprint(role) for role in pair.models()}
        if loaded != self.fingerprints:
            raise IncompatibleCardError(
                f"This card was made on {_models(self.fingerprints)}, but the loaded pair is {_models(loaded)}: "
                "load the card's pair to reproduce it, or make a new card on this one.")


def _models(fingerprints: dict[str, str]) -> str:
    return " and ".join(f"{role} {fp}" for role, fp in sorted(fingerprints.items()))


def _needs_reference(spec: SteeringSpec) -> bool:
    return spec.mode == "ablate" and spec.ablation == "affine" and spec.reference is None


def card_for(pair: ModelPair, steering: Composition, prompts, *, chat: bool, decoding: DecodingSettings,
             table: pd.DataFrame | None = None,
             references: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor] | None] | None = None,
             read_from=None, labels=None, calibration: dict | None = None) -> SteeringCard:
    """The card of a steering run on `pair`: `table` is compare()'s table of that run (its generations), made with
    the same `references` (one {role: mean} for every affine ablation, or one per steering); `read_from[i]`/
    `labels[i]` say where steering i's direction came from."""
    n = len(steering.steerings)
    read_from, labels = tuple(read_from or (None,) * n), tuple(labels or ("",) * n)
    needs = [_needs_reference(s) for s in steering.steerings]
    shared, own = None, (None,) * n
    if references is not None and not isinstance(references, Mapping):
        if len(references) != n:
            raise InvalidInputError(f"Give one set of reference means per steering ({n}), not {len(references)}.")
        own = tuple(_means(pair, r) if need and r is not None else None for need, r in zip(needs, references))
    elif references and any(needs):
        shared = _means(pair, references)
    missing = [i for i, need in enumerate(needs, start=1) if need and own[i - 1] is None and shared is None]
    if missing:
        raise InvalidInputError(f"Steering {missing[0]} is an affine ablation: give its reference means "
                                "(steering.playground.mean_residuals) to put it on a card.")
    rows = tuple(table[["prompt", "model", "steered", "text"]].to_dict(orient="records")) if table is not None else ()
    return SteeringCard(
        {role: pair.fingerprint(role) for role in pair.models()}, pair_load_settings(pair), pair.base.config.model_type,
        tuple(CardSteering(s, r, label, ref) for s, r, label, ref in zip(steering.steerings, read_from, labels, own)),
        tuple(prompts), chat, decoding, tuple({**r, "steered": bool(r["steered"])} for r in rows), shared,
        _plain_json(calibration, "calibration"))


def _means(pair: ModelPair, references: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each of the pair's models' reference mean, as the card stores it (float32, on the CPU)."""
    missing = [role for role in pair.models() if role not in references]
    if missing:
        raise InvalidInputError(f"The reference means hold no mean for the {missing[0]} model.")
    return {role: references[role].detach().float().cpu() for role in pair.models()}


def _plain_json(value, what: str):
    try:
        return None if value is None else json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise SteeringError(f"The card's {what} must be plain JSON (numbers, text, lists, objects): {e}.") from None


def reproduce(card: SteeringCard, pair: ModelPair, **kwargs) -> Comparison:
    """The card's generations again, on its own pair only (kwargs: compare()'s progress and on_text)."""
    card.check_pair(pair)
    return compare(pair.models(), pair.tokenizer, list(card.prompts), card.composition(), decoding=card.decoding,
                   chat=card.chat, references=card.reference_sets(), **kwargs)


# writing ---------------------------------------------------------------------------------------------------------

def card_files(card: SteeringCard) -> dict[str, bytes]:
    """Every file of the card, by its path in the folder."""
    from .card_page import card_markdown, reproduce_script

    files: dict[str, bytes] = {}
    entries = []
    reference_paths: dict[str, str] = {}  # sha256 of a reference file -> its path: equal means are written once
    for i, entry in enumerate(card.steerings, start=1):
        spec = entry.spec
        reference = None
        if entry.reference is not None:
            means = save_tensors({r: t.contiguous() for r, t in entry.reference.items()})
            reference = reference_paths.setdefault(sha256(means), f"references/steering-{i}.safetensors")
            files[reference] = means
        path = f"directions/steering-{i}.safetensors"
        data = spec.direction.to_bytes()
        files[path] = data
        files[path.replace(".safetensors", ".json")] = _json({**spec.direction.metadata(), "safetensors_size":
                                                              len(data), "safetensors_sha256": sha256(data)})
        gguf = _control_vector(spec, card.model_type)
        if gguf is not None:
            files[f"control_vectors/steering-{i}.gguf"] = gguf
        entries.append({"direction": path, "control_vector": f"control_vectors/steering-{i}.gguf" if gguf else None,
                        "mode": spec.mode, "layers": list(spec.layers), "alpha": spec.alpha, "units": spec.units,
                        "ablation": spec.ablation, "positions": PositionRule.of(spec.positions).to_json(),
                        "read_from": entry.read_from, "label": entry.label, "reference": reference,
                        "provenance": {k: spec.direction.metadata()[k] for k in PROVENANCE}})
    if card.references is not None:
        files["references.safetensors"] = save_tensors({r: t.contiguous() for r, t in card.references.items()})
    manifest = {
        "format": FORMAT, "project_version": card.project_version, "created_at": card.created_at,
        "pair": {"fingerprints": card.fingerprints, "load": card.load, "model_type": card.model_type},
        "steerings": entries, "references": "references.safetensors" if card.references is not None else None,
        "prompts": list(card.prompts), "chat": card.chat, "decoding": asdict(card.decoding),
        "generations": list(card.generations), "calibration": card.calibration,
    }
    files["README.md"] = card_markdown(card, manifest).encode()
    files["reproduce.py"] = reproduce_script(card.load).encode()
    files[MANIFEST] = _json({**manifest, "files": {p: sha256(d) for p, d in sorted(files.items())}})
    return files


PROVENANCE = ("model", "dataset", "dataset_hash", "method", "position", "hook_point", "created_at")


def _control_vector(spec: SteeringSpec, model_type: str) -> bytes | None:
    """llama.cpp's control vector where it reproduces the steering: an addition at every token, at layers it has a
    slot for (from resid_pre.2)."""
    if spec.mode != "add" or spec.positions != "all" or min(spec.layers) < 2:
        return None
    return write_control_vector(spec.direction.steering_vectors(list(spec.layers), spec.alpha, spec.units),
                                model_type)


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_card(card: SteeringCard, folder: str | Path) -> Path:
    """Write the card's folder (each file replaced whole; the manifest last, so a reader never sees a manifest
    whose files are not there yet)."""
    folder = Path(folder)
    files = card_files(card)
    for path, data in sorted(files.items(), key=lambda item: item[0] == MANIFEST):
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
    return folder


def card_zip(card: SteeringCard, top: str = "steering-card") -> bytes:
    """The card's folder as a zip (for a download button): every file under `top/`."""
    return zip_files(card_files(card), top)


def zip_files(files: dict[str, bytes], top: str = "") -> bytes:
    """A zip of {path: bytes}, each under `top/` when one is given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files.items()):
            archive.writestr(f"{top}/{path}" if top else path, data)
    return buffer.getvalue()


# reading ---------------------------------------------------------------------------------------------------------

def read_card(folder: str | Path) -> SteeringCard:
    """A card's folder, every file checked (card_check.py)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise BadFileError(folder, f"it holds no {MANIFEST}, so it is not a steering card", FIX)
    files, total = {}, 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if len(files) >= MAX_FILES or total > MAX_BYTES:
            raise BadFileError(folder, f"it holds more than {MAX_FILES} files or {MAX_BYTES >> 20} MiB", FIX)
        try:
            files[path.relative_to(folder).as_posix()] = data = path.read_bytes()
        except OSError as e:
            raise BadFileError(path, f"it cannot be read ({e.strerror or e})", FIX) from None
        total += len(data)
    return card_from_files(files, str(folder))


def read_card_zip(data: bytes, name: str = "card.zip") -> SteeringCard:
    """A card's zip (an upload), checked like the folder: only plain relative paths, bounded sizes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise BadFileError(name, f"it is not a zip file ({e})", FIX) from None
    if len(members) > MAX_FILES or sum(m.file_size for m in members) > MAX_BYTES:
        raise BadFileError(name, f"it holds more than {MAX_FILES} files or {MAX_BYTES >> 20} MiB", FIX)
    paths = [PurePosixPath(m.filename) for m in members]
    if any(p.is_absolute() or ".." in p.parts or "\\" in str(p) for p in paths):
        raise BadFileError(name, "it holds a path outside its folder", FIX)
    tops = {p.parts[0] for p in paths}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in paths)  # the folder zipped whole
    try:
        files = {str(PurePosixPath(*p.parts[1:]) if strip else p): archive.read(m) for p, m in zip(paths, members)}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as e:
        raise BadFileError(name, f"a file in it cannot be read ({e})", FIX) from None
    return card_from_files(files, name)


def card_from_files(files: dict[str, bytes], name: str) -> SteeringCard:
    from .card_check import parse_card

    return parse_card(files, name)

