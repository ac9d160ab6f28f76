"""Check the parameter counts in nnmem/data/models.json against the real model classes.

For every transformer entry the script builds ``hf_class`` from ``config`` on PyTorch's
``meta`` device (shapes only: no weights are allocated or downloaded) and compares the
parameter count with ``params`` (and, for mixture-of-experts models, ``active_params``).
CNN entries are built from ``torchvision.models`` when torchvision can be imported.
Entries with a well-known published exact count are also compared with that figure.

Counting rules:

* ``model.num_parameters()`` walks ``named_parameters()``, which yields a parameter that
  is shared by two modules once: a tied LM head adds nothing.
* transformers 5.x builds T5 with the LM head tied even when the config says
  ``tie_word_embeddings: false`` (the flag only switches off decoder-output rescaling);
  ``from_pretrained`` unties it when the checkpoint holds two different tensors, as the
  T5 v1.1 / Flan-T5 checkpoints do. Such an entry is counted untied, like the checkpoint.
* MoE active parameters = total - (experts per layer - experts per token) / (experts per
  layer) x (parameters of that layer's experts), summed over MoE layers.

Usage (from the repository root; needs torch and transformers, torchvision optional)::

    python benchmarks/catalog/verify_params.py            # all entries
    python benchmarks/catalog/verify_params.py --only llama-3.1-8b qwen3-30b-a3b
    python benchmarks/catalog/verify_params.py --strict   # a skipped entry also fails

Exit status: 0 when every checked entry matches, 1 on any mismatch or build error
(or, with ``--strict``, any skipped entry).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).resolve().parents[2] / "nnmem" / "data" / "models.json"

# Exact totals that are widely reproduced, each with the closed-form count it follows from.
GPT2 = "GPT-2: 12h²+13h per layer, learned positions, tied head (Radford et al. 2019)"
DECODER = "Megatron-LM theoretical_memory_usage.py layer formula + embeddings and head"
BERT = "BERT: 12h²+13h per layer, embeddings, pooler (arXiv 1810.04805)"
T5 = "T5 v1.0: no biases, tied embedding, relative-position bias (arXiv 1910.10683)"
VIT = "ViT: patch conv, CLS, positions, 12h²+13h per layer, 1,000-class head (arXiv 2010.11929)"
REFERENCE: dict[str, tuple[int, str]] = {
    "gpt2": (124_439_808, GPT2),
    "gpt2-medium": (354_823_168, GPT2),
    "gpt2-large": (774_030_080, GPT2),
    "gpt2-xl": (1_557_611_200, GPT2),
    "llama-2-7b": (6_738_415_616, DECODER),
    "llama-2-13b": (13_015_864_320, DECODER),
    "llama-2-70b": (68_976_648_192, DECODER),
    "llama-3-8b": (8_030_261_248, DECODER),
    "llama-3-70b": (70_553_706_496, DECODER),
    "llama-3.2-1b": (1_235_814_400, DECODER),
    "mistral-7b-v0.1": (7_241_732_096, DECODER),
    "mixtral-8x7b": (46_702_792_704, DECODER),
    "qwen2.5-7b": (7_615_616_512, DECODER),
    "bert-base-uncased": (109_482_240, BERT),
    "bert-large-uncased": (335_141_888, BERT),
    "t5-small": (60_506_624, T5),
    "t5-base": (222_903_552, T5),
    "t5-large": (737_668_096, T5),
    "vit-base-patch16-224": (86_567_656, VIT),
    "vit-large-patch16-224": (304_326_632, VIT),
    "resnet50": (25_557_032, "torchvision ResNet50_Weights.IMAGENET1K_V1 num_params"),
    "vgg16": (138_357_544, "torchvision weights metadata"),
}
REFERENCE_ACTIVE: dict[str, tuple[int, str]] = {
    "mixtral-8x7b": (12_879_925_248, DECODER),
}

ARCHITECTURES = {"decoder", "moe", "encoder", "encoder-decoder", "vit", "cnn"}


def import_torchvision() -> Any | None:
    """Import torchvision, or return None when it is not usable."""
    try:
        import torchvision.models
    except ImportError:
        return None
    except RuntimeError:
        # A wheel whose compiled operators (nms, roi_align) were built for another torch
        # build fails while registering their meta kernels. Building the models does not
        # use those operators, so retry without that registration module.
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = "torchvision._meta_registrations"
        sys.modules[stub] = types.ModuleType(stub)
        try:
            import torchvision.models
        except (ImportError, RuntimeError):
            return None
    return torchvision.models


def check_structure(models: list[dict[str, Any]]) -> list[str]:
    """Return problems with ids, architectures and ordering of the catalog."""
    problems = []
    ids = [m["id"] for m in models]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"duplicate id {dup!r}")
    for m in models:
        if m["id"] != m["id"].lower() or " " in m["id"]:
            problems.append(f"id {m['id']!r} is not a lowercase slug")
        if m["architecture"] not in ARCHITECTURES:
            problems.append(f"{m['id']}: unknown architecture {m['architecture']!r}")
        if (m["architecture"] == "moe") != (m["active_params"] is not None):
            problems.append(f"{m['id']}: active_params must be set exactly for moe entries")
    keys = [(m["family"], m["params"]) for m in models]
    if keys != sorted(keys):
        problems.append("models are not sorted by family, then params")
    return problems


def count_transformer(entry: dict[str, Any]) -> tuple[int, int | None, str]:
    """Build the entry's class on the meta device; return (total, active or None, remark)."""
    import torch
    import transformers

    fields = dict(entry["config"])
    model_type = fields.pop("model_type")
    # Kimi K2 ships DeepseekV3ForCausalLM shapes under its own model_type, which
    # transformers does not register.
    model_type = {"kimi_k2": "deepseek_v3"}.get(model_type, model_type)
    config = transformers.AutoConfig.for_model(model_type, **fields)
    cls = getattr(transformers, entry["hf_class"])
    with torch.device("meta"):
        model = cls(config)

    total = model.num_parameters()
    remark = ""
    out_emb = model.get_output_embeddings()
    in_emb = model.get_input_embeddings()
    shared = out_emb is not None and in_emb is not None and out_emb.weight is in_emb.weight
    if entry["config"].get("tie_word_embeddings") is False and shared:
        total += out_emb.weight.numel()
        remark = "head untied as in checkpoint"

    active = None
    if entry["architecture"] == "moe":
        cfg = entry["config"].get("text_config") or entry["config"]  # Llama 4 nests it
        n_exp = cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts")))
        top_k = cfg["num_experts_per_tok"]
        idle = 0
        for name, module in model.named_modules():
            if name.endswith(".experts"):
                experts = sum(p.numel() for p in module.parameters())
                if experts % n_exp:
                    raise ValueError(f"{name}: {experts} parameters do not split into {n_exp}")
                idle += experts // n_exp * (n_exp - top_k)
        if idle == 0:
            raise ValueError("no '.experts' modules found")
        active = total - idle
    return total, active, remark


