"""Run folders as the paper's tables (docs/method.md, "Paper-shaped tables"), in Markdown and LaTeX.

(a) intra-dataset (Table 1: LIVE, CSIQ, KADID-10k, BID, CLIVE, KonIQ-10k), (b) cross-dataset (Table 2:
TID2013, SPAQ, AGIQA-3K), datasets the paper has no column for in a table of their own, (c) count vs
probability matrix (Table 3), and the anchor ablations (Tables 5, 6, Fig. 4) wherever runs of one model
differ only in the anchors' source, selection scheme or alpha/beta. Cells are each run's headline
summary from metrics.json (the median over its splits), collected by `harness.report.leaderboard.collect`.

Why the ablation runs stay out of (a)-(c): those tables show the paper's setting (min-variance, the default
alpha and beta); a run with another scheme or size is an ablation row, not a second model.

The paper's own Compare2Score figures (`PAPER`) are typed in from the paper, shown below a rule in a block
of their own labelled as quoted, and never enter a computation.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.anchors import DEFAULT_SCHEME
from harness.core.vocabulary import DEFAULT_ALPHA, DEFAULT_ANCHORS, DEFAULT_BETA
from harness.data.registry import get_dataset_info
from harness.report.leaderboard import Cell, Leaderboard, collect
from harness.report.reports import fmt, md_cell
from harness.run.record import RunRecord, check_outputs

OUTPUTS = ("paper_tables.md", "paper_tables.tex")
#: the paper's column titles, by registered dataset name (harness.data.registry.DATASETS)
PAPER_COLUMNS = {"live": "LIVE", "csiq": "CSIQ", "kadid10k": "KADID-10k", "bid": "BID", "clive": "CLIVE",
                 "koniq10k": "KonIQ-10k", "tid2013": "TID2013", "spaq": "SPAQ", "agiqa3k": "AGIQA-3K"}
INTRA = ("LIVE", "CSIQ", "KADID-10k", "BID", "CLIVE", "KonIQ-10k")
CROSS = ("TID2013", "SPAQ", "AGIQA-3K")
#: (metric key in a dataset's summary, column title)
SRCC, PLCC = ("srcc", "SRCC"), ("plcc_logistic", "PLCC")
#: the pairwise accuracy's readings, as `harness.report.leaderboard` reads them from `pair_accuracy_summary`
ACCURACY = (("pair_binary", "binary"), ("pair_five_level", "5-level"))
#: Table 4's one figure per dataset: the paper does not say which reading it is
ACCURACY_PAPER = (None, "acc. (reading not stated)")
MISSING = "–"
FLAG = "†"

CITATION = "Zhu et al., Adaptive Image Quality Assessment via Teaching Large Multimodal Model to Compare, NeurIPS 2024"
QUOTED = "(quoted from the paper)"

#: Compare2Score's figures as printed in the paper: table -> (paper table, {row: {column: (SRCC, PLCC)}}).
#: For display only (a reference block below the measured rows); no number here is ever computed with.
PAPER: dict[str, tuple[str, dict[str, dict[str, tuple[float | None, float | None]]]]] = {
    "intra": ("Table 1", {"Compare2Score": {
        "LIVE": (0.972, 0.969), "CSIQ": (0.950, 0.943), "KADID-10k": (0.952, 0.939), "BID": (0.919, 0.939),
        "CLIVE": (0.914, 0.928), "KonIQ-10k": (0.931, 0.939)}}),
    "cross": ("Table 2 (SRCC only)", {"Compare2Score": {
        "TID2013": (0.823, None), "SPAQ": (0.906, None), "AGIQA-3K": (0.730, None)}}),
    "count": ("Table 3", {
        "Compare2Score, Count": {"LIVE": (0.888, None), "CSIQ": (0.875, None), "BID": (0.778, None),
                                 "CLIVE": (0.816, None)},
        "Compare2Score, Prob.": {"LIVE": (0.974, None), "CSIQ": (0.942, None), "BID": (0.921, None),
                                 "CLIVE": (0.934, None)}}),
    "accuracy": ("Table 4 (one accuracy per dataset; which reading is not stated)", {"Compare2Score": {
        c: (v, None) for c, v in zip(INTRA, (0.849, 0.720, 0.870, 0.861, 0.788, 0.858))}}),
    "source": ("Table 5 (SRCC; rows: where the anchors come from)", {
        f"{src} anchors": dict(zip(INTRA, [(v, None) for v in values])) for src, values in (
            ("KonIQ-10k", (0.972, 0.950, 0.952, 0.919, 0.914, 0.939)),
            ("KADID-10k", (0.968, 0.947, 0.957, 0.914, 0.912, 0.931)),
            ("AGIQA-3K", (0.975, 0.946, 0.944, 0.916, 0.915, 0.929)))}),
    "scheme": ("Table 6 (SRCC, KonIQ-10k anchors)", {
        scheme: dict(zip(INTRA, [(v, None) for v in values])) for scheme, values in (
            ("random", (0.954, 0.939, 0.944, 0.881, 0.890, 0.915)),
            ("max-variance", (0.958, 0.940, 0.926, 0.885, 0.879, 0.919)),
            ("min-variance", (0.972, 0.950, 0.952, 0.919, 0.914, 0.931)))}),
}


def paper_column(name: str) -> str:
    """The paper's column for a dataset named like a registered one ("koniq" -> "KonIQ-10k"); else the name."""
    try:
        return PAPER_COLUMNS[get_dataset_info(name).name]
    except ValueError:
        return name


