"""GGUF tensor types and the tensor-type mixture llama.cpp's quantizer picks.

Block sizes and bytes are ggml's ``type_traits`` table (``ggml/src/ggml.c``), whose
``type_size`` entries are the ``block_*`` structs of ``ggml/src/ggml-common.h``.
The mixture follows ``src/llama-quant.cpp`` (``llama_ftype_get_default_type``,
``tensor_allows_quantization``, ``llama_tensor_get_type_impl``,
``tensor_type_fallback``) of the llama.cpp vendored in llama-cpp-python 0.3.36.

>>> row_bytes("Q4_K", 4096)
2304
>>> row_bytes("Q8_0", 4096)
4352
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> (ggml type id, weights per block, bytes per block).
# ggml/src/ggml.c type_traits[]: blck_size and type_size = sizeof(block_*) from
# ggml/src/ggml-common.h (e.g. block_q8_0 = fp16 d + 32 int8 = 34 B; block_q4_K =
# 2 fp16 + 12 scale bytes + 128 nibble bytes = 144 B per 256).
GGML_TYPES: dict[str, tuple[int, int, int]] = {
    "F32": (0, 1, 4),
    "F16": (1, 1, 2),
    "Q4_0": (2, 32, 18),
    "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34),
    "Q8_1": (9, 32, 40),
    "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176),
    "Q6_K": (14, 256, 210),
    "Q8_K": (15, 256, 292),
    "IQ2_XXS": (16, 256, 66),
    "IQ2_XS": (17, 256, 74),
    "IQ3_XXS": (18, 256, 98),
    "IQ1_S": (19, 256, 50),
    "IQ4_NL": (20, 32, 18),
    "IQ3_S": (21, 256, 110),
    "IQ2_S": (22, 256, 82),
    "IQ4_XS": (23, 256, 136),
    "I8": (24, 1, 1),
    "I16": (25, 1, 2),
    "I32": (26, 1, 4),
    "I64": (27, 1, 8),
    "F64": (28, 1, 8),
    "IQ1_M": (29, 256, 56),
    "BF16": (30, 1, 2),
    "TQ1_0": (34, 256, 54),
    "TQ2_0": (35, 256, 66),
    # block_mxfp4: one E8M0 scale byte + 16 bytes of E2M1 pairs per 32 weights.
    "MXFP4": (39, 32, 17),
    # block_nvfp4: 4 UE4M3 scales (one per 16) + 32 bytes of E2M1 pairs per 64.
    "NVFP4": (40, 64, 36),
    "Q1_0": (41, 128, 18),
    "Q2_0": (42, 64, 18),
}


def bits_per_weight(type_name: str) -> float:
    """Storage bits per weight of one ggml type.

    >>> bits_per_weight("Q4_K"), bits_per_weight("Q6_K"), bits_per_weight("MXFP4")
    (4.5, 6.5625, 4.25)
    """
    _, blck, size = _type(type_name)
    return size * 8 / blck


def _type(name: str) -> tuple[int, int, int]:
    key = name.upper()
    if key not in GGML_TYPES:
        raise ValueError(f"unknown GGUF tensor type {name!r}; known: {', '.join(GGML_TYPES)}")
    return GGML_TYPES[key]


def row_bytes(type_name: str, ncols: int) -> int:
    """Bytes of one row of ``ncols`` weights: ggml.c ``ggml_row_size``
    (``type_size * ne / blck_size``)."""
    _, blck, size = _type(type_name)
    if ncols % blck:
        raise ValueError(f"{ncols} columns are not a multiple of the {type_name} block ({blck})")
    return size * ncols // blck


def tensor_bytes(type_name: str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes of a tensor; ``shape`` is GGUF order (ne0 = row length first)."""
    n_rows = 1
    for d in shape[1:]:
        n_rows *= d
    return row_bytes(type_name, shape[0]) * n_rows


# llama_ftype name -> (LLAMA_FTYPE_* number, default ggml type):
# src/llama-quant.cpp llama_ftype_get_default_type.
FILE_TYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"),
    "F16": (1, "F16"),
    "Q4_0": (2, "Q4_0"),
    "Q4_1": (3, "Q4_1"),
    "Q8_0": (7, "Q8_0"),
    "Q5_0": (8, "Q5_0"),
    "Q5_1": (9, "Q5_1"),
    "Q2_K": (10, "Q2_K"),
    "Q3_K_S": (11, "Q3_K"),
    "Q3_K_M": (12, "Q3_K"),
    "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"),
    "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"),
    "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"),
    "IQ2_XXS": (19, "IQ2_XXS"),
    "IQ2_XS": (20, "IQ2_XS"),
    "Q2_K_S": (21, "Q2_K"),
    "IQ3_XS": (22, "IQ3_S"),
    "IQ3_XXS": (23, "IQ3_XXS"),
    "IQ1_S": (24, "IQ1_S"),
    "IQ4_NL": (25, "IQ4_NL"),
    "IQ3_S": (26, "IQ3_S"),
    "IQ3_M": (27, "IQ3_S"),
    "IQ2_S": (28, "IQ2_XS"),
    "IQ2_M": (29, "IQ2_S"),
    "IQ4_XS": (30, "IQ4_XS"),
    "IQ1_M": (31, "IQ1_M"),
    "BF16": (32, "BF16"),
    "MXFP4_MOE": (38, "MXFP4"),
}

