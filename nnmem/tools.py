"""The formulas behind the related tools: throughput, training compute, what fits a GPU.

Pure functions on numbers and catalog entries, no I/O; :mod:`nnmem.web.tools` reads the
forms and paints the results. Memory figures come from :func:`nnmem.estimate.estimate`, so
the tools agree with the calculator by construction.

Sources:

- Training compute ``C = 6·N·D``: Kaplan et al. 2020, *Scaling Laws for Neural Language
  Models*, arXiv 2001.08361 §2.1 (2N FLOPs per token forward, twice that backward);
  Hoffmann et al. 2022 (Chinchilla), arXiv 2203.15556 §3, uses the same ``C ≈ 6ND`` and
  finds about 20 training tokens per parameter compute-optimal (Table 3).
- Forward FLOPs per token ``2·N + 2·n_layer·n_ctx·d_attn``: Kaplan et al. 2020 Table 1.
- Model FLOPs utilisation (MFU): Chowdhery et al. 2022, *PaLM*, arXiv 2204.02311 §4.1
  and Appendix B (achieved FLOPs over peak FLOPs).
- Decode as a memory-bandwidth roofline: Williams, Waterman and Patterson 2009,
  *Roofline*, CACM 52(4); Pope et al. 2022, *Efficiently Scaling Transformer Inference*,
  arXiv 2211.05102 §2 (each decode step loads every weight and the KV cache once).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from nnmem.estimate import estimate
from nnmem.formats import bits, is_float
from nnmem.models.architecture import (
    Family,
    Transformer,
    active_parameters,
    parameter_counts,
    parameter_tensors,
)
from nnmem.scenario import Scenario

TERA = 10**12
SECONDS_PER_HOUR = 3600
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022, Table 3 (≈20 tokens per parameter)


# --- training compute ---------------------------------------------------------------------


def training_flops(params: int, tokens: int) -> int:
    """Training compute ``C = 6·N·D``: 2N FLOPs per token forward, 4N backward.

    Kaplan et al. 2020 §2.1; Hoffmann et al. 2022 §3. A 7B model on 1T tokens:

    >>> training_flops(7 * 10**9, 10**12)
    42000000000000000000000
    """
    return 6 * params * tokens


def gpu_seconds(flops: int | Fraction, peak_tflops: Fraction, mfu: Fraction) -> Fraction:
    """Seconds one GPU needs for ``flops`` at ``mfu`` of its peak rate.

    MFU (model FLOPs utilisation) is the achieved share of the peak (Chowdhery et al.
    2022 §4.1). 10^15 FLOPs at 50% of 1,000 TFLOPS take 2 s:

    >>> gpu_seconds(10**15, Fraction(1000), Fraction(1, 2))
    Fraction(2, 1)
    """
    return Fraction(flops) / (peak_tflops * TERA * mfu)


def chinchilla_tokens(params: int) -> int:
    """The compute-optimal training tokens for ``params``, about 20 per parameter.

    Hoffmann et al. 2022 Table 3 (e.g. 70B parameters: 1.4T tokens).

    >>> chinchilla_tokens(70 * 10**9)
    1400000000000
    """
    return CHINCHILLA_TOKENS_PER_PARAM * params


@dataclass(frozen=True)
class TrainingRun:
    """What a training run of ``6·N·D`` FLOPs takes on a number of GPUs."""

    flops: int
    achieved_tflops: Fraction  # per GPU: its peak times the utilisation
    tokens_per_second_per_gpu: Fraction  # achieved rate ÷ 6·N FLOPs per token
    gpu_hours: Fraction
    days: Fraction  # wall clock with every GPU busy
    cost: Fraction  # GPU-hours × the price of one


def training_run(
    params: int, tokens: int, peak_tflops: Fraction, mfu: Fraction, gpus: int, price: Fraction
) -> TrainingRun:
    """Compute, time and cost of training ``params`` on ``tokens`` (``C = 6·N·D``).

    A 7B model on 1T tokens at 50% of 1,000 TFLOPS, on 8 GPUs at 2 per GPU-hour:

    >>> run = training_run(7 * 10**9, 10**12, Fraction(1000), Fraction(1, 2), 8, Fraction(2))
    >>> float(run.gpu_hours), float(run.days), float(run.cost)
    (23333.333333333332, 121.52777777777777, 46666.666666666664)
    """
    flops = training_flops(params, tokens)
    achieved = peak_tflops * mfu
    gpu_hours = gpu_seconds(flops, peak_tflops, mfu) / SECONDS_PER_HOUR
    return TrainingRun(
        flops=flops,
        achieved_tflops=achieved,
        tokens_per_second_per_gpu=achieved * TERA / (6 * params),
        gpu_hours=gpu_hours,
        days=gpu_hours / gpus / 24,
        cost=gpu_hours * price,
    )


# --- inference throughput -----------------------------------------------------------------


def matmul_params(t: Transformer) -> int:
    """Parameters that take part in a matmul for each token: all but the input embedding
    lookups; the LM head counts once even when tied to the embedding; an MoE counts only
    the experts a token is routed to.

    Kaplan et al. 2020 Table 1 counts the de-embedding (``2·d_model·n_vocab``) and not the
    embedding lookup. GPT-2 small: 124,439,808 parameters, 38,597,376 + 786,432 of them
    embedding rows, and its tied head multiplies by the 38,597,376 token rows again:

    >>> from nnmem.models.architecture import from_config
    >>> gpt2 = from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12, "vocab_size": 50257, "n_positions": 1024})
    >>> matmul_params(gpt2)
    123653376
    """
    counts = parameter_counts(t)
    tied_head = t.vocab * t.hidden if t.tied_embeddings and t.family is not Family.VIT else 0
    return active_parameters(t) - counts["embeddings"] + tied_head


def prefill_flops(t: Transformer, batch: int, tokens: int) -> int:
    """Forward FLOPs of a causal prompt of ``tokens`` for ``batch`` sequences.

    Per token, 2 FLOPs per matmul parameter (Kaplan et al. 2020 Table 1), plus attention:
    token i scores against the i tokens up to it (QKᵀ) and mixes their values (AV), 2·d
    FLOPs each per head dimension, so ``4·L·d_attn·i`` FLOPs; summed over i = 1..s that
    is ``2·L·d_attn·s·(s+1)`` (Kaplan's ``2·n_layer·n_ctx·d_attn`` per token with the
    causal mask's average context).

    >>> from nnmem.models.architecture import from_config
    >>> tiny = from_config({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
    ...     "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10})
    >>> matmul_params(tiny), prefill_flops(tiny, 1, 3)
    (744, 4656)
    """
    linear = 2 * matmul_params(t) * tokens
    attention = 2 * t.layers * t.q_width * tokens * (tokens + 1)
    return batch * (linear + attention)


def experts_touched(experts: int, per_token: int, batch: int) -> Fraction:
    """The expected share of a layer's experts that ``batch`` tokens route to.

    Each token picks ``per_token`` of ``experts`` (top-k routing, Jiang et al. 2024,
    *Mixtral of Experts*, arXiv 2401.04088 §2); if the choices are uniform and independent,
    an expert is missed by one token with probability 1 − k/E and by all b tokens with
    (1 − k/E)^b. Mixtral (E = 8, k = 2) at batch 1 reads 2/8 of its experts, at batch 4
    1 − (3/4)^4 = 175/256 of them:

    >>> experts_touched(8, 2, 1), experts_touched(8, 2, 4)
    (Fraction(1, 4), Fraction(175, 256))
    """
    return 1 - (1 - Fraction(per_token, experts)) ** batch


def expert_weight_bytes(scenario: Scenario, t: Transformer) -> int:
    """Bytes of the routed experts' weights in the scenario's format: they are linear
    layers, so they take the format's bits per weight (``transformer.weight_terms``)."""
    elements = sum(p.elements for p in parameter_tensors(t) if ".experts." in p.name)
    fmt = scenario.precision.weight_format
    per_weight = (
        Fraction(4 if fmt.value == "fp32" else 2)
        if is_float(fmt)
        else bits(fmt, scenario.group_size) / 8
    )
    return int(elements * per_weight)


@dataclass(frozen=True)
class Throughput:
    """What the roofline gives for one generation request."""

    weight_bytes: int
    step_weight_bytes: int  # read by one decode step: a mixture of experts skips some
    kv_bytes_per_token: int  # per sequence, all layers
    prefill_flops: int
    prefill_seconds: Fraction
    decode_seconds: Fraction
    decode_memory_seconds: Fraction
    decode_compute_seconds: Fraction
    new_tokens: int
    batch: int

    @property
    def memory_bound(self) -> bool:
        """Whether reading memory, not arithmetic, sets the decode time."""
        return self.decode_memory_seconds >= self.decode_compute_seconds

    @property
    def tokens_per_second(self) -> Fraction:
        """Generated tokens per second for one sequence, averaged over the generation."""
        return Fraction(self.new_tokens) / self.decode_seconds if self.new_tokens else Fraction(0)

    @property
    def batch_tokens_per_second(self) -> Fraction:
        """Generated tokens per second over the whole batch."""
        return self.tokens_per_second * self.batch

    @property
    def total_seconds(self) -> Fraction:
        """Prefill then every decode step."""
        return self.prefill_seconds + self.decode_seconds


def throughput(
    scenario: Scenario,
    bandwidth_bytes_per_s: int,
    peak_tflops: Fraction,
    bandwidth_efficiency: Fraction,
    mfu: Fraction,
    prompt_tokens: int,
    new_tokens: int,
) -> Throughput:
    """Prefill time from FLOPs and decode time from the memory-bandwidth roofline.

    Prefill is compute-bound: ``prefill_flops / (peak · mfu)``. The decode step that makes
    token i (i = 1..G) loads every weight and the KV cache of the ``P + i − 1`` tokens
    before it, and does ``2·N`` FLOPs per sequence plus attention; it takes the longer of
    its memory time and its compute time (the roofline, Williams et al. 2009; Pope et al.
    2022 §2). Summed over the G steps the cache reads are ``k·b·(G·P + G(G−1)/2)`` bytes
    for ``k`` cache bytes per token. The weights' bytes are nnmem's estimate for the
    scenario (its format, scales and 16-bit leftovers included); a mixture of experts
    reads only the experts its batch is routed to (:func:`experts_touched`).
    """
    model = scenario.model
    assert isinstance(model, Transformer)
    from nnmem.models.transformer import kv_cache_term

    b, p, g = scenario.batch_size, prompt_tokens, new_tokens
    weights = estimate(scenario).component("weights").bytes
    step_weights = weights
    if model.family is Family.MOE:
        skipped = 1 - experts_touched(model.experts, model.experts_per_token, b)
        step_weights = weights - int(expert_weight_bytes(scenario, model) * skipped)
    kv_per_token = kv_cache_term(scenario, model, 1, decoding=False).bytes // b
    bandwidth = bandwidth_bytes_per_s * bandwidth_efficiency
    rate = peak_tflops * TERA * mfu
    flops = prefill_flops(model, b, p)
    cache_reads = kv_per_token * b * (g * p + g * (g - 1) // 2)
    memory = (g * step_weights + cache_reads) / bandwidth
    # Attention of step i: 4·L·d_attn·(P + i) FLOPs per sequence, summed over i = 1..G.
    attention = 4 * model.layers * model.q_width * (g * p + g * (g + 1) // 2)
    compute = Fraction(b * (2 * matmul_params(model) * g + attention)) / rate
    return Throughput(
        weight_bytes=weights,
        step_weight_bytes=step_weights,
        kv_bytes_per_token=kv_per_token,
        prefill_flops=flops,
        prefill_seconds=Fraction(flops) / rate,
        decode_seconds=max(memory, compute),
        decode_memory_seconds=memory,
        decode_compute_seconds=compute,
        new_tokens=g,
        batch=b,
    )
