"""Chart labels that show: the confidence scatter's candidates none on top of another and its y-axis title whole;
every refusal condition named under its bar."""
import numpy as np
import pandas as pd

from analyses.confidence import charts


def _neurons(logit_vars, norms):
    rows = [{"model": model, "neuron": i, "norm": norm, "logit_var": var, "null_frac": 0.5, "top_norm": True,
             "candidate": True} for model in ("base", "post") for i, (var, norm) in enumerate(zip(logit_vars, norms))]
    rest = [{"model": model, "neuron": 100 + i, "norm": 50.0 + i, "logit_var": 10.0 ** (2 + i / 10),
             "null_frac": 0.1, "top_norm": False, "candidate": False} for model in ("base", "post") for i in range(30)]
    return pd.DataFrame(rows + rest)


def _label_rows(chart):
    data = chart.to_dict()["datasets"]
    [table] = [pd.DataFrame(rows) for rows in data.values()]
    return table[table["candidate"]]


def test_clustered_candidates_labels_are_at_least_a_label_apart():
    # six candidates within a few percent of each other (as on the demo pair's layer), one far off
    chart = charts.scatter(_neurons([1500, 1520, 1480, 1550, 1600, 1490, 300], [180, 181, 182, 183, 179, 185, 320]))
    table = _label_rows(chart)
    logs = np.log10(table["logit_var"].tolist() + [10.0 ** 2, 10.0 ** 4.9])
    gap = (logs.max() - logs.min()) * charts.LABEL_PX / charts.SCATTER_HEIGHT
    for _, panel in table.groupby("model"):
        heights = np.sort(np.log10(panel["label_y"].to_numpy()))
        assert np.diff(heights).min() >= gap * 0.999
        lone = panel[panel["neuron"] == 6].iloc[0]
        assert (lone["label_x"], lone["label_y"]) == (lone["norm"], lone["logit_var"])  # a lone one beside its point


def test_the_y_axis_title_fits_beside_the_panel():
    spec = charts.scatter(_neurons([1500, 300], [180, 320])).to_dict()
    title = spec["spec"]["layer"][0]["encoding"]["y"]["title"]
    assert len(title) * 6 < charts.SCATTER_HEIGHT  # ~6 px a character at the axis title's 11 px


def test_every_refusal_condition_is_named_under_its_bar():
    from analyses.refusal.charts import CONDITION_ORDER, score_bars

    scores = pd.DataFrame([{"model": m, "transfer": t, "intervention": "ablate", "prompts": "harmful", "n": 4,
                            "refusal_rate": 0.5} for m in ("base", "post") for t in CONDITION_ORDER])
    axis = score_bars(scores).to_dict()["encoding"]["x"]["axis"]
    # Vega drops labels it finds overlapping (at -40° every other one went) and cuts long ones at 180 px
    assert axis["labelOverlap"] is False and axis["labelLimit"] == 0
    assert axis["labelAngle"] == -90  # upright labels take a font's height of a 27 px band, so none overlaps
