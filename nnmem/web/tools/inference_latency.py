"""The inference-latency tool: prefill and decode time from bandwidth and FLOPS."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from nnmem import catalog, tools
from nnmem.estimate import estimate
from nnmem.formats import LABELS as FORMAT_LABELS
from nnmem.formats import Format
from nnmem.render.markup import escape
from nnmem.scenario import LABELS, KvDtype, parse
from nnmem.units import duration, fixed, human
from nnmem.validation import whole
from nnmem.web.fields import Field
from nnmem.web.tools import common
from nnmem.web.tools.common import Tool, Values

# --- inference latency --------------------------------------------------------------------

LAT_PRECISIONS = tuple(
    (fmt.value, FORMAT_LABELS[fmt])
    for fmt in (
        Format.BF16, Format.FP16, Format.FP8, Format.INT8, Format.AWQ, Format.GPTQ,
        Format.NF4, Format.Q8_0, Format.Q4_K_M,
    )
)  # fmt: skip
KV_TYPES = tuple((k.value, LABELS[k]) for k in (KvDtype.AUTO, KvDtype.FP8))
LAT_BATCH = whole("batch_size", "Batch size", 4_096)
LAT_PROMPT = whole("prompt_tokens", "Prompt tokens", 1_000_000)
LAT_NEW = whole("new_tokens", "Generated tokens", 1_000_000)
LAT_BW = common.decimal(
    "bandwidth_efficiency", "Bandwidth efficiency", "0.1", "100", common.PERCENT
)
LAT_MFU = common.decimal("prefill_mfu", "Prefill utilisation (MFU)", "0.1", "100", common.PERCENT)


def inference_latency(values: Values) -> dict[str, Any]:
    """Prefill and decode times from the roofline (:func:`nnmem.tools.throughput`)."""
    v = common.read_all(
        preset=common.choice("preset", "Model", common.llm_options(), values),
        precision=common.choice("precision", "Weight format", LAT_PRECISIONS, values),
        kv=common.choice("kv_cache_dtype", "KV-cache type", KV_TYPES, values),
        gpu=common.choice("gpu", "GPU", common.gpu_options(need_flops=True), values),
        batch=common.number(LAT_BATCH, values),
        prompt=common.number(LAT_PROMPT, values),
        new=common.number(LAT_NEW, values),
        bw=common.number(LAT_BW, values),
        mfu=common.number(LAT_MFU, values),
    )
    gpu = catalog.gpus()[v["gpu"]]
    assert gpu.bandwidth_bytes_per_s and gpu.fp16_tflops
    prompt, new, batch = int(v["prompt"]), int(v["new"]), int(v["batch"])
    scenario = parse(
        {
            "model": "preset",
            "preset": v["preset"],
            "mode": "inference",
            "precision": v["precision"],
            "kv_cache_dtype": v["kv"],
            "batch_size": batch,
            "seq_len": prompt + new,
        }
    )
    peak = Fraction(str(gpu.fp16_tflops))
    r = tools.throughput(
        scenario,
        gpu.bandwidth_bytes_per_s,
        peak,
        common.as_share(v["bw"]),
        common.as_share(v["mfu"]),
        prompt,
        new,
    )
    memory = estimate(scenario, gpu.id).total_bytes
    fits = memory <= gpu.usable_bytes
    model = catalog.models()[v["preset"]]
    bound = "memory bandwidth" if r.memory_bound else "compute"
    figures = [
        common.figure_html(
            "tokens_per_s",
            "Decode speed per sequence",
            r.tokens_per_second,
            f"{fixed(r.tokens_per_second, 1)} tokens/s",
        ),
        common.figure_html(
            "batch_tokens_per_s",
            "Decode speed, whole batch",
            r.batch_tokens_per_second,
            f"{fixed(r.batch_tokens_per_second, 1)} tokens/s",
        ),
        common.figure_html(
            "prefill_s",
            "Prefill (time to first token)",
            r.prefill_seconds,
            duration(r.prefill_seconds),
        ),
        common.figure_html("total_s", "Whole request", r.total_seconds, duration(r.total_seconds)),
    ]
    bw = Fraction(gpu.bandwidth_bytes_per_s, 10**9) * common.as_share(v["bw"])
    steps = [
        f"Weights read at every decode step: <strong>{human(r.step_weight_bytes)}</strong> "
        f"({escape(model.name)} in {escape(dict(LAT_PRECISIONS)[v['precision']])}, from "
        "nnmem's weight estimate, scales included"
        + (
            f"; of its {human(r.weight_bytes)}, only the experts that a batch of {batch:,} "
            "is expected to be routed to)."
            if r.step_weight_bytes != r.weight_bytes
            else ")."
        ),
        f"KV cache per token per sequence: <strong>{human(r.kv_bytes_per_token)}</strong>; "
        f"the step that makes token i also reads the cache of the {prompt:,} + i − 1 tokens "
        "before it.",
        f"Bandwidth used: {fixed(Fraction(gpu.bandwidth_bytes_per_s, 10**9), 0)} GB/s peak × "
        f"{v['bw']}% = {fixed(bw, 0)} GB/s; compute: {gpu.fp16_tflops:,} TFLOPS dense "
        f"{(gpu.tflops_format or 'fp16').upper()} "
        f"× {v['mfu']}%.",
        f"Decode of {new:,} tokens: memory time {duration(r.decode_memory_seconds)}, compute "
        f"time {duration(r.decode_compute_seconds)}: <strong>{bound}-bound</strong> at "
        f"batch {batch:,}.",
        f"Prefill: {common.flops_html(r.prefill_flops)} (2·N per token plus attention) at the "
        f"utilisation above: {duration(r.prefill_seconds)}.",
    ]
    verdict = (
        f"Fits on one {escape(gpu.name)}: nnmem estimates {human(memory)} of "
        f"{human(gpu.usable_bytes)}."
        if fits
        else f"Does not fit on one {escape(gpu.name)}: nnmem estimates {human(memory)} of "
        f"{human(gpu.usable_bytes)}; the times assume it did (for example split over GPUs "
        "with the same total bandwidth)."
    )
    html = (
        f'<dl class="figures">{"".join(figures)}</dl>'
        f'<p class="tool-verdict" data-fits="{str(fits).lower()}">{verdict}</p>'
        + common.list_html(steps)
    )
    return {
        "html": html,
        "values": {
            "tokens_per_s": common.figure(r.tokens_per_second),
            "batch_tokens_per_s": common.figure(r.batch_tokens_per_second),
            "prefill_s": common.figure(r.prefill_seconds),
            "total_s": common.figure(r.total_seconds),
        },
    }


TOOL = Tool(
    (
        Field(
            "preset",
            "Model",
            "A catalog language model.",
            "choice",
            "llama-3.1-8b",
            options=common.llm_options(),
        ),
        Field(
            "precision",
            "Weight format",
            "How the weights are stored.",
            "choice",
            "bf16",
            options=LAT_PRECISIONS,
        ),
        Field(
            "kv_cache_dtype",
            "KV-cache type",
            "FP8 halves the cache that every decode step reads.",
            "choice",
            "auto",
            options=KV_TYPES,
        ),
        common.gpu_field("h100-sxm-80gb"),
        Field(
            "batch_size",
            "Batch size",
            "Sequences generated together.",
            "number",
            "1",
            inputmode="numeric",
        ),
        Field(
            "prompt_tokens",
            "Prompt tokens",
            "Tokens read before the first generated one.",
            "number",
            "1024",
            "tokens",
            "numeric",
        ),
        Field(
            "new_tokens",
            "Generated tokens",
            "Tokens generated per sequence.",
            "number",
            "256",
            "tokens",
            "numeric",
        ),
        Field(
            "bandwidth_efficiency",
            "Bandwidth efficiency",
            "Share of the peak memory bandwidth decode kernels reach; 60-85% is typical.",
            "number",
            "75",
            "%",
        ),
        Field(
            "prefill_mfu",
            "Prefill utilisation (MFU)",
            "Share of the peak FLOPS the prompt's matmuls reach; 40-70% is typical.",
            "number",
            "50",
            "%",
        ),
    ),
    inference_latency,
)
