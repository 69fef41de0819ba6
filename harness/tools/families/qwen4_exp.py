"""Qwen4-Exp: Qwen3.5's processor and layout with a hybrid linear/indexed-attention mixture-of-experts text model;
two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen3_5 import FAMILY as QWEN3_5, HYBRID
from harness.tools.families.qwen3_vl import build_qwen3

FAMILY = Family("Qwen4-Exp", "Qwen/Qwen4-Exp", LOCAL_SPECS,
                QWEN3_5.settings, QWEN3_5.note)


def build(size: int):
    text = dict(HYBRID, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                shared_expert_intermediate_size=32, hc_count=2, hc_lowrank=8, ngram_vocab_size_base=512,
                make_ngram_vocab_size_divisible_by=8, split_ngram_parts=4, heads_per_ngram=2,
                indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=32, indexer_budget=64, indexer_compress_ratio=4)
    return build_qwen3(size, text_cfg=text, vision={}, processor="Qwen3VLProcessor", config="Qwen4ExpConfig",
                       model="Qwen4ExpForConditionalGeneration")