@dataclass(frozen=True)
class Setting:
    """How a run's anchors were chosen, as the ablations vary it (manifest `anchors_config`)."""

    source: str
    scheme: str
    size: str

    @property
    def is_default(self) -> bool:
        return self.scheme == DEFAULT_SCHEME and self.size == _size(DEFAULT_ALPHA, DEFAULT_BETA)


def _size(alpha, beta) -> str:
    return f"alpha={alpha}, beta={beta}"


def setting_of(run: RunRecord) -> Setting:
    """A run's anchor setting; runs written before the schemes existed used min-variance (Eqn. 4)."""
    cfg = run.manifest.anchors_config
    scheme = cfg.get("scheme") or DEFAULT_SCHEME
    if scheme == "random":
        scheme += f" (seed {cfg.get('seed', 0)})"
    source = cfg.get("source", DEFAULT_ANCHORS)
    if source == "koniq":
        where = "KonIQ-10k (the paper's five)"
    elif source == "select":
        dataset = cfg.get("dataset") or (run.manifest.datasets[0].name if len(run.manifest.datasets) == 1 else None)
        where = f"selected from {paper_column(dataset)}" if dataset else run.manifest.anchors.source
    else:
        where = f"file {run.manifest.anchors.name} ({run.manifest.anchors.digest[:8]})"  # edited in place: new rows
    return Setting(where, scheme, _size(cfg.get("alpha", DEFAULT_ALPHA), cfg.get("beta", DEFAULT_BETA)))


@dataclass(frozen=True)
class PaperRow:
    """A row of the paper's tables: a model under a profile and mode with an anchor setting."""

    model: str
    profile: str
    mode: str
    setting: Setting

    def describe(self) -> str:
        s = self.setting
        return f"{self.model} ({self.profile}, {self.mode}, anchors {s.source}, {s.scheme}, {s.size})"


def paper_row(run: RunRecord) -> PaperRow:
    label = run.metrics.model_label + (f" [limited to first {run.manifest.limit}]" if run.manifest.limit else "")
    return PaperRow(label, run.metrics.profile, run.metrics.mode, setting_of(run))


@dataclass
class Table:
    """One table, format-neutral: `rows` are (label, cell texts), `columns` x `metrics` cells each."""

    title: str
    columns: list[str]
    metrics: tuple[tuple[str, str], ...]
    rows: list[tuple[str, list[str]]]
    notes: list[str] = field(default_factory=list)
    #: (where in the paper, rows): the paper's figures, shown below a rule, never measured rows
    reference: tuple[str, list[tuple[str, list[str]]]] | None = None
    #: what the rows are
    first: str = "Model"
    #: the reference's one metric per column, where the paper's figure is neither of `metrics` (Table 4)
    ref_metric: str | None = None


def _ordered(columns) -> list[str]:
    """The paper's columns first in the paper's order, then the others as found."""
    columns = list(dict.fromkeys(columns))
    paper = [c for c in (*INTRA, *CROSS) if c in columns]
    return paper + [c for c in columns if c not in paper]


