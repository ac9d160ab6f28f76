"""Symbolic tensor rows: what a layer keeps, as shapes over named dimensions.

A row is one kind of tensor (``the input of q_proj``: shape ``b·s·h``, the compute
width, once per layer). Rows are summed into polynomial terms grouped by monomial, so a
formula reads ``L × (26·b·s·h + 8·b·s·f + 4·b·a·s) B`` and each coefficient is the bytes
per element times the number of such tensors.

Widths depend on the precision and the device; :class:`Widths` resolves them:

- ``res``: the residual stream: fp32 unless the weights themselves are 16-bit;
- ``act``: matmul inputs and outputs: 16-bit under autocast or pure 16-bit, else fp32;
- ``f32``: always fp32 (softmax statistics, norms that upcast, the loss);
- ``stat``, ``stat_act``: LayerNorm mean and rstd: fp32, but the CPU keeps them in the
  type of a 16-bit input;
- ``softmax_act``, ``ln_act``: a softmax or LayerNorm of a 16-bit input: CUDA autocast
  computes them in fp32, the CPU in the input's type;
- ``mask_res``, ``mask_act``, ``mask_f32``: a dropout mask: CUDA's fused dropout keeps a
  bool (1 byte), the CPU keeps the scaled noise in the dropped tensor's type;
- ``i64``, ``i32``, ``bool``: index and mask tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from nnmem.terms import Term, polynomial


@dataclass(frozen=True)
class Widths:
    """Bytes per element of each width class for one precision and device."""

    res: int
    act: int
    cpu: bool
    amp: bool = False

    def of(self, width: str) -> int:
        """Bytes per element of ``width``."""
        if width == "res":
            return self.res
        if width == "act":
            return self.act
        if width == "stat":
            return self.res if self.cpu else 4
        if width == "stat_act":
            return self.act if self.cpu else 4
        if width in ("softmax_act", "ln_act", "autocast_f32_act"):
            # CUDA autocast runs softmax, layer_norm, pow and other ops of its fp32 op
            # list in fp32; the CPU's autocast has no such list and keeps the 16-bit
            # input type.
            return 4 if self.amp and not self.cpu else self.act
        if width.startswith("mask_"):
            if not self.cpu:
                return 1  # native_dropout's bool mask (ATen Dropout.cpp, fused CUDA kernel)
            return self.of(width.removeprefix("mask_"))
        # fp8: torch.float8_e4m3fn / float8_e5m2, an FP8 stack's saved inputs
        return {"f32": 4, "i64": 8, "i32": 4, "bool": 1, "f16": 2, "fp8": 1}[width]


@dataclass(frozen=True)
class Row:
    """One kind of tensor: what it is, its shape, its width class, how many."""

    what: str
    dims: tuple[str, ...]
    width: str
    count: int = 1
    tag: str = ""  # what makes it needed: "linear:q" (a weight gradient), "norm:1", ...
    share: Fraction = Fraction(1)  # the part one GPU holds (tensor parallelism)

    def elements(self, sizes: Mapping[str, int]) -> int:
        """Elements of one such tensor."""
        return math.prod(sizes[d] for d in self.dims)


@lru_cache(maxsize=1024)
def _ordered(dims: tuple[str, ...]) -> tuple[str, ...]:
    """A monomial's dimensions in the order formulas write them."""
    return tuple(sorted(dims, key=_ORDER.index))


@lru_cache(maxsize=1024)
def _symbol(dims: tuple[str, ...]) -> str:
    parts: list[str] = []
    for d in dims:
        if parts and parts[-1].split("^")[0] == d:
            base, _, power = parts[-1].partition("^")
            parts[-1] = f"{base}^{int(power or 1) + 1}"
        else:
            parts.append(d)
    return "·".join(p.replace("^2", "²").replace("^3", "³") for p in parts)


def _weight(row: Row, widths: Widths) -> int | Fraction:
    """Bytes per element of the row's kind, all ``count`` tensors of it on one GPU: a whole
    number unless tensor parallelism splits it (Fraction arithmetic costs far more than
    int arithmetic, and the estimate for a keystroke sums hundreds of these)."""
    whole = row.count * widths.of(row.width)
    share = row.share
    return whole if share == 1 else whole * share


def total_bytes(rows: Iterable[Row], sizes: Mapping[str, int], widths: Widths) -> int:
    """Bytes of all rows together."""
    return math.ceil(sum(_weight(r, widths) * r.elements(sizes) for r in rows))


def as_term(
    key: str,
    label: str,
    rows: Sequence[Row],
    sizes: Mapping[str, int],
    widths: Widths,
    source: str,
    times: tuple[str, int] | None = None,
) -> Term:
    """The rows as one polynomial term, coefficients grouped by monomial.

    >>> rows = [Row("x", ("b", "s", "h"), "act", 2), Row("p", ("b", "a", "s", "s"), "f32")]
    >>> t = as_term("activations", "per layer", rows, {"b": 1, "s": 8, "h": 4, "a": 2},
    ...             Widths(res=4, act=2, cpu=False), "", times=("L", 3))
    >>> t.formula, t.bytes
    ('L × (4·b·a·s² + 4·b·s·h) B', 1920)
    """
    groups: dict[tuple[str, ...], int | Fraction] = {}
    for r in rows:
        dims = _ordered(tuple(r.dims))
        groups[dims] = groups.get(dims, 0) + _weight(r, widths)
    parts = [
        (_symbol(dims), math.prod(sizes[d] for d in dims), weight)
        for dims, weight in sorted(groups.items(), key=lambda kv: _rank(kv[0]))
        if weight
    ]
    common = [times] if times else []
    return polynomial(key, label, common, parts, source)


_ORDER = (
    "L",
    "b",
    "k",
    "E",
    "a",
    "a_kv",
    "t",
    "s",
    "s16",  # s rounded up to 16: a memory-efficient attention bias's row
    "n",  # b·(s − 1): the positions TRL's fused head scores (next-token labels)
    "n128",  # ⌈s/128⌉: a flex-attention BlockMask's blocks per row
    "u",
    "w",
    "d",
    "h",
    "q",
    "kv",
    "f",
    "fs",
    "r",
    "V",
    "c",
    "C",
    "I",
    "one",
)


@lru_cache(maxsize=1024)
def _rank(dims: tuple[str, ...]) -> tuple[int, tuple[int, ...]]:
    # Larger monomials first: more dimensions, then the canonical order.
    return (-len(dims), tuple(_ORDER.index(d) for d in dims))
