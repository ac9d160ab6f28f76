"""What a user describes: the scenario, its options, and how it is read from JSON.

The JSON scenario schema is flat and string-friendly, so the same keys serve a JSON
file, the command line, the browser form and (later) the URL query string:

======================  ==========================================================
key                     meaning
======================  ==========================================================
``model``               ``"generic"``: a parameter count plus width and depth
``params_millions``     parameters, in millions (``110`` for BERT-base)
``hidden_size``         model width *h*; omitted or ``null``: derived from the size
``num_layers``          transformer layers *L*; omitted or ``null``: derived
``mode``                ``"training"`` or ``"inference"``
``precision``           ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"``, ``"int4"``
``optimizer``           ``"sgd"``, ``"sgd_momentum"``, ``"adamw"`` (training only)
``batch_size``          sequences per step *b*
``seq_len``             tokens per sequence *s*
======================  ==========================================================

Numbers may be JSON numbers or numeric strings (a form sends strings). Every bad value
is reported at once, each against its key, by one :class:`~nnmem.errors.NnmemError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from nnmem.errors import NnmemError, Problem


class Mode(StrEnum):
    """Whether the step trains (forward, backward, optimizer) or only runs forward."""

    TRAINING = "training"
    INFERENCE = "inference"


class Precision(StrEnum):
    """Number format of the weights (and, for training, of the compute)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def weight_bits(self) -> int:
        """Bits each stored weight takes at inference."""
        return _WEIGHT_BITS[self]

    @property
    def trains(self) -> bool:
        """Whether a model can be trained in this format."""
        return self in (Precision.FP32, Precision.FP16, Precision.BF16)


_WEIGHT_BITS = {
    Precision.FP32: 32,
    Precision.FP16: 16,
    Precision.BF16: 16,
    Precision.INT8: 8,
    Precision.INT4: 4,
}


class Optimizer(StrEnum):
    """The training optimizer; only its state size matters here."""

    SGD = "sgd"
    SGD_MOMENTUM = "sgd_momentum"
    ADAMW = "adamw"

    @classmethod
    def _missing_(cls, value: object) -> Optimizer | None:
        # Adam and AdamW keep the same two moments per parameter.
        return cls.ADAMW if value == "adam" else None


LABELS: dict[StrEnum, str] = {
    Mode.TRAINING: "Training",
    Mode.INFERENCE: "Inference",
    Precision.FP32: "FP32",
    Precision.FP16: "FP16",
    Precision.BF16: "BF16",
    Precision.INT8: "INT8",
    Precision.INT4: "INT4",
    Optimizer.SGD: "SGD",
    Optimizer.SGD_MOMENTUM: "SGD with momentum",
    Optimizer.ADAMW: "Adam / AdamW",
}


@dataclass(frozen=True)
class GenericModel:
    """A model known by its parameter count, with width and depth for activations.

    ``derived`` names the shape fields that were not given but worked out from ``params``.

    >>> GenericModel(params=110_000_000, hidden_size=768, num_layers=12).params
    110000000
    """

    params: int
    hidden_size: int
    num_layers: int
    derived: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _raise_if(
            _check_range(PARAMS, Decimal(self.params) / MILLION),
            _check_range(HIDDEN_SIZE, self.hidden_size),
            _check_range(NUM_LAYERS, self.num_layers),
        )

    @classmethod
    def from_params(
        cls, params: int, hidden_size: int | None = None, num_layers: int | None = None
    ) -> GenericModel:
        """Fill in a typical width and/or depth for ``params`` parameters.

        A transformer layer holds about ``12·h²`` parameters (Kaplan et al. 2020,
        arXiv 2001.08361 §2.1: ``N ≈ 12·n_layer·d_model²``), and GPT-3-style models keep
        ``h ≈ 128·L`` (Brown et al. 2020, arXiv 2005.14165 Table 2.1: 175B has
        h = 12,288, L = 96). With neither given, both relations fix the shape; with one
        given, the first relation gives the other.

        >>> GenericModel.from_params(7_000_000_000)  # doctest: +NORMALIZE_WHITESPACE
        GenericModel(params=7000000000, hidden_size=4204, num_layers=33,
                     derived=('hidden_size', 'num_layers'))
        >>> GenericModel.from_params(110_000_000, hidden_size=768).num_layers
        16
        """
        derived = []
        if num_layers is None:
            derived.append("num_layers")
            if hidden_size is None:
                num_layers = round((params / (12 * 128**2)) ** (1 / 3))
            else:
                num_layers = round(params / (12 * hidden_size**2))
            num_layers = min(max(1, num_layers), int(NUM_LAYERS.high))
        if hidden_size is None:
            derived.insert(0, "hidden_size")
            hidden_size = round(math.sqrt(params / (12 * num_layers)))
            hidden_size = min(max(1, hidden_size), int(HIDDEN_SIZE.high))
        return cls(params, hidden_size, num_layers, tuple(derived))


