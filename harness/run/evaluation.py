"""Evaluation: scores against MOS per dataset and split, and the summary over splits."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.datasets import Dataset
from harness.core.metrics import aggregate, bootstrap_ci, correlations, pair_accuracy
from harness.core.vocabulary import ALL, BY_SPLITS
from harness.run.scoring import Scored

SUMMARY_METRICS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic")
#: the pairwise accuracies aggregated over splits like the correlations (`harness.core.metrics.pair_accuracy`)
PAIR_SUMMARY = ("binary", "five_level")


@dataclass
class JudgedPairs:
    """The test-role pairs of a run as the pairwise accuracy needs them: images, P(second better) under the
    run's profile and mode, and the predicted level (arg-max of the level log-probs, -1 where failed)."""

    first: list[str]
    second: list[str]
    preference: np.ndarray
    level: np.ndarray
    #: the anchor images: a pair counts in a split when each image is in that split or is an anchor
    anchors: frozenset[str]


@dataclass
class DatasetRun:
    """A dataset as the runner sees it: the validated dataset and what its summary aggregates."""

    dataset: Dataset
    summary: str

    @property
    def paths(self) -> list[str]:
        return [str(self.dataset.abspath(r)) for r in self.dataset.records]


def summary_splits(splits, over: str) -> list[str]:
    """The splits a dataset's headline numbers aggregate: its named splits (the paper's median over
    splits), unless the run asked for the whole dataset (`over == "all"`) or there are none."""
    named = [s for s in splits if s != ALL]
    if named and over == BY_SPLITS:
        return named
    if ALL not in splits:
        raise ValueError(f"the summary is over the whole dataset but there is no {ALL!r} split")
    return [ALL]


def summarise(splits: dict[str, dict], over: str) -> dict[str, dict]:
    """Each summary metric aggregated (median, sd, ...) over the summary splits; a split missing a
    metric counts as undefined (in `n_dropped`), never as a value."""
    names = summary_splits(splits, over)
    return {m: aggregate([splits[s].get(m, np.nan) for s in names]) for m in SUMMARY_METRICS}


def pair_metrics(dr: DatasetRun, pairs: JudgedPairs, groups: dict[str, np.ndarray]) -> dict[str, dict]:
    """Pairwise accuracy per split (docs/method.md, "Pairwise accuracy"): every judged pair of two different
    images that are both records of this dataset (an anchor from another dataset has MOS on another scale:
    its pairs are left out), with MOS oriented higher-is-better."""
    ds = dr.dataset
    at = {p: k for k, p in enumerate(dr.paths)}
    sign = 1.0 if ds.higher_is_better else -1.0
    mos = sign * np.array([r.mos for r in ds.records], dtype=np.float64)
    std = np.array([np.nan if r.std is None else r.std for r in ds.records], dtype=np.float64)
    keep = [k for k, (a, b) in enumerate(zip(pairs.first, pairs.second)) if a != b and a in at and b in at]
    i = np.array([at[pairs.first[k]] for k in keep], dtype=np.int64)
    j = np.array([at[pairs.second[k]] for k in keep], dtype=np.int64)
    anchor = np.array([p in pairs.anchors for p in dr.paths], dtype=bool)
    out = {}
    for split, g in groups.items():
        member = anchor.copy()
        member[g] = True
        sel = member[i] & member[j]
        out[split] = pair_accuracy(mos[i[sel]], std[i[sel]], mos[j[sel]], std[j[sel]],
                                   pairs.preference[keep][sel], pairs.level[keep][sel])
    return out


def evaluate(dsruns: list[DatasetRun], tests: list[str], scored: Scored, *, bootstrap: int = 0,
             seed: int = 0, undefined: str = "", pairs: JudgedPairs | None = None) -> tuple[list[dict], dict]:
    """scores.csv rows (one per image and split it belongs to) and the metrics per dataset and split.
    `undefined`: why no correlation of this run means anything whatever the images (e.g. anchors that
    give the scores no scale, `harness.core.anchors.no_scale_reason`); "" to judge each split alone.
    `pairs`: the judged test pairs, for the pairwise accuracy (`pair_metrics`); None for none (rating mode)."""
    at = {x: i for i, x in enumerate(tests)}
    rows, metrics = [], {}
    for dr in dsruns:
        ds = dr.dataset
        idx = np.array([at[p] for p in dr.paths], dtype=np.int64)
        pred = scored.score[idx]
        mos = np.array([np.nan if r.mos is None else r.mos for r in ds.records], dtype=np.float64)
        groups = {ALL: np.arange(len(idx))}
        for s in ds.splits:
            groups[s] = np.array([k for k, r in enumerate(ds.records) if s in r.splits], dtype=np.int64)
        for k, (rec, path) in enumerate(zip(ds.records, dr.paths)):
            i = idx[k]
            for split in (sorted(rec.splits) or [ALL]):
                rows.append({"dataset": ds.name, "split": split, "image": rec.path, "path": path, "mos": rec.mos,
                             "std": rec.std,
                             "score": scored.score[i], "latent": scored.latent[i], "sd": scored.sd[i],
                             "n_anchors_ok": int(scored.n_ok[i]), "status": "ok" if scored.errors[i] is None
                             else "failed", "error": scored.errors[i] or "", "group": rec.group,
                             "extra": dict(rec.extra)})
        entry = {"higher_is_better": bool(ds.higher_is_better), "n_images": len(idx),
                 "n_failed": int(sum(scored.errors[i] is not None for i in idx)), "summary_over": dr.summary,
                 "splits": {}, "summary": {}}
        if ds.has_scores:
            for split, g in groups.items():
                corr = correlations(pred[g], mos[g], higher_is_better=ds.higher_is_better, undefined=undefined)
                if bootstrap:  # an undefined metric has no interval either
                    for name in ("srcc", "plcc"):
                        corr[f"{name}_ci95"] = [np.nan, np.nan] if corr["undefined"] else list(
                            bootstrap_ci(pred[g], mos[g], name, bootstrap, seed, higher_is_better=ds.higher_is_better))
                entry["splits"][split] = corr
            entry["summary"] = summarise(entry["splits"], dr.summary)
            if pairs is not None:
                acc = pair_metrics(dr, pairs, groups)
                names = summary_splits(acc, dr.summary)
                entry["pair_accuracy"] = acc
                entry["pair_accuracy_summary"] = {m: aggregate([acc[s][m] for s in names]) for m in PAIR_SUMMARY}
            names = sorted({r.group for r in ds.records} - {""})
            # per group (e.g. distortion family): shown beside the headline, never part of it
            if names:
                entry["groups"] = {g: correlations(pred[m], mos[m], higher_is_better=ds.higher_is_better,
                                                    undefined=undefined)
                                   for g in names
                                   for m in [np.array([r.group == g for r in ds.records], dtype=bool)]}
        metrics[ds.name] = entry
    return rows, metrics
