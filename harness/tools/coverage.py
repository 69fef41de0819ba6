"""The coverage table (`c2s models coverage`, docs/models.md): every family of the installed transformers'
image-text-to-text mapping, each exactly once, as proven two-image, proven composite, or not covered with
the reason.

Why generated: the families come from three places that change independently (transformers' mapping,
the family modules in harness/tools/families with their tiny builds, and the vLLM record that
bench/vllm_families.py writes); a table typed by hand would drift from all three.
"""
from __future__ import annotations

import json
from pathlib import Path

#: what bench/vllm_families.py found per model_type: {"families": {model_type: {status, detail, vllm, date}}}
VLLM_STATUS = Path(__file__).with_name("vllm_status.json")
#: the tests that prove a family with a tiny build (parametrized over harness.tools.tiny_vlm.FAMILIES)
PROOFS = "tests/test_tiny_vlm.py, tests/test_hf_adapter.py"


def mapping_families() -> list[str]:
    """The model types transformers maps to AutoModelForImageTextToText, as installed."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return sorted(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def coverage_rows() -> list[dict]:
    """One row per mapping family: model_type, family, coverage, proof, vllm, notes."""
    from harness.tools.families import FAMILIES
    from harness.tools.families._uncovered import NOT_COVERED

    proven = {f.model_type: f for f in FAMILIES if f.tiny and f.model_type}
    vllm = json.loads(VLLM_STATUS.read_text())["families"] if VLLM_STATUS.is_file() else {}
    rows = []
    for mt in mapping_families():
        fam = proven.get(mt)
        v = vllm.get(mt)
        vtext = f"{v['status']} (vLLM {v['vllm']}): {v['detail']}" if v else "not tried"
        if fam is not None:
            rows.append({"model_type": mt, "family": fam.name, "coverage": fam.protocol,
                         "proof": f"{PROOFS} [{fam.tiny}]", "vllm": vtext, "notes": fam.note})
        else:
            rows.append({"model_type": mt, "family": "", "coverage": "not covered", "proof": "",
                         "vllm": vtext if v else "", "notes": NOT_COVERED.get(mt, "(missing from _uncovered.py)")})
    return rows


def coverage_markdown() -> str:
    """The table in Markdown, with its counts first."""
    import transformers

    rows = coverage_rows()
    counts = {c: sum(r["coverage"] == c for r in rows) for c in ("two-image", "composite", "not covered")}
    lines = [f"transformers {transformers.__version__}: {len(rows)} image-text-to-text families; "
             f"{counts['two-image']} proven two-image, {counts['composite']} proven composite, "
             f"{counts['not covered']} not covered.", "",
             "| model_type | family | protocol | transformers proof | vLLM (CPU, tiny build) | notes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r[k]) for k in ("model_type", "family", "coverage", "proof", "vllm",
                                                              "notes")) + " |")
    return "\n".join(lines) + "\n"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