@dataclass(frozen=True)
class Scenario:
    """Everything the estimate depends on.

    >>> s = Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128)
    >>> s.mode, s.precision, s.optimizer
    (<Mode.TRAINING: 'training'>, <Precision.FP32: 'fp32'>, <Optimizer.ADAMW: 'adamw'>)
    """

    model: GenericModel
    mode: Mode = Mode.TRAINING
    precision: Precision = Precision.FP32
    optimizer: Optimizer = Optimizer.ADAMW
    batch_size: int = 1
    seq_len: int = 512

    def __post_init__(self) -> None:
        _raise_if(
            _check_range(BATCH_SIZE, self.batch_size),
            _check_range(SEQ_LEN, self.seq_len),
            _check_mode_precision(self.mode, self.precision),
        )

    def inactive_fields(self) -> tuple[str, ...]:
        """Schema keys that do not affect this scenario's estimate."""
        return inactive_fields(self.mode)

    def to_dict(self) -> dict[str, Any]:
        """The scenario in the JSON schema; :func:`parse` reads it back unchanged.

        >>> llama = Scenario(GenericModel(7_000_000_000, 4096, 32), Mode.INFERENCE)
        >>> llama.to_dict()["params_millions"]
        7000
        """
        millions = Decimal(self.model.params) / MILLION
        derived = self.model.derived
        return {
            "model": "generic",
            "params_millions": int(millions) if millions == int(millions) else float(millions),
            "hidden_size": None if "hidden_size" in derived else self.model.hidden_size,
            "num_layers": None if "num_layers" in derived else self.model.num_layers,
            "mode": self.mode.value,
            "precision": self.precision.value,
            "optimizer": self.optimizer.value,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }


def inactive_fields(mode: Mode) -> tuple[str, ...]:
    """Schema keys that do not apply in ``mode``."""
    return ("optimizer",) if mode is Mode.INFERENCE else ()


# --- field specifications: one table serves parsing and checking -------------------------

MILLION = Decimal(10**6)


@dataclass(frozen=True)
class NumberSpec:
    """A numeric schema key with its label and allowed range."""

    key: str
    label: str
    low: Decimal
    high: Decimal
    whole: bool
    allowed: str


@dataclass(frozen=True)
class ChoiceSpec:
    """A schema key that takes one of an enum's values."""

    key: str
    label: str
    enum: type[StrEnum]
    allowed: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", "one of " + ", ".join(m.value for m in self.enum))


def _whole(key: str, label: str, high: int) -> NumberSpec:
    return NumberSpec(
        key, label, Decimal(1), Decimal(high), True, f"a whole number from 1 to {high:,}"
    )


PARAMS = NumberSpec(
    "params_millions",
    "Model size",
    Decimal("0.000001"),
    Decimal(10_000_000),
    False,
    "a number of millions of parameters above 0 and at most 10,000,000",
)
HIDDEN_SIZE = _whole("hidden_size", "Hidden dimension", 1_000_000)
NUM_LAYERS = _whole("num_layers", "Number of layers", 100_000)
BATCH_SIZE = _whole("batch_size", "Batch size", 1_000_000)
SEQ_LEN = _whole("seq_len", "Sequence length", 10_000_000)
MODE = ChoiceSpec("mode", "Mode", Mode)
PRECISION = ChoiceSpec("precision", "Precision", Precision)
OPTIMIZER = ChoiceSpec("optimizer", "Optimizer", Optimizer)

SPECS: dict[str, NumberSpec | ChoiceSpec] = {
    spec.key: spec
    for spec in (
        PARAMS,
        HIDDEN_SIZE,
        NUM_LAYERS,
        MODE,
        PRECISION,
        OPTIMIZER,
        BATCH_SIZE,
        SEQ_LEN,
    )
}

# Keys that may be left out of a scenario, with the value used instead.
DEFAULTS: dict[str, object] = {
    "model": "generic",
    "hidden_size": None,
    "num_layers": None,
    "mode": Mode.TRAINING.value,
    "precision": Precision.FP32.value,
    "optimizer": Optimizer.ADAMW.value,
    "batch_size": 1,
    "seq_len": 512,
}

_GROUPED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
_MAX_ECHO = 24


