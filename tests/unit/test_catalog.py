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


@pytest.mark.parametrize(
    ("typed", "model_id"),
    [
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("Llama 3.1 8B", "llama-3.1-8b"),
        ("  LLAMA 3.1 8b ", "llama-3.1-8b"),
        ("qwen2.5 7b", "qwen2.5-7b"),
        ("Qwen/Qwen2.5-7B", "qwen2.5-7b"),
        ("BERT base (uncased)", "bert-base-uncased"),
        ("Llama 3 8B", "llama-3-8b"),
        ("resnet-50", "resnet50"),
    ],
)
def test_a_model_is_found_by_its_id_name_or_hub_id(typed: str, model_id: str) -> None:
    """The names people type find the catalog entry: its id, its name as the catalog
    shows it, or its Hugging Face id, whatever the case and spacing."""
    found = catalog.find_model(typed)
    assert found is not None
    assert found.id == model_id


@pytest.mark.parametrize("typed", ["", "llama", "Llama 3.1", "Llama 3 18B", "8B"])
def test_a_partial_or_unknown_name_finds_nothing(typed: str) -> None:
    """Only a whole name matches: the dots stay, so Llama 3 18B is not Llama 3.1 8B."""
    assert catalog.find_model(typed) is None


def test_names_do_not_collide() -> None:
    """No two models share a name key, so a name never picks the wrong one."""
    seen: dict[str, str] = {}
    for entry in MODELS.values():
        for text in {entry.id, entry.name, entry.hf_id or ""}:
            key = catalog._name_key(text)
            if key:
                assert seen.setdefault(key, entry.id) == entry.id, (key, entry.id)
