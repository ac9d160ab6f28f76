"""What every row of a transformer's tables reads: the scenario, the architecture, the width
classes and the sizes of one step (Ctx), and the sources the rows cite."""

from __future__ import annotations

from dataclasses import dataclass, field

from nnmem.models.architecture import (
    Family,
    Transformer,
)
from nnmem.models.step import computes_in_16bit, fsdp_computes_in_fp32
from nnmem.models.tensors import Widths
from nnmem.scenario import (
    Attention,
    Device,
    Finetune,
    LoraTargets,
    Loss,
    Mode,
    Packing,
    Precision,
    Scenario,
    Stack,
    compile_applies,
    pipeline_applies,
)

HF = "Hugging Face transformers modeling code, checked against benchmarks/accuracy/inventory.md"
HF_LOSS = (
    "transformers loss_utils.py ForCausalLMLoss: logits.float(), then cross_entropy, which "
    "saves an fp32 log-softmax (measured: benchmarks/accuracy/inventory.md)"
)
ZERO_SOURCE = "Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054 §5.3; DeepSpeed stage3.py"
HF_CACHE = (
    "transformers cache_utils.py DynamicCache: per layer a key and a value tensor "
    "[b, a_kv, tokens, d], grown with torch.cat at each step"
)
LLAMA_INFERENCE = (
    "measured live set at the prefill peak (benchmarks/accuracy/inventory.md §19-27): the "
    "residual, normed hidden and MLP intermediates of the running layer"
)


TRL_FUSED_HEAD = (
    "TRL 1.16 trl/trainer/sft_trainer.py SFTTrainer.__init__ patches the model with "
    'add_fused_lm_head(outputs=("log_probs", "entropy", "is_top1")) and '
    "SFTTrainer.compute_loss calls model(**inputs, fused_lm_head=True) for its default "
    'loss_type="nll" (no compute_loss_func, no label smoothing; use_liger_kernel cannot '
    "replace it); trl/trainer/utils.py add_fused_lm_head._fused_forward runs the backbone "
    "and passes hidden_states[mask] (a copy, labels != -100) to "
    "trl/kernels/chunked_logprob.py _ChunkedLogProbFunction, so no (b, s, V) logits exist: "
    "the entropy and mean_token_accuracy metrics are per-token outputs of the same kernel"
)


def trl_fused_head(s: Scenario, t: Transformer) -> bool:
    """Whether TRL's fused LM head replaces the logits and transformers' loss: the
    ``trl_sft`` stack training a causal LM with the standard loss (:data:`TRL_FUSED_HEAD`)."""
    return (
        s.stack is Stack.TRL_SFT
        and s.mode is Mode.TRAINING
        and s.loss is Loss.STANDARD
        and t.head.value == "causal_lm"
        and s.tensor_parallel == 1
    )


# --- context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """The sizes and settings the row tables read."""

    t: Transformer
    s: Scenario
    widths: Widths
    sizes: dict[str, int]
    amp: bool
    eager: bool  # attention materializes scores (eager, or SDPA's math fallback)
    lora: frozenset[str] | None  # adapted linear layers; None: every weight trains
    cpu: bool = False
    attn_dropout: float = 0.0
    lora_dropout: float = 0.0
    compiled: bool = False  # torch.compile'd blocks (Inductor's saved set), see compiled()
    # The attention mask the batch layout makes (see mask_kind): "" none, "padding"
    # transformers' padding mask, "block" torchtune's block-causal bool mask, "flex"
    # torchtune's flex-attention BlockMask.
    mask: str = ""
    notes: list[str] = field(default_factory=list)


def _widths(s: Scenario) -> Widths:
    cpu = s.device is Device.CPU
    if s.precision is Precision.FP32 and not computes_in_16bit(s):
        return Widths(res=4, act=4, cpu=cpu)
    if s.precision.is_amp and not computes_in_16bit(s):
        return Widths(res=4, act=2, cpu=cpu, amp=True)
    if fsdp_computes_in_fp32(s):
        # FSDP2 gathers 16-bit weights as fp32 (param_dtype fp32) and computes in fp32
        return Widths(res=4, act=4, cpu=cpu)
    return Widths(res=2, act=2, cpu=cpu)


