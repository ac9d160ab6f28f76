"""The model and GPU catalogs shipped in ``nnmem/data`` (see its README for the fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    """One catalog model: its published config and exact parameter count."""

    id: str
    name: str
    family: str
    architecture: str
    hf_id: str | None
    hf_class: str | None
    config: dict[str, Any]
    params: int
    active_params: int | None
    spec: str | None
    note: str


@dataclass(frozen=True)
class Gpu:
    """One accelerator: memory capacity in bytes and the numbers behind the roofline."""

    id: str
    name: str
    vendor: str
    kind: str  # consumer, workstation, datacenter, apple
    memory_bytes: int
    memory_label: str
    memory_unit: str
    usable_fraction: float | None
    bandwidth_bytes_per_s: int | None
    fp16_tflops: float | None
    fp32_tflops: float | None
    source: str

    @property
    def usable_bytes(self) -> int:
        """The memory a framework can allocate: all of it, or Apple's GPU-wired share."""
        if self.usable_fraction is None:
            return self.memory_bytes
        return int(self.memory_bytes * self.usable_fraction)


def _load(name: str) -> dict[str, Any]:
    text = files("nnmem").joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def models() -> dict[str, ModelEntry]:
    """Every catalog model by id, in catalog order.

    >>> models()["llama-3.1-8b"].params
    8030261248
    """
    return {
        m["id"]: ModelEntry(
            id=m["id"],
            name=m["name"],
            family=m["family"],
            architecture=m["architecture"],
            hf_id=m.get("hf_id"),
            hf_class=m.get("hf_class"),
            config=m.get("config") or {},
            params=m["params"],
            active_params=m.get("active_params"),
            spec=m.get("spec"),
            note=m.get("params_note", ""),
        )
        for m in _load("models.json")["models"]
    }


@cache
def gpus() -> dict[str, Gpu]:
    """Every catalog GPU by id, in catalog order.

    >>> gpus()["h100-sxm-80gb"].memory_bytes
    85899345920
    """
    return {
        g["id"]: Gpu(
            id=g["id"],
            name=g["name"],
            vendor=g["vendor"],
            kind=g["class"],
            memory_bytes=g["memory_bytes"],
            memory_label=g["memory_label"],
            memory_unit=g["memory_unit"],
            usable_fraction=g.get("usable_fraction"),
            bandwidth_bytes_per_s=g.get("bandwidth_bytes_per_s"),
            fp16_tflops=g.get("fp16_tflops_dense"),
            fp32_tflops=g.get("fp32_tflops"),
            source=g.get("source", ""),
        )
        for g in _load("gpus.json")["gpus"]
    }
