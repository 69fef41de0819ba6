"""Loaders for every manifest format, against temporary files and the real official split files."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from harness.data.registry import DATASETS
from harness.data.datasets import (
    DatasetError,
    Record,
    load_compare2score_json,
    load_dataset,
    load_folder,
    load_official_split,
    load_plain_csv,
    load_pyiqa_csv,
)


@pytest.fixture()
def root(tmp_path):
    """A dataset root with three good images in a sub-folder."""
    r = tmp_path / "root"
    (r / "imgs").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(r / "imgs" / f"{i}.png")
    return r


def _write_json(path, items):
    path.write_text(json.dumps(items))
    return path


# --- Compare2Score JSON ---
def test_json_image_and_img_path_keys_string_scores_optional_std(root, tmp_path):
    m = _write_json(tmp_path / "m.json", [
        {"image": "imgs/0.png", "gt_score": 3.5, "std": 0.4},
        {"img_path": "imgs/1.png", "gt_score": " 2.25 "},
        {"image": "imgs/2.png", "gt_score": "1", "std": "0.5", "splits": ["a", "b"]},
    ])
    ds = load_compare2score_json(m, root)
    assert ds.records == [
        Record("imgs/0.png", 3.5, 0.4),
        Record("imgs/1.png", 2.25, None),
        Record("imgs/2.png", 1.0, 0.5, frozenset({"a", "b"})),
    ]
    assert ds.abspath(ds.records[0]) == root / "imgs" / "0.png"
    assert ds.in_split("b").records == [ds.records[2]]
    with pytest.raises(ValueError, match="no split 'zzz'; its splits: \\['a', 'b'\\]"):
        ds.in_split("zzz")
    assert ds.report.ok and ds.report.checked_files


def test_every_problem_reported_in_one_message(root, tmp_path):
    m = _write_json(tmp_path / "m.json", [
        {"image": "imgs/0.png", "gt_score": 1},
        {"image": "imgs/0.png", "gt_score": 2},          # duplicate
        {"image": "imgs/missing.png", "gt_score": 3},    # missing file
        {"image": "imgs/1.png", "gt_score": "high"},     # unreadable score
        {"image": "imgs/2.png"},                         # no score
        {"image": "../outside.png", "gt_score": 1},      # escapes the root
        {"image": "/etc/passwd", "gt_score": 1},         # absolute
        {"image": "imgs/1.png", "gt_score": float("nan")},
        ["not", "an", "object"],
    ])
    with pytest.raises(DatasetError) as err:
        load_compare2score_json(m, root)
    kinds = sorted(p.kind for p in err.value.problems)
    assert kinds == ["duplicate", "missing file", "outside root", "outside root",
                     "unreadable row", "unreadable row", "unreadable row", "unreadable row"]
    msg = str(err.value)
    for needle in ("8 problem(s)", "item 3: gt_score is not a number ('high')", "item 4: no gt_score",
                   "escapes the root", "absolute path '/etc/passwd'", "same image as record 0",
                   "not found at", "gt_score is not finite", "expected an object, got list"):
        assert needle in msg


def test_drop_bad_goes_on_and_reports_what_was_dropped(root, tmp_path):
    (root / "imgs" / "text.png").write_text("not an image")
    m = _write_json(tmp_path / "m.json", [
        {"image": "imgs/0.png", "gt_score": 1},
        {"image": "imgs/0.png", "gt_score": 1},
        {"image": "imgs/text.png", "gt_score": 2},
        {"image": "imgs/1.png", "gt_score": "x"},
        {"image": "imgs/2.png", "gt_score": 3},
    ])
    ds = load_compare2score_json(m, root, drop_bad=True)
    assert [r.path for r in ds.records] == ["imgs/0.png", "imgs/2.png"]
    assert sorted(p.kind for p in ds.report.dropped) == ["bad image", "duplicate", "unreadable row"]
    assert "not an image" in ds.report.summary() and "2 records kept, 3 dropped" in ds.report.summary()


def test_outside_root_allowed_only_explicitly(root, tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (16, 16)).save(outside)
    items = [{"image": str(outside), "gt_score": 1}, {"image": "../elsewhere.png", "gt_score": 2}]
    m = _write_json(tmp_path / "m.json", items)
    with pytest.raises(DatasetError, match="2 outside root"):
        load_compare2score_json(m, root)
    ds = load_compare2score_json(m, root, allow_outside_root=True)
    assert [ds.abspath(r).resolve() for r in ds.records] == [outside, outside]
    assert ds.report.ok


def test_truncated_image_found_only_with_decode(root, tmp_path):
    Image.effect_noise((128, 128), 50).save(root / "imgs" / "0.png")
    data = (root / "imgs" / "0.png").read_bytes()
    (root / "imgs" / "0.png").write_bytes(data[: len(data) // 2])
    m = _write_json(tmp_path / "m.json", [{"image": "imgs/0.png", "gt_score": 1}])
    ds = load_compare2score_json(m, root)  # header check passes
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        ds.validate(decode=True)


def test_not_a_list_and_invalid_json(tmp_path, root):
    with pytest.raises(DatasetError, match="expected a JSON list"):
        load_compare2score_json(_write_json(tmp_path / "d.json", {"image": "x"}), root)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_compare2score_json(bad, root)
    with pytest.raises(DatasetError, match="manifest not found"):
        load_compare2score_json(tmp_path / "none.json", root)


# --- CSV ---
def test_plain_csv_with_and_without_header(root, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("imgs/0.png,3.0,0.5\nimgs/1.png,2.0\n")
    b = tmp_path / "b.csv"
    b.write_text("path,mos,std\nimgs/0.png,3.0,0.5\nimgs/1.png,2.0,\n")
    for f in (a, b):
        ds = load_plain_csv(f, root)
        assert ds.records == [Record("imgs/0.png", 3.0, 0.5), Record("imgs/1.png", 2.0, None)]


def test_plain_csv_problems_name_the_line(root, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("path,mos\nimgs/0.png,3\nimgs/1.png\nimgs/2.png,abc\nimgs/0.png,-1\n")
    with pytest.raises(DatasetError) as err:
        load_plain_csv(f, root)
    msg = str(err.value)
    assert "line 3: expected at least 2 columns, got 1" in msg
    assert "line 4: score is not a number ('abc')" in msg
    assert "duplicate: imgs/0.png" in msg


def test_pyiqa_csv_splits_std_and_dmos_direction(root, tmp_path):
    f = tmp_path / "meta_info_X.csv"
    f.write_text("img_name,mos,std,split,c1\n0.png,70.1,0.5,training,1\n1.png,40,0.6,test,1\n2.png,55,0.7,test,0\n")
    ds = load_pyiqa_csv(f, root / "imgs")
    assert [r.splits for r in ds.records] == [frozenset({"training"}), frozenset({"test"}), frozenset({"test"})]
    assert ds.records[0] == Record("0.png", 70.1, 0.5, frozenset({"training"}), extra=(("c1", "1"),))
    assert len(ds.in_split("test")) == 2 and ds.higher_is_better
    fr = tmp_path / "meta_info_FR.csv"
    fr.write_text("ref_name,dist_name,dmos\nref.png,0.png,30\nref.png,1.png,60\n")
    ds = load_pyiqa_csv(fr, root / "imgs")
    assert [r.path for r in ds.records] == ["0.png", "1.png"]
    assert ds.higher_is_better is False  # a DMOS column is lower-is-better


def test_dispatcher_picks_the_format(root, tmp_path):
    j = _write_json(root / "m.json", [{"image": "imgs/0.png", "gt_score": 1}])
    assert load_dataset(j).root == root  # root defaults to the manifest's folder
    p = tmp_path / "meta.csv"
    p.write_text("img_name,mos,split\nimgs/0.png,1,test\n")
    assert load_dataset(p, root).records[0].splits == {"test"}
    c = tmp_path / "plain.csv"
    c.write_text("imgs/0.png,1\n")
    assert load_dataset(c, root).records == [Record("imgs/0.png", 1.0)]
    f = load_dataset(root / "imgs")
    assert [r.path for r in f.records] == ["0.png", "1.png", "2.png"] and not f.has_scores
    with pytest.raises(ValueError, match="unknown dataset format 'xml'"):
        load_dataset(j, fmt="xml")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_dataset(tmp_path / "x.yaml")


def test_folder_skips_hidden_and_non_images(root):
    (root / "imgs" / ".hidden.png").write_bytes(b"")
    (root / "imgs" / "readme.txt").write_text("hi")
    (root / "imgs" / "sub").mkdir()
    Image.new("RGB", (16, 16)).save(root / "imgs" / "sub" / "x.JPG")
    ds = load_folder(root / "imgs")
    assert [r.path for r in ds.records] == ["0.png", "1.png", "2.png", "sub/x.JPG"]
    assert all(r.mos is None for r in ds.records)
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        load_folder(root / "empty")
    with pytest.raises(DatasetError, match="not a folder"):
        load_folder(root / "nowhere")


def test_all_missing_hints_at_the_root(tmp_path):
    m = _write_json(tmp_path / "m.json", [{"image": "a/1.png", "gt_score": 1}, {"image": "a/2.png", "gt_score": 2}])
    with pytest.raises(DatasetError, match="none of the 2 images exist under the root"):
        load_compare2score_json(m, tmp_path / "wrong")


# --- the real official split files ---
#: README of ../shared/data: images per split (min, max) over the ten folders
README_COUNTS = {"live": (158, 162), "csiq": (172, 174), "kadid10k": (2000, 2000), "bid": (117, 117),
                 "clive": (233, 233), "koniq10k": (2015, 2015), "spaq": (11125, 11125), "tid2013": (3000, 3000),
                 "agiqa3k": (2982, 2982)}


def test_official_splits_load_with_readme_counts(shared_data):
    splits_dir = shared_data / "compare2score_splits"
    for name, (lo, hi) in README_COUNTS.items():
        sizes = []
        for k in range(1, 11):
            ds = load_official_split(name, k, shared_data, splits_dir=splits_dir, check_files=False)
            assert ds.report.ok, ds.report.summary()
            assert all(r.splits == {str(k)} and r.path.startswith(DATASETS[name].folder + "/") for r in ds.records)
            assert ds.has_scores
            sizes.append(len(ds))
        assert (min(sizes), max(sizes)) == (lo, hi), name


def test_agiqa_string_scores_parse(shared_data):
    f = shared_data / "compare2score_splits" / "1" / "agi.json"
    raw = json.loads(f.read_text())
    assert all(isinstance(item["gt_score"], str) and "std" not in item for item in raw)
    ds = load_dataset(f, shared_data, check_files=False)
    assert ds.name == "agiqa3k"  # recognised by its folder prefix
    assert [r.mos for r in ds.records] == [float(item["gt_score"]) for item in raw]
    assert all(r.std is None for r in ds.records)


def test_registry_direction_travels_with_recognised_files(shared_data):
    f = shared_data / "compare2score_splits" / "1" / "live_test.json"
    assert load_dataset(f, shared_data, check_files=False).higher_is_better is False
    assert load_dataset(f, shared_data, check_files=False, higher_is_better=True).higher_is_better is True


def test_pyiqa_file_names_bring_pyiqa_directions(root, tmp_path):
    """pyiqa's LIVE and CSIQ labels are DMOS even under a column called `mos` (pyiqa's own
    dataset_info says so); its KonIQ labels are 0-100, outside the official files' 1-5 range."""
    live = tmp_path / "meta_info_LIVEIQADataset.csv"
    live.write_text("ref_name,dist_name,mos\nr.bmp,0.png,30.5\nr.bmp,1.png,60\n")
    ds = load_pyiqa_csv(live, root / "imgs")
    assert ds.name == "live" and ds.higher_is_better is False
    csiq = tmp_path / "meta_info_CSIQDataset.csv"
    csiq.write_text("ref_name,dist_name,dmos\nr.png,0.png,0.1\n")
    assert load_pyiqa_csv(csiq, root / "imgs").higher_is_better is False
    koniq = tmp_path / "meta_info_KonIQ10kDataset.csv"
    koniq.write_text("img_name,mos,std,split\n0.png,77.4,0.5,training\n1.png,30.9,0.6,test\n")
    ds = load_pyiqa_csv(koniq, root / "imgs")
    assert ds.higher_is_better is True and ds.score_range is None
    # the official JSON of the same dataset keeps the registered range
    j = _write_json(tmp_path / "k.json", [{"image": "koniq/0.png", "gt_score": 3.1, "std": 0.4}])
    assert load_compare2score_json(j, tmp_path, check_files=False).score_range == DATASETS["koniq10k"].score_range


def test_csv_loaders_agree_with_json_on_real_records(shared_data, tmp_path):
    """The same official KonIQ-10k split written as pyiqa and plain CSVs loads to the same records."""
    f = shared_data / "compare2score_splits" / "1" / "koniq10k_test.json"
    ref = load_compare2score_json(f, shared_data, check_files=False)
    items = json.loads(f.read_text())
    pyiqa = tmp_path / "meta_info_KonIQ10kDataset.csv"
    pyiqa.write_text("img_name,mos,std,split\n" + "".join(
        f"{i['image']},{i['gt_score']!r},{i['std']!r},test\n" for i in items))
    plain = tmp_path / "plain.csv"
    plain.write_text("".join(f"{i['image']},{i['gt_score']!r},{i['std']!r}\n" for i in items))
    a = load_pyiqa_csv(pyiqa, shared_data, check_files=False)
    b = load_dataset(plain, shared_data, check_files=False)
    assert [(r.path, r.mos, r.std) for r in a.records] == [(r.path, r.mos, r.std) for r in ref.records]
    assert b.records == ref.records and len(ref) == 2015
    assert a.splits == ["test"] and a.name == b.name == "koniq10k"
