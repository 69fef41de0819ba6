"""Mistral Large 4: two images in one prompt (Pixtral vision, a latent-attention mixture of experts)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.mistral3 import build_pixtral

FAMILY = Family("Mistral Large 4", "mistralai/Mistral-Large-4-1T-A52B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1048576"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
                "Pixtral native resolution (one token per 28x28 pixels), so cap the pixels; a 1T-parameter "
                "mixture of experts: a multi-GPU server, usually through vLLM")

#: latent attention with 32-wide heads, two routed experts after one dense layer
_TEXT = dict(model_type="mistral_large4_text", num_key_value_heads=2, kv_lora_rank=32, qk_rope_head_dim=32,
             qk_nope_head_dim=32, v_head_dim=32, n_routed_experts=2, num_experts_per_tok=1, moe_intermediate_size=32,
             first_k_dense_replace=1, index_topk=64, index_head_dim=32, index_n_heads=2)


def build(size: int):
    return build_pixtral(size, _TEXT, large4=True)
