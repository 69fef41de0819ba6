"""`c2s paper-tables`: the paper's table shapes, cells equal to the runs' metrics.json headlines, the paper's
figures only in their own quoted block, LaTeX that is structurally sound, ablations from anchor settings."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data.registry import DATASETS
from harness.report.paper_tables import CROSS, INTRA, PAPER, PAPER_COLUMNS, build_tables, tex_escape
from tests.test_reports import assert_md_tables_well_formed, corr, edit_json, make_run

TRICKY = "B_v2 & co 100% #1 {x}"


def _ds(values, name_seed=0):
    """A dataset entry with one split per value (ten: the paper's protocol), "all" for one value."""
    splits = {str(i + 1) if len(values) > 1 else "all": corr(s, s - 0.02) for i, s in enumerate(values)}
    return {"higher_is_better": True, "n_images": 100, "n_failed": 0, "splits": splits}


def _ten(seed):
    return np.random.default_rng(seed).uniform(0.5, 0.95, 10).round(6).tolist()


def _anchors(run: Path, **cfg) -> Path:
    edit_json(run / "manifest.json", lambda doc: doc["anchors_config"].update(cfg))
    return run


def _headline(run: Path, dataset: str) -> tuple[str, str]:
    """SRCC and PLCC of a dataset as metrics.json holds them, read here independently, three decimals."""
    s = json.loads((run / "metrics.json").read_text())["datasets"][dataset]["summary"]
    return f"{s['srcc']['median']:.3f}", f"{s['plcc_logistic']['median']:.3f}"


def _section(md: str, title_start: str) -> str:
    """The Markdown of one table: from its heading to the next heading."""
    part = md.split(f"## {title_start}", 1)[1]
    return part.split("\n## ", 1)[0]


def _row(section: str, label: str) -> list[str]:
    """The cells of the first table row whose label is `label` (the measured table comes first)."""
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].replace("\\|", "|") == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in\n{section}")


@pytest.fixture
def runs(tmp_path):
    src = tmp_path / "runs"
    src.mkdir()
    a = make_run(src, "a-soft", {"live": _ds(_ten(1)), "CSIQ": _ds(_ten(2)), "koniq": _ds(_ten(3)),
                                 "tid": _ds([0.71]), "mine": _ds(_ten(4))}, label="Model A")
    a_count = make_run(src, "a-count", {"live": _ds(_ten(5)), "CSIQ": _ds(_ten(6))}, label="Model A", mode="count")
    b = make_run(src, "b-soft", {"LIVE": _ds(_ten(7)), "bid": _ds(_ten(8)), "spaq": _ds([0.66])}, label=TRICKY,
                 profile="official")
    return src, {"a": a, "a_count": a_count, "b": b}


def test_paper_columns_are_the_registry_datasets():
    assert set(PAPER_COLUMNS) == set(DATASETS)
    assert set(PAPER_COLUMNS.values()) == set(INTRA + CROSS)