def _lora_names(t: Transformer, targets: LoraTargets) -> frozenset[str]:
    names = {
        LoraTargets.QV: {"q", "v"},
        LoraTargets.ATTENTION: {"q", "k", "v", "o"},
        LoraTargets.ALL_LINEAR: {"q", "k", "v", "o", "gate", "up", "down"},
        # torchtune configs/llama3_2/3B_lora_single_device.yaml: lora_attn_modules
        # ['q_proj', 'v_proj', 'output_proj'], apply_lora_to_mlp: True.
        LoraTargets.QVO_MLP: {"q", "v", "o", "gate", "up", "down"},
        # fsdp_qlora train.py: lora_target_modules "all" is ["k_proj", "q_proj", "v_proj",
        # "up_proj", "down_proj", "gate_proj"], no o_proj.
        LoraTargets.QKV_MLP: {"q", "k", "v", "gate", "up", "down"},
    }[targets]
    if not t.gated_mlp:
        names.discard("gate")
    if t.family is Family.MOE:
        # transformers 5.x stores the experts as fused 3-D nn.Parameters (MixtralExperts,
        # Qwen3MoeExperts: gate_up_proj, down_proj), and peft's "all-linear"
        # (tuners_utils._maybe_include_all_linear_layers) matches nn.Linear and Conv1D
        # modules only, so it adapts the attention and no expert.
        names -= {"gate", "up", "down"}
    return frozenset(names)


LLAMA4 = ("llama4", "llama4_text")


def _sdpa_refused(t: Transformer) -> bool:
    """Whether transformers refuses SDPA for this model (Gemma 2's softcapping)."""
    return t.model_type == "gemma2"


def _softcap(t: Transformer, key: str) -> float:
    """A softcapping value from the config (``attn_logit_softcapping``,
    ``final_logit_softcapping``), 0 when the model has none."""
    value = t.config.get(key)
    return float(value) if isinstance(value, int | float) and value else 0.0


SOFTCAP = (
    "transformers 5.24 modeling_gemma2.py: eager_attention_forward divides the scores by "
    "attn_logit_softcapping, applies tanh and multiplies back, and Gemma2ForCausalLM does "
    "the same to the logits with final_logit_softcapping; tanh saves its output for "
    "backward (derivatives.yaml), one more tensor of the scores' and of the logits' shape, "
    "as a saved-tensor trace of Gemma2ForCausalLM shows"
)


def softcap_notes(s: Scenario, t: Transformer) -> list[str]:
    """What Gemma 2's softcapping changes, in words."""
    notes = []
    if _sdpa_refused(t) and s.attention is Attention.SDPA:
        notes.append(
            "Gemma 2: transformers refuses SDPA for it (softcapping), so it runs eager "
            "attention and the estimate stores the scores as eager attention does."
        )
    if s.mode is Mode.TRAINING and (
        _softcap(t, "attn_logit_softcapping") or _softcap(t, "final_logit_softcapping")
    ):
        notes.append(
            "Logit softcapping: tanh keeps its output for the backward pass, one more "
            "tensor of the attention scores' shape per layer and one of the logits' shape."
        )
    return notes


