"""The model and GPU catalogs shipped in ``nnmem/data`` (see its README for the fields)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
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
    # the storage formats of its published checkpoints, for the runtimes (README)
    weights: dict[str, Any] | None = None


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
    visible_mib: int | None = None
    ecc_default: bool = False
    tflops_format: str | None = None
    architecture: str = ""
    formats: tuple[str, ...] = ()

    @property
    def usable_bytes(self) -> int:
        """The memory a process can allocate before any headroom is kept.

        Apple: the share of unified memory macOS lets the GPU wire
        (``MTLDevice.recommendedMaxWorkingSetSize``). Elsewhere the total the driver reports
        (``nvidia-smi``'s "Total", ``cudaMemGetInfo``) where a source gives it; else, on a
        GDDR6 data-center card with ECC on by default, 15/16 of the memory (ECC takes 1/16);
        else the full capacity, since no driver reserve is published for the card.

        >>> gpus()["t4"].usable_bytes == 15 * 2**30
        True
        >>> gpus()["h100-sxm-80gb"].usable_bytes // 2**20
        81559
        """
        if self.usable_fraction is not None:
            return int(self.memory_bytes * self.usable_fraction)
        if self.visible_mib is not None:
            return self.visible_mib * 2**20
        if self.ecc_default:
            return self.memory_bytes * 15 // 16
        return self.memory_bytes

    @property
    def usable_basis(self) -> str:
        """Where :attr:`usable_bytes` comes from, in words."""
        if self.usable_fraction is not None:
            return (
                f"the {self.usable_fraction:.0%} of unified memory macOS lets the GPU wire by "
                "default (recommendedMaxWorkingSetSize; sysctl iogpu.wired_limit_mb raises it)"
            )
        if self.visible_mib is not None:
            return f"the {self.visible_mib:,} MiB the driver reports as the card's total"
        if self.ecc_default:
            return "the capacity less the 1/16 that ECC, on by default on this card, takes"
        return "the full capacity: no driver reserve is published for this card"

    def supports(self, number_format: str) -> bool:
        """Whether the card's matrix units run a number format (``fp32``, ``fp16``, ``bf16``,
        ``fp8``, ``fp4``) natively.

        >>> gpus()["t4"].supports("bf16"), gpus()["a100-sxm-80gb"].supports("bf16")
        (False, True)
        """
        return number_format in self.formats


# The data files sit beside the modules: in a folder (a wheel, the repository) or in the
# zip the page's Python imports nnmem from. The module's loader reads them from either,
# as pkgutil.get_data does, without the imports of pkgutil or importlib.resources.
DATA = os.path.join(os.path.dirname(__file__), "data")


def _load(name: str) -> dict[str, Any]:
    assert __spec__ is not None
    assert __spec__.loader is not None
    raw = __spec__.loader.get_data(os.path.join(DATA, name))  # type: ignore[attr-defined]
    data: dict[str, Any] = json.loads(raw)
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
            weights=m.get("weights"),
        )
        for m in _load("models.json")["models"]
    }


def _name_key(text: str) -> str:
    """A model name with case, spaces, dashes, slashes and brackets ignored: the dots stay,
    so "Llama 3.1 8B" (llama3.18b) is not "Llama 3 18B" (llama318b)."""
    return re.sub(r"[^a-z0-9.]", "", text.lower())


@cache
def _by_name() -> dict[str, ModelEntry]:
    """Every catalog model under the key of its id, its name and its Hub id."""
    found: dict[str, ModelEntry] = {}
    for entry in models().values():
        for text in (entry.id, entry.name, entry.hf_id or ""):
            key = _name_key(text)
            if key:
                found.setdefault(key, entry)
    return found


def find_model(text: str) -> ModelEntry | None:
    """The catalog model that ``text`` names: its id, its name as the catalog shows it or
    its Hugging Face id, in any case and spacing; None when none does.

    >>> find_model("Llama 3.1 8B").id, find_model("qwen2.5 7b").id, find_model("LLAMA-3.1-8B").id
    ('llama-3.1-8b', 'qwen2.5-7b', 'llama-3.1-8b')
    >>> find_model("meta-llama/Llama-3.1-8B").id, find_model("llama 3.1"), find_model("")
    ('llama-3.1-8b', None, None)
    """
    exact = models().get(text.strip().lower())
    if exact is not None:
        return exact
    key = _name_key(text)
    return _by_name().get(key) if key else None


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
            visible_mib=g.get("visible_mib"),
            ecc_default=bool(g.get("ecc_default", False)),
            tflops_format=g.get("dense_tflops_format"),
            architecture=g.get("architecture", ""),
            formats=tuple(g.get("formats", ())),
        )
        for g in _load("gpus.json")["gpus"]
    }


def _gpu_words(text: str) -> list[str]:
    """A card's name as lower-case words, a memory size joined to its unit (80 GB: 80gb)."""
    joined = re.sub(r"(\d)\s+(gb|gib)\b", r"\1\2", text.lower())
    return re.findall(r"[a-z0-9.]+", joined)