def test_intra_cross_other_cells_equal_the_metrics_json_headlines(runs, tmp_path, capsys):
    src, r = runs
    out = tmp_path / "tables"
    assert main(["paper-tables", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "paper_tables.md").read_text()
    assert md in printed and "paper_tables.tex" in printed
    assert_md_tables_well_formed(md)
    intra = _section(md, "(a) Intra-dataset")
    head = next(line for line in intra.splitlines() if line.startswith("| Model"))
    assert head == "| Model | " + " | ".join(f"{c} {m}" for c in INTRA for m in ("SRCC", "PLCC")) + " |"
    a = _row(intra, "Model A")
    # LIVE, CSIQ, KonIQ-10k (run's "koniq") filled; KADID-10k, BID, CLIVE not evaluated
    assert a == [*_headline(r["a"], "live"), *_headline(r["a"], "CSIQ"), "–", "–", "–", "–", "–", "–",
                 *_headline(r["a"], "koniq")]
    b = _row(intra, TRICKY.replace("|", "\\|"))
    assert b[:2] == list(_headline(r["b"], "LIVE")) and b[6:8] == list(_headline(r["b"], "bid"))
    assert b[2:6] == ["–"] * 4 and b[8:] == ["–"] * 4
    cross = _section(md, "(b) Cross-dataset")
    assert _row(cross, "Model A") == [*_headline(r["a"], "tid"), "–", "–", "–", "–"]
    assert _row(cross, TRICKY) == ["–", "–", *_headline(r["b"], "spaq"), "–", "–"]
    assert "one value over all its images: Model A on TID2013" in cross
    other = _section(md, "Other datasets")
    assert _row(other, "Model A") == list(_headline(r["a"], "mine"))
    # count runs are not models of Table 1: Model A has one row there
    assert sum(line.startswith("| Model A ") for line in intra.splitlines()) == 1


def test_count_vs_probability_pairs_runs_of_one_model_by_mode(runs, tmp_path, capsys):
    src, r = runs
    assert main(["paper-tables", str(src), "--out", str(tmp_path / "t"), "--no-paper"]) == 0
    section = _section(capsys.readouterr().out, "(c) Count vs probability")
    assert "| Model | LIVE SRCC | CSIQ SRCC |" in section
    assert _row(section, "Model A, Count") == [_headline(r["a_count"], "live")[0], _headline(r["a_count"], "CSIQ")[0]]
    assert _row(section, "Model A, Prob.") == [_headline(r["a"], "live")[0], _headline(r["a"], "CSIQ")[0]]
    assert TRICKY not in section  # no count run: not in Table 3


def test_paper_figures_are_a_separate_quoted_block_and_optional(runs, tmp_path, capsys):
    src, _ = runs
    assert main(["paper-tables", str(src), "--out", str(tmp_path / "t")]) == 0
    md = capsys.readouterr().out
    intra = _section(md, "(a) Intra-dataset")
    measured, quoted = intra.split("\n---\n")
    assert "0.972" not in measured and "quoted" not in measured.lower()
    assert "Zhu et al." in quoted and "Table 1" in quoted and "not used in any computation" in quoted
    ref = _row(quoted, "Compare2Score (quoted from the paper)")
    live, plcc = PAPER["intra"][1]["Compare2Score"]["LIVE"]
    assert ref[:2] == [f"{live:.3f}", f"{plcc:.3f}"] and len(ref) == 12
    cross = _section(md, "(b) Cross-dataset")
    assert _row(cross.split("\n---\n")[1], "Compare2Score (quoted from the paper)")[:2] == ["0.823", "–"]
    # Table 3's quoted figures sit on the measured table's columns (LIVE, CSIQ)
    count = _section(md, "(c) Count vs probability")
    assert _row(count.split("\n---\n")[1], "Compare2Score, Count (quoted from the paper)") == ["0.888", "0.875"]
    # the paper's figures enter no computation: the measured cells are the same without them
    assert main(["paper-tables", str(src), "--out", str(tmp_path / "u"), "--no-paper"]) == 0
    plain = capsys.readouterr().out
    assert "quoted" not in plain.lower() and "Zhu et al." not in plain and "\n---\n" not in plain
    assert _section(plain, "(a) Intra-dataset").strip() == measured.strip()


def _tex_tables(tex: str) -> list[str]:
    return re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, flags=re.S)


