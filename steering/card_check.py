"""A steering card's files read back and checked as any upload is, before anything is built from them: the format
and its version, every file's sha256 against the manifest, the types and ranges of every field, the directions'
and reference means' shapes and finiteness. Each problem is one BadFileError naming the card and the field."""
from __future__ import annotations

import json
from dataclasses import fields, replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from .atomic import sha256
from .card import FIX, FORMAT, MANIFEST, CardSteering, SteeringCard
from .composition import MAX_STEERINGS, PositionRule
from .directions import Direction
from .errors import BadFileError, SteeringError
from .generation import ABLATION_HELP, DecodingSettings, SteeringSpec

ROLES = ("base", "post")


class _Problem(Exception):
    """One thing wrong with the card, in words; parse_card turns it into a BadFileError naming the card."""


def parse_card(files: dict[str, bytes], name: str) -> SteeringCard:
    try:
        return _parse(files, name)
    except _Problem as e:
        raise BadFileError(name, str(e), FIX) from None
    except BadFileError:
        raise
    except SteeringError as e:  # a direction, alpha or rule refused by its own check
        raise BadFileError(name, str(e), FIX) from None


def _parse(files: dict[str, bytes], name: str) -> SteeringCard:
    manifest = _manifest(files)
    _check_hashes(files, manifest)
    pair = _get(manifest, "pair", dict)
    fingerprints = _get(pair, "fingerprints", dict, "pair.fingerprints")
    if "base" not in fingerprints or set(fingerprints) - set(ROLES) or not all(
            isinstance(v, str) for v in fingerprints.values()):
        raise _Problem("pair.fingerprints must map 'base' (and 'post') to the models' fingerprints")
    load = _load_settings(_get(pair, "load", dict, "pair.load"))
    raw = _get(manifest, "steerings", list)
    if not 1 <= len(raw) <= MAX_STEERINGS:
        raise _Problem(f"it must hold 1 to {MAX_STEERINGS} steerings, not {len(raw)}")
    steerings = tuple(_steering(files, entry, i, name) for i, entry in enumerate(raw, start=1))
    shapes = {(s.spec.direction.n_layers, s.spec.direction.d_model) for s in steerings}
    if len(shapes) != 1:
        raise _Problem(f"its directions have different shapes ({sorted(shapes)})")
    shape, roles, loaded = next(iter(shapes)), set(fingerprints), {}
    references = _references(files, manifest.get("references"), shape, roles, loaded)
    steerings = tuple(replace(s, reference=_references(files, entry.get("reference"), shape, roles, loaded))
                      for s, entry in zip(steerings, raw))
    for i, s in enumerate(steerings, start=1):
        affine = s.spec.mode == "ablate" and s.spec.ablation == "affine"
        if affine and s.reference is None and references is None:
            raise _Problem(f"steering {i}'s affine ablation needs references (each model's mean residual): its "
                           "own reference file, or references.safetensors")
        if s.reference is not None and not affine:
            raise _Problem(f"steering {i} has reference means, but only an affine ablation uses them")
    prompts = _get(manifest, "prompts", list)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise _Problem("prompts must be a non-empty list of non-empty texts")
    generations = _get(manifest, "generations", list)
    for row in generations:
        if not (isinstance(row, dict) and {k: type(row.get(k)) for k in ("prompt", "model", "text", "steered")}
                == {"prompt": str, "model": str, "text": str, "steered": bool}):
            raise _Problem("each generation must be an object with prompt, model and text (texts) and steered "
                           "(true or false)")
    calibration = manifest.get("calibration")
    if calibration is not None and not isinstance(calibration, dict):
        raise _Problem("calibration must be a JSON object or null")
    return SteeringCard(dict(fingerprints), load, _get(pair, "model_type", str, "pair.model_type"), steerings,
                        tuple(prompts), _get(manifest, "chat", bool), _decoding(_get(manifest, "decoding", dict)),
                        tuple(generations), references, calibration, _get(manifest, "project_version", str),
                        _get(manifest, "created_at", str))


