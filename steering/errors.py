"""Named errors of the library. Each says what went wrong and how to fix it, so pages can show it as is."""
from __future__ import annotations


class SteeringError(Exception):
    """Base class: every error the library raises on purpose."""


class UnknownPairError(SteeringError, KeyError):
    """A pair name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelNotAvailableError(SteeringError, FileNotFoundError):
    """A model source that is neither a local path nor in the Hugging Face cache."""


class InsufficientMemoryError(SteeringError, MemoryError):
    """The pair would not fit in the memory of the chosen device."""


class UnsupportedArchitectureError(SteeringError, ValueError):
    """A model whose internals the library does not know."""


class LayerOutOfRangeError(SteeringError, IndexError):
    """A layer index outside 0..n_layers-1."""


class IncompatibleDirectionError(SteeringError, ValueError):
    """A direction whose shape (layers, hidden size) does not match the model it is applied to."""


class AdapterMissingError(SteeringError, FileNotFoundError):
    """The demo pair's post-trained adapter (or a checkpoint of it) is not in assets/."""


class InvalidInputError(SteeringError, ValueError):
    """User input that cannot be used: empty prompt lists, bad alpha, malformed files."""


class StoreError(SteeringError):
    """An entry of an on-disk store (the result store, the direction cache) that cannot be used: unreadable,
    truncated, altered, incomplete or another key's. Not the user's error: callers report it in one line and
    compute the entry again."""


class SettingError(InvalidInputError):
    """A setting outside its allowed values (a study's Config field, an alpha, a device): NaN and infinity
    included. The message names the setting and what it may be, e.g. "n_test must be an integer of at least 0
    (0 = all), not -5"; fix: give a value in that range."""


class InvalidDirectionError(InvalidInputError):
    """A direction that cannot steer: vectors not [n_layers, d_model], NaN or infinite numbers in them, or
    resid_norms that are not [n_layers] finite values. Usually a corrupt upload or a broken computation; fix:
    recompute or re-export the direction."""


class BadFileError(InvalidInputError):
    """A file that cannot be read as what it claims to be (a CSV, a GGUF, a config.json, a direction file): the
    message names the file, what is wrong with it and how to fix it. An InvalidInputError, so pages and the CLI
    that catch those show it as one line."""

    def __init__(self, file: object, problem: str, fix: str):
        # one line: the CLI prints it after "error:", and a library's message may run over several
        self.file, self.problem, self.fix = str(file), " ".join(problem.split()), fix
        super().__init__(f"{self.file}: {self.problem.rstrip('.')}. {fix}")

    def __reduce__(self):  # rebuilt from its three parts, not from the joined message
        return type(self), (self.file, self.problem, self.fix)


class IncompatibleCardError(InvalidInputError):
    """A steering card made on other models than the loaded pair (their fingerprints differ): its vectors and
    reference means belong to those models. The message names both pairs; fix: load the card's pair, or make a new
    card on this one."""
