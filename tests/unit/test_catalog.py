"""The catalogs: every model's parameter count, and the GPUs."""

from __future__ import annotations

import pytest

from nnmem import catalog
from nnmem.models import cnn
from nnmem.models.architecture import active_parameters, from_config, parameter_counts

MODELS = catalog.models()


@pytest.mark.parametrize("model_id", [m for m in MODELS if MODELS[m].architecture != "cnn"])
def test_counts_match_the_catalog(model_id: str) -> None:
    """The catalog's counts are ``num_parameters()`` of the stated transformers class,
    built from the published config (benchmarks/catalog/verify_params.py); the engine
    must reproduce each exactly."""
    entry = MODELS[model_id]
    model = from_config({**entry.config, "architectures": [entry.hf_class]})
    assert sum(parameter_counts(model).values()) == entry.params
    if entry.active_params is not None:
        assert active_parameters(model) == entry.active_params


@pytest.mark.parametrize("model_id", [m for m in MODELS if MODELS[m].architecture == "cnn"])
def test_cnn_counts_match_torchvision(model_id: str) -> None:
    entry = MODELS[model_id]
    assert cnn.parameter_count(cnn.builtin(entry.spec or entry.id)) == entry.params


def test_catalog_covers_the_families() -> None:
    assert len(MODELS) >= 40
    families = {m.family for m in MODELS.values()}
    assert {
        "gpt2",
        "bert",
        "roberta",
        "t5",
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "gemma2",
        "gemma3",
        "phi3",
        "deepseek",
        "vit",
        "resnet",
        "vgg",
    } <= families


def test_gpu_catalog() -> None:
    gpus = catalog.gpus()
    assert len(gpus) >= 25
    assert {g.kind for g in gpus.values()} == {"consumer", "workstation", "datacenter", "apple"}
    assert {g.vendor for g in gpus.values()} >= {"nvidia", "amd", "apple"}
    # Vendors' "GB" of memory chips are GiB: an RTX 4090 has 24 × 2^30 bytes.
    assert gpus["rtx-4090"].memory_bytes == 24 * 2**30
    # Apple GPUs may wire only part of unified memory.
    mac = gpus["m4-max-128gb"]
    assert mac.usable_bytes < mac.memory_bytes
