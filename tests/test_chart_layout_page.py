"""The charts the issue found squashed or cut (issue 20), checked on their specs: heatmaps sized per cell (Step)
and drawn at their own width, facets narrow enough for a 1400 px window (main area ~940 px), titles over the whole
facet, and legends that tell the lines apart. The screenshots in the report are the visual check."""
import numpy as np
import pandas as pd
import pytest

from analyses.confidence import charts as cc
from analyses.knowledge import charts as kc
from analyses.truthfulness import charts as tc

MAIN_WIDTH = 940  # px of the main area in a 1400 px window with the sidebar open
AXIS_AND_LEGEND = 260  # y axis labels, legend and spacing around the panels
INDEPENDENT_Y = 285  # the same with an own y axis per panel (confidence's ablation facets: 281 px in Chromium)


def _transfer() -> pd.DataFrame:
    return pd.DataFrame([dict(direction=d, model=m, alpha=1.0, mean_change=0.1 * i, flip_rate=0.2 * i,
                              normalised_effect=0.05 * i,
                              accuracy_after=0.5) for i, (d, m) in enumerate([("base", "base"), ("base", "post"),
                                                                              ("post", "base"), ("post", "post")])])


@pytest.mark.parametrize("measure", ["normalised_effect", "mean_change", "flip_rate"])
def test_the_transfer_heatmap_is_sized_per_cell_with_a_whole_title(measure):
    spec = tc.transfer_heatmap(_transfer(), 1.0, measure).to_dict()
    assert spec["width"] == {"step": 120} and spec["height"] == {"step": 70}
    assert len(spec["layer"][0]["title"]["text"]) <= 40  # fits over two 120 px cells and the axis


def test_the_iou_heatmap_is_sized_per_cell():
    table = pd.DataFrame([dict(n_candidates=n, top_norm_fraction=f, iou=0.5) for n in (5, 10, 20)
                          for f in (0.1, 0.5, 1.0)])
    spec = cc.overlap(table).to_dict()
    assert spec["height"] == {"step": 36} and spec["width"] == {"step": 90}


def _facet_width(spec: dict, n_columns: int) -> int:
    return spec["spec"]["width"] * n_columns + AXIS_AND_LEGEND


def test_the_facets_fit_the_page_width():
    rng = np.random.default_rng(0)
    ablation = pd.DataFrame([dict(model=m, group=g, neuron=i, **{f"d_{a}_{b}": rng.normal() for a in ("entropy", "loss")
                                                                 for b in ("total", "direct")})
                             for m in ("base", "post") for g in ("candidate", "random") for i in range(8)])
    spec = cc.ablation(ablation).to_dict()
    assert spec["spec"]["width"] * 2 + INDEPENDENT_Y <= MAIN_WIDTH
    general = pd.DataFrame([dict(model=m, held_out=h, method=me, layer=l, accuracy=0.5) for m in ("base", "post")
                            for h in "abcdef" for me in ("logistic", "projection") for l in range(3)])
    spec = tc.generalisation(general).to_dict()
    assert _facet_width(spec, 2) <= MAIN_WIDTH
    assert spec["title"].startswith("Generalisation") and "title" not in spec["spec"]  # once, over both panels
    assert spec["spec"]["encoding"]["color"]["legend"]["orient"] == "bottom"  # 12 lines: legend under, not off


def test_the_method_legend_tells_the_methods_apart_by_shape():
    probes = pd.DataFrame([dict(model=m, source=m, method=me, layer=l, accuracy=0.5) for m in ("base", "post")
                           for me in ("logistic", "projection") for l in range(3)])
    for chart in (tc.probe_accuracy(probes), tc.probe_transfer(probes)):
        encoding = chart.to_dict()["encoding"]
        assert encoding["shape"]["field"] == encoding["strokeDash"]["field"] == "method"


def test_the_knowledge_maps_label_every_layer_and_token():
    grids = pd.DataFrame([dict(item=0, component="resid", model=m, token_index=i, token=t, is_subject=i == 1,
                               layer=l, norm=0.5) for m in ("base", "post") for i, t in enumerate(["A", "B", "C"])
                          for l in range(18)])
    for chart in (kc.fact_map(grids, 0, "resid"), kc.fact_difference(grids, 0, "resid")):
        spec = chart.to_dict()
        inner = spec.get("spec", spec)
        assert inner["width"] == {"step": 16} and inner["height"] == {"step": 18}
        assert inner["encoding"]["x"]["axis"]["labelOverlap"] is False
        assert inner["encoding"]["y"]["axis"]["labelOverlap"] is False
        assert len(spec["title"]) <= 60
    assert 18 * 16 * 2 + AXIS_AND_LEGEND <= MAIN_WIDTH  # two 18-layer panels of 16 px cells


def test_the_pages_draw_heatmaps_at_their_own_width():
    from pathlib import Path

    pages = Path(__file__).resolve().parent.parent / "app_pages"
    truth, knowledge, confidence = ((pages / n).read_text() for n in ("2_Truthfulness.py", "4_Knowledge.py",
                                                                       "5_Confidence.py"))
    assert truth.count('transfer_heatmap(result.transfer, alpha') == truth.count('width="content")\n', 0) >= 2
    assert 'charts["overlap"], pair.name), width="content"' in confidence  # (renamed for a road pair)
    assert "st.columns([2, 1])" not in knowledge  # maps one per row: side by side they were cut


def test_the_diffing_lens_heatmaps_fit_the_page_and_every_rose_fell_label_shows():
    from analyses.diffing import charts as dc

    lens = pd.DataFrame([dict(model=m, layer=l, rank=r, token=f"tok{r}", prob=0.1) for m in ("base", "post")
                         for l in range(19) for r in range(10)])
    spec = dc.lens(lens).to_dict()
    assert 2 * 10 * spec["spec"]["width"]["step"] + dc.AXES <= MAIN_WIDTH
    promoted = pd.DataFrame([dict(kind=k, layer=l, rank=r, token="t", score=0.1) for k in ("promoted", "demoted")
                             for l in range(19) for r in range(10)])
    assert 2 * 10 * dc.difference_tokens(promoted, "logit_lens").to_dict()["spec"]["width"]["step"] + dc.AXES \
        <= MAIN_WIDTH
    moved = pd.DataFrame([dict(token=f"t{i}", p_base=0.1, p_post=0.2, delta=0.1, change="rose") for i in range(20)])
    assert dc.changes(moved).to_dict()["height"]["step"] >= 18  # room for every bar's label
