"""Evaluation figures (a drawn PNG each), Fig. 3's row choice, Grad-CAM against exact truth."""

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cxrgen.classifier.model import NoiseAwareClassifier
from cxrgen.errors import ConfigError, DataError
from cxrgen.evaluation import metric_plots, paper_figures
from cxrgen.evaluation.detection import detection_table, reference_rows
from cxrgen.evaluation.evaluate import spectrum_curves
from cxrgen.evaluation.gradcam import grad_cam

POS, NEG = "Lung Opacity", "Normal"
SIZE = 16


def pixels(path) -> np.ndarray:
    """The PNG as (H, W, 3) float RGB."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def assert_drawn(path) -> np.ndarray:
    """A PNG wide enough for a report page and not blank."""
    rgb = pixels(path)
    assert rgb.shape[1] > 300 and rgb.shape[0] > 200
    assert rgb.std() > 0
    return rgb


def coloured(rgb: np.ndarray) -> int:
    """Pixels that are not grey (a colour map was drawn)."""
    return int((np.ptp(rgb, axis=2) > 40).sum())


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    n = 8
    originals = rng.uniform(0, 1, (n, SIZE, SIZE)).astype(np.float32)
    latents = rng.normal(0, 1, (n, SIZE, SIZE)).astype(np.float32)
    cfs = {
        "cfg 3": np.clip(originals - 0.2 * rng.uniform(0, 1, originals.shape), 0, 1),
        "cg 10": np.clip(originals - 0.05 * rng.uniform(0, 1, originals.shape), 0, 1),
    }
    cfs = {k: v.astype(np.float32) for k, v in cfs.items()}
    absd = {k: np.abs(originals - v) for k, v in cfs.items()}
    return originals, latents, cfs, absd


def scores_of(method, scale, values, labels):
    labels = np.asarray(labels)
    return pd.DataFrame(
        {
            "row": np.arange(len(labels)),
            "method": method,
            "scale": float(scale),
            "image_id": [f"img{i}" for i in range(len(labels))],
            "class_name": np.where(labels == 1, POS, NEG),
            "label": labels,
            "sum_abs": values,
            "lung_sum_abs": np.nan,
        }
    )


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 12)
    return pd.concat(
        [
            scores_of(m, s, rng.normal(size=24) + shift * labels, labels)
            for m, s, shift in (("cfg", 1, 0.5), ("cfg", 3, 1.5), ("cg", 10, 1.0), ("cg", 30, 2))
        ],
        ignore_index=True,
    )


# --- choose_rows -------------------------------------------------------------------------


def choice_table():
    # positives rows 0-6, negatives rows 7-10 (median 4: rows 9 and 10 tie at distance 1)
    values = [5, 9, 1, 9, 1, 7, 3, 2, 6, 3, 5]
    classes = [POS] * 7 + [NEG] * 4
    return pd.DataFrame({"row": range(11), "class_name": classes, "sum_abs": values})


def test_choose_rows_exact_picks_and_ties_to_lower_row():
    table = choice_table()
    assert paper_figures.choose_rows(table, POS, n=2) == [1, 3, 2, 4, 9]
    # fewer than 2n positives: no image twice
    assert paper_figures.choose_rows(table, POS, n=4) == [1, 3, 5, 0, 2, 4, 6, 9]
    assert paper_figures.choose_rows(table, POS, n=1, statistic="sum_abs") == [1, 2, 9]


def test_choose_rows_does_not_depend_on_row_order():
    table = choice_table()
    for seed in range(3):
        shuffled = table.sample(frac=1, random_state=seed)
        assert paper_figures.choose_rows(shuffled, POS, n=2) == [1, 3, 2, 4, 9]


def test_choose_rows_without_negatives_and_bad_tables():
    table = choice_table()
    assert paper_figures.choose_rows(table[table["class_name"] == POS], POS, n=1) == [1, 2]
    with pytest.raises(DataError, match="no image of class"):
        paper_figures.choose_rows(table[table["class_name"] == NEG], POS)
    with pytest.raises(DataError, match="twice"):
        paper_figures.choose_rows(pd.concat([table, table]), POS)
    with pytest.raises(DataError, match="lacks columns"):
        paper_figures.choose_rows(table.drop(columns="sum_abs"), POS)
    with pytest.raises(ConfigError):
        paper_figures.choose_rows(table, POS, n=0)


def test_row_labels_name_class_row_and_value():
    labels = paper_figures.row_labels(choice_table(), [1, 9], setting="cfg 3")
    assert labels == [
        "Lung Opacity, row 1\nsum_abs (cfg 3) 9.0",
        "Normal, row 9\nsum_abs (cfg 3) 3.0",
    ]


# --- figures -------------------------------------------------------------------------------


def test_fig3_grid_draws_every_setting_from_memmaps(arrays, tmp_path):
    originals, latents, cfs, absd = arrays
    np.save(tmp_path / "o.npy", originals)
    memmap = np.load(tmp_path / "o.npy", mmap_mode="r")
    rows = [5, 0, 3]
    labels = [f"row {r}" for r in rows]
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    paper_figures.fig3_grid(one, memmap, latents, {"cfg 3": cfs["cfg 3"]}, {"cfg 3": absd["cfg 3"]},
                      rows, labels)  # fmt: skip
    paper_figures.fig3_grid(two, memmap, latents, cfs, absd, rows, labels)
    a, b = assert_drawn(one), assert_drawn(two)
    assert b.shape[1] > a.shape[1] and b.shape[0] == a.shape[0]  # two more columns
    assert coloured(b) > coloured(a) > 1000  # the anomaly maps are in a colour map
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_fig3_grid_rejects_inconsistent_inputs(arrays, tmp_path):
    originals, latents, cfs, absd = arrays
    with pytest.raises(ConfigError, match="labels"):
        paper_figures.fig3_grid(tmp_path / "x.png", originals, latents, cfs, absd, [0, 1], ["a"])
    with pytest.raises(ConfigError, match="differ"):
        paper_figures.fig3_grid(tmp_path / "x.png", originals, latents, cfs,
                                {"cfg 3": absd["cfg 3"]}, [0], ["a"])  # fmt: skip
    with pytest.raises(DataError, match="rows"):
        paper_figures.fig3_grid(tmp_path / "x.png", originals, latents, cfs, absd, [99], ["a"])
    assert not (tmp_path / "x.png").exists()


def test_fig4_spectra(arrays, tmp_path):
    originals, _, cfs, _ = arrays
    curves = pd.concat(
        [
            spectrum_curves(originals, cf, originals - cf).assign(method=m, scale=float(s))
            for (m, s), cf in zip((("cfg", 3), ("cg", 10)), cfs.values(), strict=True)
        ],
        ignore_index=True,
    )
    path = tmp_path / "fig4.png"
    paper_figures.fig4_spectra(
        path, originals[0], cfs["cfg 3"][0], 0.25, curves, setting_label="cfg 3"
    )
    assert_drawn(path)
    with pytest.raises(DataError, match="equal"):
        paper_figures.fig4_spectra(path, originals[0], cfs["cfg 3"][0, :8], 0.25, curves)
    with pytest.raises(DataError, match="lack columns"):
        paper_figures.fig4_spectra(
            path, originals[0], cfs["cfg 3"][0], 0.25, curves.drop(columns="power")
        )


def test_roc_pr_curves(scores, tmp_path):
    path = tmp_path / "roc.png"
    metric_plots.roc_pr_curves(path, scores, "sum_abs", POS, NEG)
    assert coloured(assert_drawn(path)) > 100
    with pytest.raises(DataError, match="finite"):  # every setting NaN: nothing to draw
        metric_plots.roc_pr_curves(path, scores, "lung_sum_abs", POS, NEG)
    with pytest.raises(DataError, match="lacks columns"):
        metric_plots.roc_pr_curves(path, scores, "hpf_energy", POS, NEG)


def test_auroc_vs_scale_with_references(scores, tmp_path):
    detection = detection_table(scores, ["sum_abs"], POS, NEG, n_boot=20, seed=0)
    probs = scores[scores["method"] == "cfg"].drop_duplicates("image_id")
    probs = probs.assign(p_positive=np.linspace(0, 1, len(probs)))
    table = pd.concat([detection, reference_rows(probs, POS, NEG, n_boot=20)], ignore_index=True)
    path = tmp_path / "auroc.png"
    metric_plots.auroc_vs_scale(path, table)
    assert_drawn(path)
    with pytest.raises(DataError, match="no measured"):
        metric_plots.auroc_vs_scale(path, table, statistics=["hpf_energy"])


def severity_tables():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 9, 30).astype(float)
    preds, rows = [], []
    for method, scale, feature_set, noise, rho in (
        ("cfg", 3.0, "anomaly map", 1.0, 0.8),
        ("cg", 10.0, "anomaly map", 3.0, 0.3),
        ("classifier", np.nan, "classifier probability", 4.0, 0.1),
    ):
        for score in ("extent_total", "opacity_total"):
            pred = np.clip(truth + rng.normal(0, noise, 30), 0, 8)
            preds.append(pd.DataFrame({"method": method, "scale": scale, "row": range(30),
                                       "score": score, "feature_set": feature_set,
                                       "true": truth, "predicted": pred}))  # fmt: skip
            for metric, value in (("spearman", rho), ("mae", noise)):
                rows.append(dict(method=method, scale=scale, feature_set=feature_set,
                                 score=score, metric=metric, value=value, n=30))  # fmt: skip
    return pd.concat(preds, ignore_index=True), pd.DataFrame(rows)


def test_severity_scatter_and_the_empty_case(tmp_path):
    predictions, severity = severity_tables()
    path = tmp_path / "severity.png"
    metric_plots.severity_scatter(path, predictions, severity)
    rgb = assert_drawn(path)
    assert coloured(rgb) > 100  # the points
    empty = tmp_path / "empty.png"
    metric_plots.severity_scatter(empty, predictions.iloc[:0], severity.iloc[:0])
    assert_drawn(empty)


def test_gradcam_panel(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    images[1, 2] = np.nan  # an empty cell
    cams = rng.uniform(0, 1, images.shape).astype(np.float32)
    titles = [f"image {i}" for i in range(6)]
    path = tmp_path / "cam.png"
    paper_figures.gradcam_panel(path, images, titles, cams, row_labels=["real", "generated"])
    assert coloured(assert_drawn(path)) > 1000
    paper_figures.gradcam_panel(path, images[0], titles[:3], cams[0])  # (N, H, W): one row
    assert_drawn(path)
    with pytest.raises(DataError, match="equal"):
        paper_figures.gradcam_panel(path, images, titles, cams[:1])
    with pytest.raises(ConfigError, match="titles"):
        paper_figures.gradcam_panel(path, images, titles[:2], cams)


# --- grad_cam ------------------------------------------------------------------------------


class Toy(nn.Module):
    """Activation A = [x, 1 - x] of the scaled input x; logits (0, 2 mean(A_0) - mean(A_1)).

    Grad-CAM of class 1: channel weights 2 / HW and -1 / HW, so the map is
    relu(2x - (1 - x)) / HW = relu(3x - 1) / HW, normalised to its maximum; class 0 has zero
    gradient, so an all-zero map.
    """

    def __init__(self):
        super().__init__()
        self.mid_block = nn.Identity()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        a = self.mid_block(torch.cat([x, 1 - x], dim=1))
        logit = 2 * a[:, 0].mean(dim=(1, 2)) - a[:, 1].mean(dim=(1, 2)) + 0 * self.bias
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def test_grad_cam_exact_on_a_constructed_model():
    images = np.zeros((2, SIZE, SIZE), np.float32)
    images[0, :, : SIZE // 2] = 0.9  # only the left half is non-zero
    images[1] = np.linspace(0, 1, SIZE, dtype=np.float32)[None, :]  # a ramp left to right
    cam = grad_cam(Toy(), images, target_label=1)
    scaled = 2 * images - 1  # the classifier sees [-1, 1]
    expected = np.maximum(3 * scaled - 1, 0)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(cam, expected, atol=1e-6)
    assert (cam[0, :, : SIZE // 2] == 1).all() and (cam[0, :, SIZE // 2 :] == 0).all()
    np.testing.assert_array_equal(grad_cam(Toy(), images, target_label=0), 0)  # no evidence


def reference_cam(model, images, label, layer):
    """Grad-CAM by re-running the classifier's forward by hand, cut at the layer's output."""
    x = torch.from_numpy(images).unsqueeze(1) * 2 - 1
    emb = model.time_embedding(model.time_proj(torch.zeros(len(x), dtype=torch.long)))
    h = model.conv_in(x)
    for block in model.down_blocks:
        h, _ = block(hidden_states=h, temb=emb)
    if layer == "last down block":
        a = h.detach().requires_grad_(True)
        h = model.mid_block(a, emb)
    else:
        a = model.mid_block(h, emb).detach().requires_grad_(True)
        h = a
    logits = model.head(model.act(model.norm_out(h)).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits[:, label].sum(), a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[1:], mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.amax(dim=(1, 2), keepdim=True)).detach().numpy()


@pytest.fixture(scope="module")
def tiny_classifier(one_torch_thread):
    torch.manual_seed(0)
    return NoiseAwareClassifier(
        num_classes=2, sample_size=SIZE, block_out_channels=(8, 16), norm_num_groups=8,
        attention_head_dim=8,
    )  # fmt: skip


@pytest.mark.parametrize("layer", ["mid block", "last down block"])
def test_grad_cam_equals_a_reference_computation(tiny_classifier, layer):
    model = tiny_classifier
    images = np.random.default_rng(4).uniform(0, 1, (5, SIZE, SIZE)).astype(np.float32)
    module = model.down_blocks[-1] if layer == "last down block" else None  # None: default
    cam = grad_cam(model, images, 1, layer=module)
    assert cam.shape == (5, SIZE, SIZE) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() <= 1
    np.testing.assert_allclose(cam.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(cam, reference_cam(model, images, 1, layer), atol=1e-5)


def test_grad_cam_batch_independent_per_image_labels_and_no_side_effects(tiny_classifier):
    model = tiny_classifier
    images = np.random.default_rng(5).uniform(0, 1, (5, SIZE, SIZE)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1])
    for frozen in (False, True):
        model.requires_grad_(not frozen).train()
        flags = [p.requires_grad for p in model.parameters()]
        whole = grad_cam(model, images, labels, batch_size=5)
        assert [p.requires_grad for p in model.parameters()] == flags
        assert model.training  # its own mode is restored
        assert all(p.grad is None for p in model.parameters())
        np.testing.assert_allclose(grad_cam(model, images, labels, batch_size=2), whole, atol=1e-5)
        one_by_one = [grad_cam(model, images[i : i + 1], int(labels[i])) for i in range(5)]
        np.testing.assert_allclose(np.concatenate(one_by_one), whole, atol=1e-5)
    model.eval()


def test_grad_cam_rejects_bad_inputs(tiny_classifier):
    images = np.full((2, SIZE, SIZE), 0.5, np.float32)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        grad_cam(tiny_classifier, images * 3, 1)
    with pytest.raises(ConfigError, match="target_label"):
        grad_cam(tiny_classifier, images, 2)
    with pytest.raises(DataError, match="B, H, W"):
        grad_cam(tiny_classifier, images[0], 1)


def test_fig3_grid_outlines_the_true_lesions(arrays, tmp_path):
    """With lesion masks, each lesion's outline is drawn in the outline colour on the
    original, the counterfactuals and the maps of its row; rows without a lesion get none."""
    originals, latents, cfs, absd = arrays
    masks = np.zeros(originals.shape, np.uint8)
    masks[5, 4:10, 4:10] = 1
    plain, outlined = tmp_path / "plain.png", tmp_path / "outlined.png"
    paper_figures.fig3_grid(plain, originals, latents, cfs, absd, [5, 0], ["a", "b"])
    paper_figures.fig3_grid(outlined, originals, latents, cfs, absd, [5, 0], ["a", "b"],
                      lesion_masks=masks)  # fmt: skip
    a, b = assert_drawn(plain), assert_drawn(outlined)
    cyan = 255 * np.array(matplotlib.colors.to_rgb(paper_figures.OUTLINE_COLOUR))

    def outline_pixels(image):
        return int((np.abs(image[..., :3].astype(float) - cyan).max(axis=-1) < 12).sum())

    assert outline_pixels(a) == 0 and outline_pixels(b) > 100
    empty = tmp_path / "empty.png"  # masks with no lesion in the shown rows: nothing drawn
    paper_figures.fig3_grid(empty, originals, latents, cfs, absd, [0, 3], ["a", "b"],
                      lesion_masks=masks)  # fmt: skip
    assert outline_pixels(assert_drawn(empty)) == 0