def _shown(raw: object) -> str:
    """The bad value as a message echoes it: numbers bare, text quoted, both cut short."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        text, quoted = repr(raw), False
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            quoted = not Decimal(text).is_finite()
        except InvalidOperation:
            quoted = True
    else:  # JSON true, null, lists and objects, as JSON writes them
        text, quoted = json.dumps(raw, default=str), False
    if len(text) > _MAX_ECHO:
        text = text[: _MAX_ECHO - 1] + "…"
    return f'"{text}"' if quoted else text


def _bad(spec: NumberSpec | ChoiceSpec, raw: object) -> Problem:
    return Problem(spec.key, f"{spec.label} must be {spec.allowed} (got {_shown(raw)}).")


def _read_number(spec: NumberSpec, raw: object) -> Decimal | Problem:
    """Turn a JSON number or a numeric string into a Decimal, or say what is wrong."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Problem(spec.key, f"{spec.label} is required: enter {spec.allowed}.")
    if isinstance(raw, bool):
        return _bad(spec, raw)
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        # repr gives the shortest decimal that round-trips, so 124.439808 stays exact.
        return Decimal(repr(raw)) if math.isfinite(raw) else _bad(spec, raw)
    if not isinstance(raw, str) or len(raw) > 64:
        return _bad(spec, raw)
    text = raw.strip()
    if _GROUPED_THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return _bad(spec, raw)
    return number if number.is_finite() else _bad(spec, raw)


def _check_range(spec: NumberSpec, value: Decimal | int, raw: object = None) -> Problem | None:
    """Say what is wrong when ``value`` is out of range; echo ``raw``, what the user typed."""
    number = Decimal(value)
    if (spec.whole and number != number.to_integral_value()) or not (
        spec.low <= number <= spec.high
    ):
        return _bad(spec, value if raw is None else raw)
    return None


E = TypeVar("E", bound=StrEnum)


def _read_choice(spec: ChoiceSpec, raw: object, enum: Callable[[str], E]) -> E | Problem:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Problem(spec.key, f"{spec.label} is required: choose {spec.allowed}.")
    if not isinstance(raw, str):
        return _bad(spec, raw)
    try:
        return enum(raw.strip().lower())
    except ValueError:
        return _bad(spec, raw)


def _check_mode_precision(mode: Mode, precision: Precision) -> Problem | None:
    if mode is Mode.TRAINING and not precision.trains:
        return Problem(
            PRECISION.key,
            f"Precision {precision.value} stores weights for inference only: "
            "for training choose fp32, fp16 or bf16, or set the mode to inference.",
        )
    return None


def _raise_if(*problems: Problem | None) -> None:
    found = [p for p in problems if p is not None]
    if found:
        raise NnmemError(found)


def parse(data: Mapping[str, object]) -> Scenario:
    """Read a scenario from its JSON schema, reporting every bad key at once.

    >>> parse({"params_millions": "110", "hidden_size": 768, "num_layers": 12,
    ...        "batch_size": "32", "seq_len": 128}).model.params
    110000000
    >>> parse({"params_millions": 110, "batch_size": 0})
    Traceback (most recent call last):
    nnmem.errors.NnmemError: Batch size must be a whole number from 1 to 1,000,000 (got 0).
    """
    if not isinstance(data, Mapping):
        raise NnmemError.single("scenario", "A scenario must be a JSON object of named fields.")
    known = ", ".join(["model", *SPECS])
    problems = [
        Problem(str(key), f"Unknown field {_shown(key)}: the fields are {known}.")
        for key in data
        if key not in SPECS and key != "model"
    ]
    values = {**DEFAULTS, **data}
    if values["model"] != "generic":
        problems.append(
            Problem("model", f'Model must be "generic" (got {_shown(values["model"])}).')
        )

    def number(spec: NumberSpec, optional: bool = False) -> Decimal | None:
        raw = values.get(spec.key)
        if optional and raw is None:
            return None
        read = _read_number(spec, raw)
        problem = read if isinstance(read, Problem) else _check_range(spec, read, raw)
        if problem is not None:
            problems.append(problem)
            return None
        assert isinstance(read, Decimal)
        return read

    def choice(spec: ChoiceSpec, enum: Callable[[str], E]) -> E | None:
        read = _read_choice(spec, values.get(spec.key), enum)
        if isinstance(read, Problem):
            problems.append(read)
            return None
        return read

    millions = number(PARAMS)
    hidden = number(HIDDEN_SIZE, optional=True)
    layers = number(NUM_LAYERS, optional=True)
    mode = choice(MODE, Mode)
    precision = choice(PRECISION, Precision)
    optimizer = choice(OPTIMIZER, Optimizer)
    batch = number(BATCH_SIZE)
    seq = number(SEQ_LEN)
    if mode is not None and precision is not None:
        _raise_if(*problems, _check_mode_precision(mode, precision))
    _raise_if(*problems)
    # Each value is set when no problem was found; the asserts tell the type checker.
    assert millions is not None and batch is not None and seq is not None
    assert mode is not None and precision is not None and optimizer is not None

    params = max(1, int((millions * MILLION).to_integral_value()))
    model = GenericModel.from_params(
        params,
        hidden_size=None if hidden is None else int(hidden),
        num_layers=None if layers is None else int(layers),
    )
    return Scenario(
        model=model,
        mode=mode,
        precision=precision,
        optimizer=optimizer,
        batch_size=int(batch),
        seq_len=int(seq),
    )
