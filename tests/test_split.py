"""Patient-level stratified split: no leakage, stratification, determinism, class filter."""

import numpy as np
import pandas as pd
import pytest

from cxrgen.data.split import EXCLUDED, SplitConfig, make_split, run_split
from cxrgen.errors import ConfigError, DataError


def fake_index(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    classes = ["Normal", "Lung Opacity", "No Lung Opacity / Not Normal"]
    for p in range(n_patients):
        cls = classes[rng.choice(3, p=[0.5, 0.3, 0.2])]
        for _ in range(rng.integers(1, 4)):
            rows.append(
                {"image_id": f"img{len(rows):05d}", "patient_id": f"pat{p:04d}", "class_name": cls}
            )
    df = pd.DataFrame(rows)
    df.insert(0, "row", np.arange(len(df)))
    return df


def test_no_patient_in_two_splits_and_fractions_per_class():
    index = fake_index()
    table, classes = make_split(index, SplitConfig(seed=3))
    assert classes == ["Normal", "Lung Opacity"]
    kept = table[table.split != EXCLUDED]
    assert (kept.groupby("patient_id").split.nunique() == 1).all()
    for cls in classes:  # the default 70/15/15 train / calibration / test, per class
        sub = kept[kept.class_name == cls]
        for name, share in (("train", 0.7), ("calibration", 0.15), ("test", 0.15)):
            frac = (sub.split == name).mean()
            assert abs(frac - share) < 0.03, (cls, name, frac)
    # excluded class kept in the table, never in a split, label -1
    excl = table[table.class_name == "No Lung Opacity / Not Normal"]
    assert len(excl) > 0 and (excl.split == EXCLUDED).all() and (excl.label == -1).all()
    assert set(kept.label) == {0, 1}
    assert (kept.label == kept.class_name.map({"Normal": 0, "Lung Opacity": 1})).all()
    assert len(table) == len(index)


def test_deterministic_for_seed_and_seed_changes_assignment():
    index = fake_index()
    a, _ = make_split(index, SplitConfig(seed=1))
    b, _ = make_split(index.sample(frac=1, random_state=5), SplitConfig(seed=1))
    c, _ = make_split(index, SplitConfig(seed=2))
    key = ["image_id", "split"]
    pd.testing.assert_frame_equal(
        a[key].sort_values("image_id").reset_index(drop=True),
        b[key].sort_values("image_id").reset_index(drop=True),
    )
    assert (a.split != c.split).sum() > 10


def test_paper_two_way_split_and_all_classes():
    index = fake_index(600)
    cfg = SplitConfig(seed=0, fractions=(0.8, 0.2), names=("train", "valid"), classes=None)
    table, classes = make_split(index, cfg)
    assert classes == sorted(index.class_name.unique())
    share = table.split.value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["valid"] == pytest.approx(0.2, abs=0.03)


def test_keep_source_split():
    index = fake_index(50)
    index["source_split"] = np.where(index.row % 5 == 0, "Val", "Train")
    table, _ = make_split(index, SplitConfig(keep_source_split=True, classes=None))
    assert set(table.split) == {"train", "valid"}
    assert (table.split == "valid").sum() == (index.row % 5 == 0).sum()


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="sum to"):
        SplitConfig(fractions=(0.8, 0.3), names=("train", "valid"))
    with pytest.raises(DataError, match="no stored image has"):
        make_split(fake_index(), SplitConfig(classes=("Normal", "COVID-19")))
    unlabeled = fake_index().assign(class_name=None)
    with pytest.raises(DataError, match="no labels"):
        make_split(unlabeled, SplitConfig())
    with pytest.raises(DataError, match="run preprocess"):
        run_split(tmp_path / "nowhere", tmp_path / "out", SplitConfig())


def test_run_split_writes_tables(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    fake_index().to_parquet(store / "index.parquet")
    counts = run_split(store, tmp_path / "split", SplitConfig())
    written = pd.read_parquet(tmp_path / "split" / "counts.parquet")
    pd.testing.assert_frame_equal(counts.reset_index(drop=True), written)
    assert written.n_images.sum() == len(fake_index())
    assert (tmp_path / "split" / "classes.json").exists()
    assert (tmp_path / "split" / "provenance.json").exists()