def _balanced(tex: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_structurally_sound_and_escaped(runs, tmp_path):
    src, r = runs
    out = tmp_path / "t"
    assert main(["paper-tables", str(src), "--out", str(out)]) == 0
    tex = (out / "paper_tables.tex").read_text()
    assert "booktabs" in tex.splitlines()[0]
    assert _balanced(tex)
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == len(_tex_tables(tex)) >= 4
    for tab in _tex_tables(tex):
        n = len(re.match(r"\\begin\{tabular\}\{(lr*)\}", tab).group(1))
        top, bottom = tab.index(r"\toprule"), tab.index(r"\bottomrule")
        assert top < tab.index(r"\midrule") < bottom
        body = tab[tab.index(r"\midrule"):bottom]
        for line in body.splitlines():
            if line.endswith(r"\\") and r"\multicolumn" not in line:
                assert len(re.findall(r"(?<!\\)&", line)) == n - 1, line
    assert tex_escape(TRICKY) == r"B\_v2 \& co 100\% \#1 \{x\}"
    assert tex_escape(TRICKY) in tex and TRICKY not in tex
    # the quoted block follows a rule after the measured rows, inside the same tabular, labelled
    intra = _tex_tables(tex)[0]
    measured, quoted = intra.split(r"\midrule" + "\n" + r"\multicolumn")
    assert "Compare2Score" not in measured and "0.972" not in measured
    assert "Quoted from the paper" in quoted and "Compare2Score (quoted from the paper)" in quoted
    assert " & ".join(_headline(r["a"], "live")) in measured and "--" in measured
    assert not _tex_tables(tex)[0].count("–")  # the en dash is written as LaTeX's --


def _ablation_runs(src: Path) -> dict[str, Path]:
    """Model C on LIVE and KonIQ: the default setting (an older run: no scheme recorded), other schemes,
    another beta, anchors from KADID-10k; model D alone (no ablation)."""
    ds = {"live": _ds(_ten(11)), "koniq10k": _ds(_ten(12))}
    base = dict(source="select", dataset="koniq", alpha=5, beta=1)
    made = {}
    for name, cfg in (("default", {}), ("max", {"scheme": "max-variance"}),
                      ("rand", {"scheme": "random", "seed": 3}), ("beta3", {"beta": 3}),
                      ("kadid", {"dataset": "kadid10k"})):
        run = make_run(src, f"c-{name}", {k: _ds(_ten(hash((name, k)) % 1000)) for k in ds}, label="Model C")
        made[name] = _anchors(run, **{**base, **cfg})
    made["d"] = _anchors(make_run(src, "d", ds, label="Model D"), **base, scheme="max-variance")
    return made


def test_ablations_by_scheme_size_and_source(tmp_path, capsys):
    src = tmp_path / "runs"
    src.mkdir()
    r = _ablation_runs(src)
    assert main(["paper-tables", str(src), "--out", str(tmp_path / "t")]) == 0
    md = capsys.readouterr().out
    scheme = _section(md, "Ablation, anchor selection scheme (paper Table 6): Model C")
    measured, quoted = scheme.split("\n---\n")
    assert _row(measured, "min-variance") == [*_headline(r["default"], "live"), *_headline(r["default"], "koniq10k")]
    assert _row(measured, "max-variance") == [*_headline(r["max"], "live"), *_headline(r["max"], "koniq10k")]
    assert _row(measured, "random (seed 3)") == [*_headline(r["rand"], "live"), *_headline(r["rand"], "koniq10k")]
    assert "| Setting | LIVE SRCC | LIVE PLCC | KonIQ-10k SRCC | KonIQ-10k PLCC |" in measured
    assert _row(quoted, "max-variance (quoted from the paper)") == ["0.958", "–", "0.919", "–"]
    size = _section(md, "Ablation, intervals alpha and anchors per interval beta")
    assert _row(size, "alpha=5, beta=3") == [*_headline(r["beta3"], "live"), *_headline(r["beta3"], "koniq10k")]
    assert _row(size, "alpha=5, beta=1")[0] == _headline(r["default"], "live")[0]
    assert "quoted" not in size.lower()  # Fig. 4's numbers are not in the paper's text
    source = _section(md, "Ablation, anchor source (paper Table 5)")
    assert _row(source, "selected from KADID-10k")[0] == _headline(r["kadid"], "live")[0]
    assert _row(source, "selected from KonIQ-10k")[0] == _headline(r["default"], "live")[0]
    # Table 1 holds the default setting of each model, with its anchor source where it has several
    intra = _section(md, "(a) Intra-dataset").split("\n---\n")[0]
    assert _row(intra, "Model C (anchors selected from KonIQ-10k)")[0] == _headline(r["default"], "live")[0]
    assert _row(intra, "Model C (anchors selected from KADID-10k)")[0] == _headline(r["kadid"], "live")[0]
    assert "max-variance" not in intra and "Model D" not in intra
    assert md.count("Ablation, ") == 3  # model D alone has nothing to compare


def test_user_errors_are_one_line_exit_2(runs, tmp_path, capsys):
    src, r = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["paper-tables", str(empty), "--out", str(tmp_path / "t")], "no run folders found"),
        (["paper-tables", str(src), "--out", str(r["a"])], "would write over the input"),
        (["paper-tables", str(src / "nope"), "--out", str(tmp_path / "t")], "neither a run folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("c2s paper-tables: error: ") and message in err and err.count("\n") == 1, err
    again = make_run(tmp_path, "a-again", {"live": _ds(_ten(9))}, label="Model A", created="2026-11-27T00:00:00Z")
    assert main(["paper-tables", str(r["a"]), str(again), "--out", str(tmp_path / "t")]) == 2
    assert "appears in two runs" in capsys.readouterr().err
    assert main(["paper-tables", str(r["a"]), str(again), "--out", str(tmp_path / "t"), "--keep-latest"]) == 0
    assert _row(_section(capsys.readouterr().out, "(a) Intra"), "Model A")[:2] == list(_headline(again, "live"))
    assert not (r["a"] / "paper_tables.md").exists()


def test_runs_that_fill_no_table(tmp_path):
    run = make_run(tmp_path, "x", {"mine": {"higher_is_better": True, "n_images": 5, "n_failed": 0, "splits": {}}})
    with pytest.raises(ValueError, match="no dataset with ground-truth scores"):
        build_tables([run])
    # one run of a non-default scheme is an ablation with nothing to compare: no table, said so
    lone = _anchors(make_run(tmp_path, "lone", {"live": _ds(_ten(30))}), source="select", scheme="max-variance")
    with pytest.raises(ValueError, match="fills a paper table"):
        build_tables([lone])


def test_accuracy_table_from_pair_accuracy_summaries(tmp_path, capsys):
    from harness.core.metrics import aggregate

    live = {**_ds(_ten(40)), "pair_accuracy_summary": {"binary": aggregate([0.81, 0.83, 0.9]),
                                                       "five_level": aggregate([0.41, 0.52, 0.47])}}
    run = make_run(tmp_path, "acc", {"live": live, "kadid": _ds(_ten(41))}, label="M")
    older = make_run(tmp_path, "older", {"CSIQ": _ds(_ten(42))}, label="Old")  # no accuracy recorded
    assert main(["paper-tables", str(run), str(older), "--out", str(tmp_path / "t"), "--no-paper"]) == 0
    acc = _section(capsys.readouterr().out, "(d) Pairwise accuracy")
    # the medians of the values written, computed here; KADID-10k has no accuracy: n/a; LIVE's rest: not evaluated
    assert _row(acc, "M") == ["0.830", "0.470", "–", "–", "n/a", "n/a", "–", "–", "–", "–", "–", "–"]
    assert "Old" not in acc


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Real runs through the CLI on the embedded benchmark (first 24 images): one model in soft and count
    mode, a second label from the same cached comparisons."""
    base = tmp_path_factory.mktemp("demo")
    common = ["run", "--model", "classical", "--dataset", "demo", "--anchors", "select", "--limit", "24",
              "--no-report", "--out", str(base / "runs"), "--cache", str(base / "pairs.sqlite")]
    assert main([*common, "--label", "cls A", "--mode", "soft", "--mode", "count"]) == 0
    assert main([*common, "--label", "cls_B"]) == 0
    return base / "runs"


def test_real_runs_on_the_embedded_benchmark(demo_runs, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["paper-tables", str(demo_runs), "--out", str(out)]) == 0
    md = capsys.readouterr().out
    runs = {json.loads((p / "metrics.json").read_text())["model_label"] + "/" +
            json.loads((p / "metrics.json").read_text())["mode"]: p for p in demo_runs.iterdir()}
    other = _section(md, "Other datasets")
    for label in ("cls A", "cls_B"):
        assert _row(other, f"{label} [limited to first 24]") == list(_headline(runs[f"{label}/soft"], "demo"))
    count = _section(md, "(c) Count vs probability")
    assert _row(count, "cls A [limited to first 24], Count") == [_headline(runs["cls A/count"], "demo")[0]]
    assert _row(count, "cls A [limited to first 24], Prob.") == [_headline(runs["cls A/soft"], "demo")[0]]
    assert "cls_B" not in count and "(a) Intra-dataset" not in md
    tex = (out / "paper_tables.tex").read_text()
    assert r"cls\_B [limited to first 24]" in tex and _balanced(tex)
    # Table 4: the pairwise accuracy's headline as metrics.json holds it (the demo has no std: no five-level)
    acc = _section(md, "(d) Pairwise accuracy")
    for label, run in (("cls A [limited to first 24] (soft)", runs["cls A/soft"]),
                       ("cls A [limited to first 24] (count)", runs["cls A/count"])):
        summary = json.loads((run / "metrics.json").read_text())["datasets"]["demo"]["pair_accuracy_summary"]
        assert _row(acc.split("\n---\n")[0], label)[-2:] == [f"{summary['binary']['median']:.3f}", "n/a"]
    assert _row(acc.split("\n---\n")[1], "Compare2Score (quoted from the paper)")[:2] == ["0.849", "0.720"]


def test_size_ablation_rows_follow_alpha_then_beta(tmp_path, capsys):
    for k, (alpha, beta) in enumerate(((5, 10), (16, 1), (5, 2), (5, 1))):
        _anchors(make_run(tmp_path, f"s{k}", {"live": _ds(_ten(20 + k))}, label="M"), alpha=alpha, beta=beta)
    assert main(["paper-tables", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    size = _section(capsys.readouterr().out, "Ablation, intervals alpha")
    labels = [line.split(" | ")[0][2:] for line in size.splitlines() if line.startswith("| alpha")]
    assert labels == ["alpha=5, beta=1", "alpha=5, beta=2", "alpha=5, beta=10", "alpha=16, beta=1"]


def _paper_rows(text: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under `heading` in the team's PAPER.md."""
    part = text.split(heading, 1)[1]
    lines = [line for line in part.split("\n\n| ", 1)[1].split("\n\n")[0].splitlines()]
    return [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in ["| " + lines[0], *lines[1:]]]


def test_the_quoted_figures_match_the_papers_tables_as_transcribed():
    """A typo in PAPER would misquote the paper: each figure is checked against the team's transcription."""
    from tests.conftest import SHARED

    path = SHARED / "PAPER.md"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    text = path.read_text(encoding="utf-8")
    t1 = next(r for r in _paper_rows(text, "### 4.1 Table 1") if "Compare2Score" in r[0])
    assert [v for c in INTRA for v in PAPER["intra"][1]["Compare2Score"][c]] == [float(x) for x in t1[1:13]]
    t2 = next(r for r in _paper_rows(text, "### 4.2 Table 2") if "Compare2Score" in r[0])
    assert [PAPER["cross"][1]["Compare2Score"][c][0] for c in CROSS] == [float(x) for x in t2[1:4]]
    t3 = _paper_rows(text, "### 4.3 Table 3")
    at = next(i for i, r in enumerate(t3) if r[0] == "Compare2Score")
    for row, name in ((t3[at], "Count"), (t3[at + 1], "Prob.")):
        figures = PAPER["count"][1][f"Compare2Score, {name}"]
        assert [figures[c][0] for c in ("LIVE", "CSIQ", "BID", "CLIVE")] == [float(x) for x in row[2:6]]
    t4 = next(r for r in _paper_rows(text, "### 4.4 Table 4") if r[0] == "Compare2Score")
    assert [PAPER["accuracy"][1]["Compare2Score"][c][0] for c in INTRA] == [float(x) for x in t4[1:7]]
    t5 = {r[0]: r[1:4] for r in _paper_rows(text, "**Table 5")}
    for k, src in enumerate(("KonIQ-10k", "KADID-10k", "AGIQA-3K")):
        assert [PAPER["source"][1][f"{src} anchors"][c][0] for c in INTRA] == [
            float(t5[c.replace("-", "‑")][k]) for c in INTRA]
    t6 = {r[0]: r[1:7] for r in _paper_rows(text, "**Table 6")}
    for scheme, row in (("random", "Random selection"), ("max-variance", "Maximum variance"),
                        ("min-variance", "Minimum variance (default)")):
        assert [PAPER["scheme"][1][scheme][c][0] for c in INTRA] == [float(x) for x in t6[row]]


def test_anchor_files_are_sources_by_name_and_content(tmp_path, capsys):
    runs = []
    for k, digest in enumerate(("aaaaaaaa11", "bbbbbbbb22")):
        run = _anchors(make_run(tmp_path, f"f{k}", {"live": _ds(_ten(50 + k))}, label="F"), source="mine.json")
        edit_json(run / "manifest.json", lambda doc: doc["anchors"].update(name="mine", digest=digest))
        runs.append(run)
    assert main(["paper-tables", *map(str, runs), "--out", str(tmp_path / "t")]) == 0
    source = _section(capsys.readouterr().out, "Ablation, anchor source")
    assert _row(source, "file mine (aaaaaaaa)")[0] == _headline(runs[0], "live")[0]
    assert _row(source, "file mine (bbbbbbbb)")[0] == _headline(runs[1], "live")[0]