def find_gpus(text: str) -> list[Gpu]:
    """The catalog cards ``text`` names: its id, or words all found in one card's name
    ("4060 Ti 16GB", "A100 80 GB"), the cards with the fewest other words first; more
    than one only where they tie ("A100" names the 40 and the 80 GB card alike).

    >>> [g.id for g in find_gpus("RTX 4060 Ti 16GB")], [g.id for g in find_gpus("a100 80 gb")]
    (['rtx-4060-ti-16gb'], ['a100-sxm-80gb'])
    >>> [g.id for g in find_gpus("4090")], [g.id for g in find_gpus("A100")]
    (['rtx-4090'], ['a100-sxm-40gb', 'a100-sxm-80gb'])
    >>> find_gpus("rtx-3090")[0].name, find_gpus("banana"), find_gpus("")
    ('NVIDIA GeForce RTX 3090', [], [])
    """
    exact = gpus().get(text.strip().lower())
    if exact is not None:
        return [exact]
    words = _gpu_words(text)
    if not words:
        return []
    scored = []
    for card in gpus().values():
        name = _gpu_words(card.name)
        if all(word in name for word in words):
            scored.append((len(name) - len(words), card))
    fewest = min((extra for extra, _ in scored), default=0)
    return [card for extra, card in scored if extra == fewest]


# A card the catalog lacks, named by the capacity its maker quotes: ``custom-8gb``.
CUSTOM_ID = re.compile(r"custom-(\d+(?:\.\d+)?)gb")
CUSTOM_MAX_GB = 1024  # above every card sold: the catalog's largest holds 288 GB


def custom_gpu_id(gb: Decimal) -> str:
    """The id of a card of ``gb`` GB as its maker quotes it.

    >>> custom_gpu_id(Decimal("8")), custom_gpu_id(Decimal("80.0")), custom_gpu_id(Decimal("7.5"))
    ('custom-8gb', 'custom-80gb', 'custom-7.5gb')
    """
    return f"custom-{gb.normalize():f}gb"


def _custom(gpu_id: str) -> Gpu | None:
    match = CUSTOM_ID.fullmatch(gpu_id)
    if match is None:
        return None
    try:
        gb = Decimal(match[1])
    except InvalidOperation:
        return None
    if not 0 < gb <= CUSTOM_MAX_GB:
        return None
    # The catalog's rule for cards (data/README.md, "Memory"): a maker's "N GB" is N GiB,
    # and with no driver reserve published for the card all of it is usable.
    return Gpu(
        id=gpu_id,
        name=f"Custom {gb.normalize():f} GB card",
        vendor="",  # unknown: the overheads are CUDA's, as with no GPU chosen
        kind="custom",
        memory_bytes=int(gb * 2**30),
        memory_label=f"{gb.normalize():f} GB",
        memory_unit="GiB",
        usable_fraction=None,
        bandwidth_bytes_per_s=None,
        fp16_tflops=None,
        fp32_tflops=None,
        source="the capacity typed in, read as the catalog reads a maker's GB",
    )


def gpu(gpu_id: str) -> Gpu | None:
    """The catalog GPU ``gpu_id``, or the custom card a ``custom-<N>gb`` id names, whose
    usable memory follows the catalog's rule for a card with no published reserve; None
    when neither.

    >>> gpu("rtx-4060").usable_bytes == gpu("custom-8gb").usable_bytes == 8 * 2**30
    True
    >>> gpu("custom-0gb"), gpu("custom-2000gb"), gpu("rtx-9999")
    (None, None, None)
    """
    return gpus().get(gpu_id) or _custom(gpu_id)


# GPUs of compute capability 9.0 and newer, by catalog id.
HOPPER_OR_NEWER = ("h100", "h200", "gh200", "b200", "b100", "gb200")


def cublas_workspace_bytes(gpu_id: str | None) -> int:
    """One cuBLAS workspace: aten/src/ATen/cuda/CublasHandlePool.cpp
    parseChosenWorkspaceSize, 4096 KiB × 8 on compute capability 9.0 and newer, else
    4096 KiB × 2 + 16 KiB × 8.

    >>> cublas_workspace_bytes("h100-sxm"), cublas_workspace_bytes("rtx-4090")
    (33554432, 8519680)
    """
    hopper = gpu_id is not None and gpu_id.startswith(HOPPER_OR_NEWER)
    return 4096 * 8 * 1024 if hopper else 4096 * 1024 * 2 + 16 * 1024 * 8