def count_cnn(entry: dict[str, Any], tv_models: Any) -> int:
    """Build the torchvision model named by the entry's spec on the meta device and count it."""
    import torch

    with torch.device("meta"):
        model = getattr(tv_models, entry["spec"])()
    return sum(p.numel() for p in model.parameters())


Row = tuple[str, int | None, int | None, str]


def fmt(count: int | None) -> str:
    """Format a count with thousands separators, or '-' when there is none."""
    return "-" if count is None else f"{count:,}"


def check_entry(entry: dict[str, Any], tv_models: Any | None) -> list[Row]:
    """Return (label, computed or None, catalog value, remark) rows for one entry."""
    try:
        if entry["architecture"] == "cnn":
            if tv_models is None:
                return [(entry["id"], None, entry["params"], "skipped (no torchvision)")]
            return [(entry["id"], count_cnn(entry, tv_models), entry["params"], "")]
        total, active, remark = count_transformer(entry)
    except Exception as exc:  # report it and go on with the next entry
        return [(entry["id"], None, entry["params"], f"ERROR {type(exc).__name__}: {exc}")]
    rows: list[Row] = [(entry["id"], total, entry["params"], remark)]
    if active is not None or entry["active_params"] is not None:
        rows.append(("  active per token", active, entry["active_params"], ""))
    return rows


def check_references(models: list[dict[str, Any]], only: list[str] | None) -> list[str]:
    """Compare catalog entries with the published exact totals; print them, return failures."""
    failures = []
    print("published exact totals:")
    for table, field in ((REFERENCE, "params"), (REFERENCE_ACTIVE, "active_params")):
        for model_id, (value, source) in table.items():
            entry = next((m for m in models if m["id"] == model_id), None)
            if entry is None or (only and model_id not in only):
                continue
            ok = entry[field] == value
            if not ok:
                failures.append(f"{model_id}: {field} {fmt(entry[field])} != published {value:,}")
            label = f"{model_id} {field}"
            print(f"  {label:40} {value:>17,}  {'yes' if ok else 'NO'}  ({source})")
    return failures


def versions(tv_models: Any | None) -> str:
    """Describe the library versions the counts come from."""
    import torch

    text = f"torch {torch.__version__}"
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        text += f", transformers {transformers.__version__}"
    except ImportError:
        text += ", transformers not installed"
    if tv_models is not None:
        import torchvision

        text += f", torchvision {torchvision.__version__}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the checks and print one row per entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--only", nargs="*", metavar="ID", help="check only these ids")
    parser.add_argument("--strict", action="store_true", help="treat skipped entries as failures")
    args = parser.parse_args(argv)

    models = json.loads(args.catalog.read_text(encoding="utf-8"))["models"]
    failures = check_structure(models)
    for problem in failures:
        print(f"catalog: {problem}")
    selected = [m for m in models if not args.only or m["id"] in args.only]

    # torchvision first, whatever is selected: transformers imports it when it is installed,
    # and a torchvision that fails half-way through its import breaks transformers too.
    tv_models = import_torchvision()
    skipped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(versions(tv_models))
        header = f"{'model':32} {'computed':>17} {'catalog':>17}  match"
        print(header)
        print("-" * len(header))
        for entry in selected:
            for label, computed, catalog, remark in check_entry(entry, tv_models):
                if computed is None:
                    verdict = remark
                    if remark.startswith("skipped"):
                        skipped += 1
                    else:
                        failures.append(f"{entry['id']}: {remark}")
                else:
                    ok = computed == catalog
                    verdict = ("yes" if ok else "NO") + (f" ({remark})" if remark else "")
                    if not ok:
                        what = entry["id"] if label == entry["id"] else f"{entry['id']} active"
                        failures.append(
                            f"{what}: computed {fmt(computed)} != catalog {fmt(catalog)}"
                        )
                print(f"{label:32} {fmt(computed):>17} {fmt(catalog):>17}  {verdict}")

    print()
    failures += check_references(models, args.only)
    print()
    if failures or (args.strict and skipped):
        for failure in failures:
            print(f"FAIL {failure}")
        if args.strict and skipped:
            print(f"FAIL {skipped} entries skipped")
        return 1
    checked = len(selected) - skipped
    print(f"all {checked} checked entries match" + (f" ({skipped} skipped)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