_IQ_LOW = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}


@dataclass
class QuantState:
    """The counters llama.cpp's ``quantize_state_impl`` keeps while it walks the
    tensors in file order, and the model facts the rules read."""

    n_layer: int
    n_head: int
    n_head_kv: int
    n_attention_wv: int
    n_expert: int = 0
    tied_embeddings: bool = True
    is_70b: bool = False  # llama.cpp's LLM_TYPE_70B (a 80-layer Llama)
    i_attention_wv: int = 0
    i_ffn_down: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // max(1, self.n_head_kv)


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # llama_tensor_get_type_impl: use_more_bits
    return (
        i_layer < n_layers // 8
        or i_layer >= 7 * n_layers // 8
        or (i_layer - n_layers // 8) % 3 == 2
    )


def _category(name: str) -> str:
    # src/llama-quant.cpp tensor_get_category
    if name == "output.weight":
        return "OUTPUT"
    if name == "token_embd.weight":
        return "TOKEN_EMBD"
    for key, cat in (
        ("attn_qkv.weight", "ATTENTION_QKV"),
        ("attn_kv_b.weight", "ATTENTION_KV_B"),
        ("attn_v.weight", "ATTENTION_V"),
        ("attn_k.weight", "ATTENTION_K"),
        ("attn_q.weight", "ATTENTION_Q"),
        ("attn_output.weight", "ATTENTION_OUTPUT"),
        ("ffn_up", "FFN_UP"),
        ("ffn_gate", "FFN_GATE"),
        ("ffn_down", "FFN_DOWN"),
    ):
        if key in name:
            return cat
    return "OTHER"


def allows_quantization(name: str, n_dims: int) -> bool:
    """src/llama-quant.cpp tensor_allows_quantization: 2-D/3-D ``*weight`` tensors,
    not norms, not the MoE router (``ffn_gate_inp``), not conv1d states."""
    if n_dims < 2 or not name.endswith("weight"):
        return False
    return not any(
        k in name for k in ("_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d", "position_embd")
    )


def _fallback(t: str, ncols: int) -> str:
    # src/llama-quant.cpp tensor_type_fallback
    _, blck, _ = _type(t)
    if ncols % blck == 0:
        return t
    fb = {
        "IQ1_S": "IQ4_NL",
        "IQ1_M": "IQ4_NL",
        "IQ2_XXS": "IQ4_NL",
        "IQ2_XS": "IQ4_NL",
        "IQ2_S": "IQ4_NL",
        "IQ3_XXS": "IQ4_NL",
        "IQ3_S": "IQ4_NL",
        "IQ4_XS": "IQ4_NL",
        "Q2_K": "Q4_0",
        "Q3_K": "Q4_0",
        "TQ1_0": "Q4_0",
        "TQ2_0": "Q4_0",
        "Q2_0": "Q4_0",
        "Q4_K": "Q5_0",
        "Q5_K": "Q5_1",
        "Q6_K": "Q8_0",
    }.get(t, t)
    if ncols % _type(fb)[1]:
        return "F16"
    return fb


def quant_type(
    name: str, shape: list[int] | tuple[int, ...], src_type: str, ftype: str, qs: QuantState
) -> str:
    """The ggml type llama.cpp's quantizer writes for one tensor.

    ``shape`` is GGUF order (row length first); ``qs`` carries the running counters
    and must see the tensors in file order (layer order).
    """
    if ftype not in FILE_TYPES:
        raise ValueError(f"unknown GGUF file type {ftype!r}; known: {', '.join(FILE_TYPES)}")
    default = FILE_TYPES[ftype][1]
    cat = _category(name)
    if not allows_quantization(name, _n_dims(shape)):
        return src_type
    if default in ("F16", "BF16", "F32"):
        return default
    t = _impl(name, shape, default, ftype, cat, qs)
    return _fallback(t, shape[0])


def _impl(
    name: str, shape: list[int] | tuple[int, ...], t: str, ftype: str, cat: str, qs: QuantState
) -> str:
    # src/llama-quant.cpp llama_tensor_get_type_impl (the non-Falcon branches)
    if cat == "OUTPUT" or (qs.tied_embeddings and cat == "TOKEN_EMBD"):
        nx = shape[0]
        if ftype == "MXFP4_MOE":
            return "Q8_0"
        if nx % _type(t)[1]:
            return "Q8_0"
        if ftype in _IQ_LOW or ftype == "IQ3_XXS":
            return "Q5_K"
        return t if t == "Q8_0" else "Q6_K"
    if ftype == "MXFP4_MOE":
        return "MXFP4" if len(shape) > 2 and shape[2] > 1 else "Q8_0"
    if cat == "TOKEN_EMBD":
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        return t
    attn_v = cat in ("ATTENTION_V", "ATTENTION_QKV", "ATTENTION_KV_B")
    if ftype in _IQ_LOW:
        if attn_v:
            if qs.n_gqa >= 4 or qs.n_expert >= 4:
                t = "Q4_K"
            else:
                t = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
            qs.i_attention_wv += 1
        elif qs.n_expert == 8 and cat == "ATTENTION_K":
            t = "Q4_K"
        elif cat == "FFN_DOWN":
            if qs.i_ffn_down < qs.n_layer // 8:
                t = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
            qs.i_ffn_down += 1
        elif cat == "ATTENTION_OUTPUT":
            if qs.n_expert == 8:
                t = "Q5_K"
            elif ftype in ("IQ1_S", "IQ1_M"):
                t = "IQ2_XXS"
            elif ftype in ("IQ2_S", "IQ2_M"):
                t = "IQ3_S"
        return t
    if attn_v:
        i, n = qs.i_attention_wv, qs.n_attention_wv
        if ftype == "Q2_K":
            t = "Q4_K" if qs.n_gqa >= 4 else "Q3_K"
        elif ftype == "Q2_K_S" and qs.n_gqa >= 4:
            t = "Q4_K"
        elif ftype == "IQ3_XXS":
            t = "Q4_K" if qs.n_gqa >= 4 else "IQ3_S"  # no importance matrix
        elif (ftype in ("IQ3_XS", "IQ3_S") and qs.n_gqa >= 4) or ftype == "IQ3_M":
            t = "Q4_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if i < 2 else "Q4_K"
        elif ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and qs.n_gqa >= 4):
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and i < 4:
            t = "Q5_K"
        if qs.is_70b and t in ("Q3_K", "Q4_K"):
            t = "Q5_K"
        if qs.n_expert == 8:
            t = "Q8_0"
        qs.i_attention_wv += 1
        return t
    if cat == "ATTENTION_K":
        if qs.n_expert == 8:
            return "Q8_0"
        if ftype == "IQ3_XS":
            return "IQ3_XXS"
        if ftype == "IQ3_XXS":
            return "IQ2_S"
        return t
    if cat == "ATTENTION_Q":
        if ftype == "IQ3_XS":
            return "IQ3_XXS"
        if ftype == "IQ3_XXS":
            return "IQ2_S"
        return t
    if cat == "FFN_DOWN":
        i, n = _layer_of(name, qs.i_ffn_down), qs.n_layer
        if ftype == "Q2_K":
            t = "Q3_K"
        elif ftype == "Q2_K_S":
            if i < n // 8:
                t = "Q4_K"
        elif ftype == "IQ3_XXS":
            t = "Q4_K" if i < n // 8 else "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if i < n // 16 else "Q4_K"
        elif ftype == "IQ3_M" and (i < n // 8 or (qs.n_expert == 8 and _use_more_bits(i, n))):
            t = "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
        elif ftype == "Q4_K_M":
            if _use_more_bits(i, n):
                t = "Q6_K"
        elif i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS"):
            t = "Q5_K"
        elif ftype == "Q5_K_M" and _use_more_bits(i, n):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and i < n // 8:
            t = "Q5_K"
        qs.i_ffn_down += 1
        return t
    if cat == "ATTENTION_OUTPUT":
        if qs.n_expert == 8:
            if ftype in (
                "Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL",
                "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS",
            ):  # fmt: skip
                t = "Q5_K"
        else:
            t = {
                "Q2_K": "Q3_K",
                "IQ3_XXS": "IQ3_S",
                "Q3_K_M": "Q4_K",
                "Q3_K_L": "Q5_K",
                "IQ3_M": "Q4_K",
            }.get(ftype, t)
        return t
    if cat == "ATTENTION_QKV":
        if ftype in ("Q3_K_M", "Q3_K_L", "IQ3_M"):
            return "Q4_K"
        if ftype == "Q4_K_M":
            return "Q5_K"
        if ftype == "Q5_K_M":
            return "Q6_K"
    return t


def _n_dims(shape: list[int] | tuple[int, ...]) -> int:
    # ggml_n_dims: the dimensions up to the last one that is not 1
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def _layer_of(name: str, counter: int) -> int:
    # llama.cpp layer_info: with experts it parses "blk.N."; otherwise it uses the
    # running counter, which equals N for one ffn_down per layer in layer order.
    if name.startswith("blk."):
        try:
            return int(name.split(".")[1])
        except ValueError:
            pass
    return counter
