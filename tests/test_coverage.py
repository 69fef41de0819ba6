"""The coverage table: every image-text-to-text family of the installed transformers appears exactly once,
as proven (a family module with a tiny build) or not covered with a reason; `c2s models coverage` prints it."""
from __future__ import annotations

from harness.cli import main
from harness.tools.coverage import coverage_rows, mapping_families
from harness.tools.families import FAMILIES
from harness.tools.families._uncovered import NOT_COVERED


def test_every_mapping_family_is_in_exactly_one_place():
    mapping = set(mapping_families())
    proven = [f.model_type for f in FAMILIES if f.tiny and f.model_type]
    assert len(proven) == len(set(proven)), "two family modules claim one model_type"
    assert set(proven) <= mapping, f"proven families transformers does not map: {set(proven) - mapping}"
    assert not set(proven) & set(NOT_COVERED), f"proven and listed as not covered: {set(proven) & set(NOT_COVERED)}"
    assert set(proven) | set(NOT_COVERED) == mapping, f"in neither place: {mapping - set(proven) - set(NOT_COVERED)}"
    assert set(NOT_COVERED) <= mapping, f"not in the mapping: {set(NOT_COVERED) - mapping}"
    assert all(NOT_COVERED.values()), "a family not covered needs its reason"


def test_the_table_has_one_row_per_family_and_its_counts(capsys):
    rows = coverage_rows()
    assert [r["model_type"] for r in rows] == sorted(mapping_families())
    assert {r["coverage"] for r in rows} <= {"two-image", "composite", "not covered"}
    assert main(["models", "coverage"]) == 0
    out = capsys.readouterr().out
    n = {c: sum(r["coverage"] == c for r in rows) for c in ("two-image", "composite", "not covered")}
    assert (f"{len(rows)} image-text-to-text families; {n['two-image']} proven two-image, "
            f"{n['composite']} proven composite, {n['not covered']} not covered.") in out
    table = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| model_type")]
    assert len(table) == len(rows)
    for fam in FAMILIES:
        if fam.tiny and fam.model_type:
            (line,) = [ln for ln in table if ln.startswith(f"| {fam.model_type} |")]
            assert f"| {fam.protocol} |" in line and f"[{fam.tiny}]" in line