def _manifest(files: dict[str, bytes]) -> dict:
    if MANIFEST not in files:
        raise _Problem(f"it holds no {MANIFEST}, so it is not a steering card")
    try:
        manifest = json.loads(files[MANIFEST].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise _Problem(f"its {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise _Problem(f"its {MANIFEST} holds a JSON {type(manifest).__name__}, not an object")
    found = manifest.get("format")
    if found != FORMAT:
        if isinstance(found, str) and found.startswith(FORMAT.rpartition("@")[0] + "@"):
            raise _Problem(f"it is a steering card of format {found}, and this project reads {FORMAT}")
        raise _Problem(f"its manifest's format is {found!r}, not {FORMAT!r}, so it is not a steering card")
    return manifest


def _no_constant(word: str):
    raise ValueError(f"{word} is not a number JSON allows")


def _check_hashes(files: dict[str, bytes], manifest: dict) -> None:
    listed = _get(manifest, "files", dict)
    for path, digest in listed.items():
        if path not in files:
            raise _Problem(f"{path} is missing")
        if digest != sha256(files[path]):
            raise _Problem(f"{path} is not the file the manifest lists (its sha256 differs): it was altered or cut "
                           "short")


def _get(record: dict, key: str, kind: type, what: str | None = None):
    value = record.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Problem(f"{what or key} must be {_KINDS.get(kind, kind.__name__)}, not {value!r}"[:300])
    return value


_KINDS = {dict: "an object", list: "a list", str: "a text", bool: "true or false", int: "a whole number"}


def _load_settings(load: dict) -> dict:
    keys = ("name", "base", "post", "dtype", "quantization", "device")
    if set(load) != set(keys) or not all(v is None or isinstance(v, str) for v in load.values()):
        raise _Problem(f"pair.load must hold {', '.join(keys)}, each a text or null")
    return dict(load)


def _steering(files: dict[str, bytes], entry: object, i: int, name: str) -> CardSteering:
    if not isinstance(entry, dict):
        raise _Problem(f"steering {i} is not an object")
    path = _get(entry, "direction", str, f"steering {i}'s direction")
    if path not in files or not path.endswith(".safetensors"):
        raise _Problem(f"steering {i}'s direction file {path} is not in the card")
    direction = Direction.from_bytes(files[path], f"{name}/{path}")  # shape and finiteness checked there
    layers = _get(entry, "layers", list, f"steering {i}'s layers")
    if not layers or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
        raise _Problem(f"steering {i}'s layers must be a non-empty list of whole numbers")
    bad = [x for x in layers if not 0 <= x < direction.n_layers]
    if bad:
        raise _Problem(f"steering {i}'s layer {bad[0]} is out of range: its direction has layers 0.."
                       f"{direction.n_layers - 1}")
    mode, units, ablation = (_get(entry, k, str, f"steering {i}'s {k}") for k in ("mode", "units", "ablation"))
    if mode not in ("add", "ablate") or units not in ("resid", "raw") or ablation not in ABLATION_HELP:
        raise _Problem(f"steering {i}: mode must be add or ablate, units resid or raw, ablation "
                       f"{' or '.join(ABLATION_HELP)}, not {mode!r}, {units!r}, {ablation!r}")
    alpha = entry.get("alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise _Problem(f"steering {i}'s alpha must be a number, not {alpha!r}")
    read_from = entry.get("read_from")
    if read_from is not None and read_from not in ROLES:
        raise _Problem(f"steering {i}'s read_from must be base, post or null, not {read_from!r}")
    spec = SteeringSpec(direction, mode, tuple(layers), float(alpha), PositionRule.from_json(entry.get("positions"))
                        .positions(), units, ablation)
    return CardSteering(spec, read_from, _get(entry, "label", str, f"steering {i}'s label"))


def _references(files: dict[str, bytes], path: object, shape: tuple[int, int], roles: set[str],
                loaded: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """The reference means at `path` (None: none), checked; `loaded` keeps each file read once, so steerings that
    share a file share one set."""
    if path is None:
        return None
    if not isinstance(path, str) or path not in files:
        raise _Problem(f"references file {path!r} is not in the card"[:300])
    if path in loaded:
        return loaded[path]
    try:
        tensors = load_tensors(files[path])
    except (SafetensorError, ValueError, TypeError) as e:
        raise _Problem(f"{path} is not a safetensors file ({e})") from None
    if set(tensors) != roles:
        raise _Problem(f"{path} must hold one mean per model ({', '.join(sorted(roles))}), not "
                       f"{', '.join(sorted(tensors)) or 'none'}")
    for role, tensor in tensors.items():
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise _Problem(f"{path}: {role}'s mean has shape {list(tensor.shape)}, not {list(shape)} (layers x dims "
                           "of the directions)")
        if not bool(torch.isfinite(tensor).all()):
            raise _Problem(f"{path}: {role}'s mean has NaN or infinite values")
    loaded[path] = {role: t.float() for role, t in tensors.items()}
    return loaded[path]


def _decoding(raw: dict) -> DecodingSettings:
    names = {f.name: f.type for f in fields(DecodingSettings)}
    if set(raw) != set(names):
        raise _Problem(f"decoding must hold {', '.join(names)}")
    kinds = {"max_new_tokens": int, "greedy": bool, "seed": int, "temperature": (int, float), "top_p": (int, float),
             "unembedding": str}
    for key, kind in kinds.items():
        if not isinstance(raw[key], kind) or (kind is int and isinstance(raw[key], bool)):
            raise _Problem(f"decoding.{key} must be {_KINDS.get(kind, 'a number')}, not {raw[key]!r}")
    decoding = DecodingSettings(**raw)
    decoding.generate_kwargs()  # its ranges, as the page checks them
    return decoding