def context(s: Scenario) -> Ctx:
    """Sizes and settings for ``s``."""
    t = s.model
    assert isinstance(t, Transformer)
    seq = t.seq_from_image if t.family is Family.VIT else s.seq_len
    if s.image_size and t.family is Family.VIT:
        seq = (s.image_size // t.patch_size) ** 2 + 1
    batch = s.batch_size
    if packing(s) is Packing.PADDING_FREE:
        # The collator concatenates the batch's rows into one (TRL sft_trainer.py
        # DataCollatorForLanguageModeling with padding_free: input_ids = [torch.cat(...)];
        # transformers data_collator.py DataCollatorWithFlattening): the layers see one
        # row of batch × seq_len tokens, with position_ids and no attention mask.
        batch, seq = 1, s.batch_size * seq
    if context_parallel(s) > 1:
        # torch _context_parallel_buffers shards the inputs, labels and positions along
        # the sequence: each rank runs the layers and the loss on seq_len / cp tokens.
        seq //= s.context_parallel
    sizes = {
        "one": 1,
        "b": batch,
        "s": seq,
        # The memory-efficient kernel pads a bias's last dimension to a multiple of 16
        # (aten/src/ATen/native/transformers/attention.cpp preprocess_mask: pad_bias with
        # mem_eff_alignment = 16, then a slice of the padded tensor); the CPU's does not.
        "s16": seq if s.device is Device.CPU else -(-seq // 16) * 16,
        # flex attention's BlockMask holds one entry per 128 × 128 block
        # (torch/nn/attention/flex_attention.py _DEFAULT_SPARSE_BLOCK_SIZE = 128)
        "n128": -(-seq // 128),
        "t": s.decoder_seq_len or s.seq_len,
        "h": t.hidden,
        "f": t.intermediate,
        "a": t.heads,
        "a_kv": t.kv_heads,
        "d": t.head_dim,
        "q": t.q_width,
        "kv": t.kv_width,
        "V": t.vocab,
        "c": max(t.num_labels, 1),
        "E": max(t.experts, 1),
        # Llama 4 sends every token through every expert (modeling_llama4.py
        # Llama4TextMoe.forward: hidden_states.repeat(E, 1), scaled by the router scores,
        # then Llama4TextExperts.forward: one bmm over all E experts).
        "k": max(t.experts if t.model_type in LLAMA4 else t.experts_per_token, 1),
        "fs": max(t.shared_expert_intermediate, 1),
        "r": s.lora_rank,
        "C": t.channels or 3,
        "I": s.image_size or t.image_size or 1,
    }
    widths = _widths(s)
    cpu = widths.cpu
    dropout = t.attention_dropout if s.mode is Mode.TRAINING else 0.0
    # SDPA applies dropout inside the CUDA kernels; on the CPU it falls back to the math
    # kernel, which stores scores like eager attention (torch/nn/functional.py).
    # transformers 5.24 Gemma2PreTrainedModel sets _supports_sdpa = False ("sdpa does not
    # support softcapping"): Gemma 2 runs eager attention unless FlashAttention 2 or flex
    # attention is installed and chosen, so the rows are the eager ones.
    # Latent attention's value head (v_head_dim) differs from its query/key head, which
    # the CPU's fused SDPA kernel does not take: it falls back to the math kernel too
    # (measured: transformers 5.25 DeepseekV3Attention on the CPU, "sdpa_math_fallback").
    eager = s.attention is Attention.EAGER or (cpu and (dropout > 0 or t.mla)) or _sdpa_refused(t)
    lora = _lora_names(t, s.lora_targets) if s.finetune is Finetune.LORA else None
    return Ctx(
        t=t,
        s=s,
        widths=widths,
        sizes=sizes,
        amp=widths.amp,
        eager=eager,
        lora=lora,
        cpu=cpu,
        attn_dropout=dropout,
        lora_dropout=float(s.lora_dropout),
        compiled=compiled(s),
        mask=mask_kind(s, eager),
    )


def packing(s: Scenario) -> Packing:
    """The batch layout of a decoder language model's training step; ``off`` where the
    key is not read."""
    if s.mode is not Mode.TRAINING or not pipeline_applies(s.model):
        return Packing.OFF
    return s.packing_used


def mask_kind(s: Scenario, eager: bool) -> str:
    """The attention mask the layout makes a training step hold.

    - ``padded`` under SDPA: the collator's attention_mask has zeros, so transformers
      builds a (b, 1, s, s) bool mask (masking_utils.py sdpa_mask: _ignore_causal_mask_sdpa
      skips it only when no token is masked), which SDPA takes: "padding".
    - ``packed`` under the plain (torchtune-style) loop: torchtune's PackedDataset rows
      carry a block-causal mask (torchtune/modules/attention_utils.py
      packed_block_causal_mask): a flex-attention BlockMask on a CUDA GPU
      (_SUPPORTS_FLEX_ATTENTION: compute capability ≥ 7.5), "flex"; a (b, s, s) bool
      mask (create_block_causal_mask) on the CPU, "block".
    - ``packed`` under the HF Trainer or TRL (packing_strategy="wrapped"): every row is
      full and its attention_mask all ones, so SDPA runs causal without a mask, as ``off``.
    - ``padding_free``: no mask (the FlashAttention 2/3 varlen path TRL supports it with;
      position_ids mark the sequences).
    - eager attention: transformers' eager_mask builds a float (b, 1, s, s) mask for every
      layout and the scores' add saves none of it, so no layout changes it.
    """
    layout = packing(s)
    if eager:
        return ""
    if layout is Packing.PADDED:
        return "padding"
    hf = s.stack in (Stack.HF_TRAINER, Stack.TRL_SFT)
    if layout is Packing.PACKED and not hf:
        return "block" if s.device is Device.CPU else "flex"
    return ""


COMPILED_BLOCK = (
    "torch.compile of each block (torchtitan parallelize_llama apply_compile, torchtune "
    "training.compile_model): Inductor's min-cut partition (torch/_functorch/partitioners.py "
    "min_cut_rematerialization_partition) saves each RMSNorm's 16-bit input and rstd instead "
    "of its fp32 upcast and normalized output, and recomputes SiLU(gate) in backward; "
    "measured: benchmarks/stacks/compiled_block.py (torch 2.13)"
)


def compiled(s: Scenario) -> bool:
    """Whether the rows are those of compiled blocks: measured where the block computes in
    16 bits (pure 16-bit weights, FSDP2 or DeepSpeed); under autocast the eager rows stay."""
    return (
        s.torch_compile
        and s.mode is Mode.TRAINING
        and compile_applies(s.model)
        and not _widths(s).amp
    )


def context_parallel(s: Scenario) -> int:
    """The context-parallel degree the training step runs with (1 where it is not read)."""
    applies = s.mode is Mode.TRAINING and pipeline_applies(s.model)
    return s.context_parallel if applies else 1


def expert_parallel(s: Scenario) -> int:
    """The expert-parallel degree the training step runs with (1 where it is not read)."""
    read = "expert_parallel" not in s.inactive_fields()
    return s.expert_parallel if read and s.mode is Mode.TRAINING else 1
