"""The released Compare2Score model (mPLUG-Owl2), run by its own worker; no tiny build."""
from __future__ import annotations

from harness.tools.families import Family

FAMILY = Family("Compare2Score (the released model)", "q-future/Compare2Score", ("compare2score[:PATH]",),
                (("compare2score", "-o dtype=float16 -o device=cuda"),),
                "mPLUG-Owl2 on transformers 4.37 in its own environment: run `c2s setup compare2score` first; "
                "images padded to a square and resized to 448x448", model_type=None)