def _labels(rows: list[PaperRow]) -> dict[PaperRow, str]:
    """Row labels: the model, and what tells its rows apart (profile, mode, anchors) where it has several."""
    out = {}
    for row in rows:
        same = [r for r in rows if r.model == row.model]
        parts = [getattr(row, f) for f in ("profile", "mode") if len({getattr(r, f) for r in same}) > 1]
        if len({r.setting.source for r in same}) > 1:
            parts.append(f"anchors {row.setting.source}")
        out[row] = row.model + (f" ({', '.join(parts)})" if parts else "")
    return out


def _cells(cell: Cell | None, metrics) -> list[str]:
    if cell is None:
        return [MISSING] * len(metrics)
    flag = FLAG if cell.n_failed or cell.n_dropped else ""
    return [fmt(cell.stats[key].median) + flag for key, _ in metrics]


def _caveats(lb: Leaderboard, rows, columns, labels) -> list[str]:
    """What a reader must know about cells that are not a median over ten complete splits, one note per kind."""
    notes: dict[str, list[str]] = {}
    for row in rows:
        for col in columns:
            c = lb.cell(row, col)
            if c is None:
                continue
            where = f"{labels[row]} on {col}"
            n = c.stats[SRCC[0]].n
            if n != 10:
                what = "one value over all its images" if n == 1 and c.n_splits <= 1 else f"median over {n} splits"
                notes.setdefault(what, []).append(where)
            if c.n_failed or c.n_dropped:
                notes.setdefault(f"{FLAG} images failed / items dropped", []).append(
                    f"{where} ({c.n_failed} / {c.n_dropped})")
    return [f"{what}: {', '.join(cells)}" for what, cells in notes.items()]


def _reference(key: str, columns, metrics) -> tuple[str, list[tuple[str, list[str]]]] | None:
    """The paper's figures of table `key` on these columns (one cell per column and metric), if any."""
    where, figures = PAPER[key]
    rows = []
    for name, values in figures.items():
        if not any(c in values for c in columns):
            continue
        cells = [MISSING if values.get(c, (None, None))[i] is None else f"{values[c][i]:.3f}"
                 for c in columns for i in range(len(metrics))]
        rows.append((f"{name} {QUOTED}", cells))
    return (f"{CITATION}, {where}", rows) if rows else None


def _metric_table(lb, rows, columns, title, key=None, with_paper=False, labels=None) -> Table:
    labels = labels or _labels(rows)
    metrics = (SRCC, PLCC)
    body = [(labels[r], [t for c in columns for t in _cells(lb.cell(r, c), metrics)]) for r in rows]
    return Table(title, list(columns), metrics, body, _caveats(lb, rows, columns, labels),
                 _reference(key, columns, metrics) if with_paper and key else None)


def _count_table(lb: Leaderboard, rows: list[PaperRow], with_paper: bool) -> Table | None:
    """Table 3: per model (profile, anchors), the SRCC of its count-mode run beside its soft-mode run."""
    pairs = {}
    for r in rows:
        if r.mode == "count":
            pairs[(r.model, r.profile, r.setting)] = (r, next((s for s in rows if s.mode == "soft" and
                                                               (s.model, s.profile, s.setting) ==
                                                               (r.model, r.profile, r.setting)), None))
    if not pairs:
        return None
    counts = [count for count, _ in pairs.values()]
    # the datasets a count run covers: where the two matrices can be compared
    columns = _ordered([c for r in counts for c in lb.datasets if lb.cell(r, c)])
    names = _labels(counts)
    body, labels = [], {}
    for count, soft in pairs.values():
        for row, matrix in ((count, "Count"), (soft, "Prob.")):
            label = f"{names[count]}, {matrix}"
            if row is not None:
                labels[row] = label
            body.append((label, [t for c in columns for t in _cells(lb.cell(row, c) if row else None, (SRCC,))]))
    return Table("(c) Count vs probability matrix: SRCC (paper Table 3)", columns, (SRCC,), body,
                 _caveats(lb, list(labels), columns, labels),
                 _reference("count", columns, (SRCC,)) if with_paper else None)


def _accuracy_table(lb: Leaderboard, rows: list[PaperRow], with_paper: bool) -> Table | None:
    """Table 4: the pairwise accuracy's headline, both readings (docs/method.md, "Pairwise accuracy")."""
    def has(r, c):
        cell = lb.cell(r, c)
        return cell is not None and any(math.isfinite(cell.stats[k].median) for k, _ in ACCURACY)
    columns = list(INTRA) + [c for c in lb.datasets if c not in INTRA and any(has(r, c) for r in rows)]
    rows = [r for r in rows if any(has(r, c) for c in columns)]
    if not rows:
        return None
    labels = _labels(rows)
    body = [(labels[r], [t for c in columns for t in _cells(lb.cell(r, c), ACCURACY)]) for r in rows]
    t = Table("(d) Pairwise accuracy of the judged pairs: binary direction / five-level Eqn. 2 agreement "
              "(paper Table 4)", columns, ACCURACY, body, _caveats(lb, rows, columns, labels))
    if with_paper:
        t.reference, t.ref_metric = _reference("accuracy", columns, (ACCURACY_PAPER,)), ACCURACY_PAPER[1]
    return t


#: ablation dimension -> (Setting field, title, paper reference key or None, paper row names -> ours)
ABLATIONS = {"source": ("source", "anchor source (paper Table 5)", "source"),
             "scheme": ("scheme", "anchor selection scheme (paper Table 6)", "scheme"),
             "size": ("size", "intervals alpha and anchors per interval beta (paper Fig. 4; its numbers "
                              "are only in the figure)", None)}


def _ablations(lb: Leaderboard, rows: list[PaperRow], with_paper: bool) -> list[Table]:
    """One table per model (profile, mode) and dimension where its runs differ only in that dimension."""
    tables = []
    groups: dict[tuple, list[PaperRow]] = {}
    for r in rows:
        groups.setdefault((r.model, r.profile, r.mode), []).append(r)
    for (model, profile, mode), members in groups.items():
        for dim, (attr, title, ref) in ABLATIONS.items():
            fixed: dict[tuple, list[PaperRow]] = {}
            for r in members:
                rest = tuple(getattr(r.setting, a) for a in ("source", "scheme", "size") if a != attr)
                fixed.setdefault(rest, []).append(r)
            for rest, same in fixed.items():
                if len(same) < 2:
                    continue
                columns = _ordered([c for r in same for c in lb.datasets if lb.cell(r, c)])
                if attr == "size":  # Fig. 4's x axis: in order of alpha, then beta
                    same.sort(key=lambda r: tuple(map(int, re.findall(r"\d+", r.setting.size))))
                labels = {r: getattr(r.setting, attr) for r in same}
                t = _metric_table(lb, same, columns, f"Ablation, {title}: {model} ({profile}, {mode}; "
                                  f"anchors {', '.join(rest)})", labels=labels)
                t.first = "Setting"
                if with_paper and ref:
                    t.reference = _reference(ref, columns, (SRCC, PLCC))
                tables.append(t)
    return tables


def build_tables(run_dirs, keep_latest: bool = False, with_paper: bool = True) -> tuple[list[Table], Leaderboard]:
    """The paper's tables from run folders (a table only where some run fills a cell of it)."""
    lb = collect(run_dirs, keep_latest, row_of=paper_row, column_of=paper_column)
    main = [r for r in lb.rows if r.setting.is_default]
    headline = [r for r in main if r.mode != "count"]
    tables = []
    others = [c for c in lb.datasets if c not in INTRA + CROSS]
    for columns, title, key in ((INTRA, "(a) Intra-dataset: median SRCC / PLCC over the splits (paper Table 1)",
                                 "intra"),
                                (CROSS, "(b) Cross-dataset: SRCC / PLCC on whole unseen datasets (paper Table 2)",
                                 "cross"),
                                (others, "Other datasets (no column in the paper): median SRCC / PLCC", None)):
        rows = [r for r in headline if any(lb.cell(r, c) for c in columns)]
        if rows:
            tables.append(_metric_table(lb, rows, columns, title, key, with_paper))
    count = _count_table(lb, main, with_paper)
    if count:
        tables.append(count)
    accuracy = _accuracy_table(lb, main, with_paper)
    if accuracy:
        tables.append(accuracy)
    tables += _ablations(lb, lb.rows, with_paper)
    if not tables:
        raise ValueError(f"no run among {[str(p) for p in lb.run_dirs]} fills a paper table: the tables show "
                         "soft, rating and count runs with min-variance anchors at the default alpha and beta, "
                         "and ablations of one model")
    return tables, lb


# --- rendering ---------------------------------------------------------------------------------------

NOTE = (f"Cells: each run's headline from metrics.json, the median over its splits (the paper: ten). "
        f"{MISSING}: not evaluated. n/a: undefined (e.g. constant scores). PLCC after the 4-parameter logistic fit.")


def markdown(tables: list[Table]) -> str:
    out = ["# The paper's tables, measured", "", NOTE, ""]
    for t in tables:
        head = [t.first] + [f"{c} {m}" for c in t.columns for _, m in t.metrics]
        out += [f"## {md_cell(t.title)}", "", _md_table(head, t.rows), ""]
        out += [f"- {md_cell(n)}" for n in t.notes] + ([""] if t.notes else [])
        if t.reference:
            where, rows = t.reference
            if t.ref_metric:
                head = [t.first] + [f"{c} {t.ref_metric}" for c in t.columns]
            out += ["---", "", f"**{QUOTED.strip('()').capitalize()}** ({md_cell(where)}); not measured here, "
                               "not used in any computation:", "", _md_table(head, rows), ""]
    return "\n".join(out)


def _md_table(head, rows) -> str:
    lines = ["| " + " | ".join(map(md_cell, head)) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    lines += ["| " + " | ".join(md_cell(x) for x in [label, *cells]) + " |" for label, cells in rows]
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Text safe in LaTeX: its special characters as literal ones."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _tex_cell(text: str) -> str:
    if text == MISSING:
        return "--"
    return tex_escape(text.replace(FLAG, "")) + (r"$^\dagger$" if FLAG in text else "")


def latex(tables: list[Table]) -> str:
    out = ["% c2s paper-tables: needs \\usepackage{booktabs}", "% " + NOTE, ""]
    for t in tables:
        k = len(t.metrics)
        n = 1 + k * len(t.columns)
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}",
                rf"\begin{{tabular}}{{l{'r' * (n - 1)}}}", r"\toprule"]
        if k > 1:
            out.append(" & ".join([""] + [rf"\multicolumn{{{k}}}{{c}}{{{tex_escape(c)}}}" for c in t.columns])
                       + r" \\")
            out.append(" ".join(rf"\cmidrule(lr){{{2 + k * i}-{1 + k * (i + 1)}}}" for i in range(len(t.columns))))
            out.append(" & ".join([t.first] + [m for _ in t.columns for _, m in t.metrics]) + r" \\")
        else:
            out.append(" & ".join([t.first] + [f"{tex_escape(c)} {t.metrics[0][1]}" for c in t.columns]) + r" \\")
        out.append(r"\midrule")
        out += [" & ".join([tex_escape(label)] + list(map(_tex_cell, cells))) + r" \\" for label, cells in t.rows]
        if t.reference:
            where, rows = t.reference
            out += [r"\midrule", rf"\multicolumn{{{n}}}{{l}}{{\emph{{{tex_escape(QUOTED.strip('()').capitalize())}: "
                                 rf"{tex_escape(where)}}}}} \\"]
            span = (lambda x: rf"\multicolumn{{{k}}}{{c}}{{{_tex_cell(x)}}}") if t.ref_metric else _tex_cell
            out += [" & ".join([tex_escape(label)] + list(map(span, cells))) + r" \\" for label, cells in rows]
        out += [r"\bottomrule", r"\end{tabular}"]
        if t.notes:
            out.append(r"\par{\footnotesize " + "; ".join(map(tex_escape, t.notes)) + ".}")
        out += [r"\end{table}", ""]
    return "\n".join(out)


def write_tables(tables: list[Table], lb: Leaderboard, out_dir) -> list[Path]:
    """Write paper_tables.md and paper_tables.tex into `out_dir`, never over or into a run folder read."""
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in OUTPUTS]
    check_outputs(paths, lb.run_dirs, fix="choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, (markdown(tables), latex(tables))):
        path.write_text(text, encoding="utf-8")
    return paths
