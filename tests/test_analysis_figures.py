"""Figures: files are written, and what is drawn equals what was computed (read back from the
matplotlib Axes and compared with values computed independently from the files on disk)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from analysis_fixtures import HAND_EVAL_A, HAND_EVAL_B, comb_pass_at_k, write_handmade_run

from analysis import style
from analysis.core import Options, analyse
from analysis.figures import (
    fig1_entropy,
    fig2_rollouts,
    fig3_pass1_passk,
    fig4_passk_curves,
    fig5_advantage,
    fig6_expected_rollouts,
    fig7_train_accuracy,
    smooth,
    write_figures,
)
from dars.schedules import extra_rollouts_batch

import matplotlib.pyplot as plt  # noqa: E402  (after analysis.style chose Agg)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_handmade_run(root, "baseline", evals={2: HAND_EVAL_A, 4: HAND_EVAL_B}, steps=6)
    write_handmade_run(root, "dars_et", evals={2: HAND_EVAL_B, 4: HAND_EVAL_A}, steps=6,
                       extra_per_step=5)
    write_handmade_run(root, "my_variant", evals={4: HAND_EVAL_B}, steps=6, extra_per_step=1)
    return root


@pytest.fixture(scope="module")
def analysis(runs):
    return analyse([runs], Options(n_boot=100))


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def _raw_metrics(runs, name):
    return [json.loads(x) for x in (runs / name / "metrics.jsonl").read_text().splitlines()]


def test_backend_is_agg():
    assert plt.get_backend().lower() == "agg"


def test_fig1_plots_the_logged_entropy(runs, analysis):
    fig = fig1_entropy(analysis)
    ax_tok, ax_seq = fig.axes[:2]
    for name, lab in (("baseline-s0", "baseline"), ("dars_et-s0", "dars_et")):
        raw = _raw_metrics(runs, name)
        ln = _lines(ax_tok)[lab]
        np.testing.assert_array_equal(ln.get_xdata(), [r["step"] for r in raw])
        np.testing.assert_allclose(ln.get_ydata(), [r["entropy/token_mean"] for r in raw])
        np.testing.assert_allclose(_lines(ax_seq)[lab].get_ydata(),
                                   [r["entropy/seq_mean"] for r in raw])
    assert ax_tok.get_xlabel() == "Training step" and "nats" in ax_tok.get_ylabel()
    assert fig.legends, "figure-level legend expected"
    plt.close(fig)
    sm = fig1_entropy(analysis, window=3)
    raw = [r["entropy/token_mean"] for r in _raw_metrics(runs, "baseline-s0")]
    want = [np.mean(raw[max(0, i - 2):i + 1]) for i in range(len(raw))]
    np.testing.assert_allclose(_lines(sm.axes[0])["baseline"].get_ydata(), want)
    plt.close(sm)
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])


def test_fig2_and_fig7_plot_rollouts_and_accuracy(runs, analysis):
    raw = _raw_metrics(runs, "dars_et-s0")
    fig = fig2_rollouts(analysis)
    s1, s2, tot, per_step = fig.axes[:4]
    np.testing.assert_allclose(_lines(s1)["dars_et"].get_ydata(),
                               [r["rollouts/stage1"] / r["prompts"] for r in raw])
    np.testing.assert_allclose(_lines(s2)["dars_et"].get_ydata(),
                               [r["rollouts/stage2"] / r["prompts"] for r in raw])
    np.testing.assert_allclose(_lines(tot)["dars_et"].get_ydata(),
                               [r["rollouts/per_prompt"] for r in raw])
    np.testing.assert_allclose(_lines(per_step)["dars_et"].get_ydata(),
                               [r["rollouts/stage2"] for r in raw])
    plt.close(fig)
    fig = fig7_train_accuracy(analysis, x="tokens")
    acc, none = fig.axes[:2]
    np.testing.assert_allclose(_lines(acc)["dars_et"].get_ydata(), [r["acc/stage1"] for r in raw])
    np.testing.assert_allclose(_lines(acc)["dars_et"].get_xdata(),
                               np.cumsum([r["tokens/generated"] for r in raw]))
    np.testing.assert_allclose(_lines(none)["dars_et"].get_ydata(),
                               [r["groups/solve_none"] / r["prompts"] for r in raw])
    assert acc.get_xlabel() == "" and fig.axes[2].get_xlabel() == "Generated tokens"
    plt.close(fig)


def test_fig3_trajectory_points(analysis):
    fig = fig3_pass1_passk(analysis)
    ax = fig.axes[0]
    lines = _lines(ax)

    def micro(probs, k):
        return np.mean([comb_pass_at_k(len(s), sum(s), k) for _b, _i, s, _p in probs])

    ln = lines["dars_et"]  # step 2 = HAND_EVAL_B, step 4 = HAND_EVAL_A
    np.testing.assert_allclose(ln.get_xdata(), [micro(HAND_EVAL_B, 1), micro(HAND_EVAL_A, 1)])
    np.testing.assert_allclose(ln.get_ydata(), [micro(HAND_EVAL_B, 4), micro(HAND_EVAL_A, 4)])
    arrows = [c for c in ax.texts if getattr(c, "arrow_patch", None) is not None]
    assert len(arrows) == 2  # one per consecutive pair of baseline and dars_et
    assert ax.get_xlabel() == "Pass@1" and ax.get_ylabel() == "Pass@4"
    plt.close(fig)


def test_fig4_curves_and_bands(analysis):
    fig = fig4_passk_curves(analysis)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["AIME24", "MATH-500", "Overall (micro)"]
    overall = [ax for ax in fig.axes if ax.get_title() == "Overall (micro)"][0]
    ln = _lines(overall)["my_variant"]
    np.testing.assert_array_equal(ln.get_xdata(), [1, 2, 3, 4])
    want = [np.mean([comb_pass_at_k(4, sum(s), k) for _b, _i, s, _p in HAND_EVAL_B])
            for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(ln.get_ydata(), want)
    assert overall.get_xscale() == "log"
    assert len(overall.collections) == 3  # one CI band per label
    plt.close(fig)


def test_fig5_analytic_curves():
    fig = fig5_advantage()
    ax_plain, ax_std = fig.axes[:2]
    lines = _lines(ax_plain)
    grpo = [ln for lab, ln in lines.items() if lab.startswith("GRPO")][0]
    p = np.asarray(grpo.get_xdata())
    np.testing.assert_allclose(grpo.get_ydata(), 8 * 2 * p * (1 - p))
    et = lines["ET target (peak)"]
    y = np.asarray(et.get_ydata())
    assert np.allclose(y[p < 0.5], 4.0) and np.isnan(y[p >= 0.5]).all()
    hw = [ln for lab, ln in lines.items() if lab.startswith("HW target")][0]
    np.testing.assert_allclose(np.asarray(hw.get_ydata())[p < 0.5], 2 * (1 - p[p < 0.5]) * 4.0)
    grpo_std = [ln for lab, ln in _lines(ax_std).items() if lab.startswith("GRPO")][0]
    np.testing.assert_allclose(grpo_std.get_ydata(), 8 * 2 * np.sqrt(p * (1 - p)))
    delivered = lines["ET delivered ($n_{max}$=32)"]
    # p_hat = 1/8: 8 + 11 extra rollouts, mass 19 * 2 * (1/8)(7/8)
    assert delivered.get_ydata()[1] == pytest.approx(19 * 2 * (1 / 8) * (7 / 8))
    plt.close(fig)


def test_fig6_expected_rollouts_values():
    fig = fig6_expected_rollouts()
    lines = _lines(fig.axes[0])
    et, hw = lines["ET ($n_{max}$=32)"], lines["HW ($n_{max}$=64)"]
    q = np.asarray(et.get_xdata())

    def expect(qv, n_max, kind):
        extra = extra_rollouts_batch(np.arange(9) / 8, 8, n_max, kind)
        return sum(math.comb(8, c) * qv**c * (1 - qv) ** (8 - c) * (8 + extra[c]) for c in range(9))

    for i in (0, 17, 40, 100, 150, 200):
        assert et.get_ydata()[i] == pytest.approx(expect(q[i], 32, "et"))
        assert hw.get_ydata()[i] == pytest.approx(expect(q[i], 64, "hw"))
    at = {round(v, 3): i for i, v in enumerate(q)}
    # docs/algorithm.md §3.3: q=0.2 -> ET 16.8, HW 28.2; q=0.5 -> 9.0 / 10.5 (one decimal)
    assert et.get_ydata()[at[0.2]] == pytest.approx(16.8, abs=0.06)
    assert hw.get_ydata()[at[0.2]] == pytest.approx(28.2, abs=0.06)
    assert et.get_ydata()[at[0.5]] == pytest.approx(9.0, abs=0.06)
    assert hw.get_ydata()[at[0.5]] == pytest.approx(10.5, abs=0.06)
    assert et.get_ydata()[0] == 32 and hw.get_ydata()[0] == 64
    plt.close(fig)


def test_palette_is_fixed_and_consistent(analysis):
    styles = style.label_styles(analysis.label_order, analysis.label_experiment)
    assert styles["baseline"]["color"] == style.PALETTE["baseline"]
    assert styles["dars_et"]["color"] == style.PALETTE["dars_et"]
    assert styles["my_variant"]["color"] not in style.PALETTE.values()
    # the same label gets the same colour in every figure
    f1, f4 = fig1_entropy(analysis), fig4_passk_curves(analysis)
    c1 = _lines(f1.axes[0])["my_variant"].get_color()
    c4 = _lines(f4.axes[0])["my_variant"].get_color()
    assert c1 == c4 == styles["my_variant"]["color"]
    plt.close(f1)
    plt.close(f4)
    # deterministic, collision-free extras; shared experiment -> same colour, new line style
    cm = style.colour_map(["x1", "x2", "x3", "dars_hw"])
    assert cm == style.colour_map(["dars_hw", "x3", "x2", "x1"])
    assert len({cm["x1"], cm["x2"], cm["x3"]}) == 3
    st = style.label_styles(["a", "b"], {"a": "dars_et", "b": "dars_et"})
    assert st["a"]["color"] == st["b"]["color"] and st["a"]["linestyle"] != st["b"]["linestyle"]


def test_write_figures_files_nonempty(analysis, tmp_path):
    written, notes = write_figures(analysis, tmp_path, formats=("png", "pdf"), dpi=60)
    assert sorted(written) == [1, 2, 3, 4, 5, 6, 7] and not notes
    for paths in written.values():
        assert {p.suffix for p in paths} == {".png", ".pdf"}
        for p in paths:
            assert p.stat().st_size > 2000
            head = p.read_bytes()[:4]
            assert head == (b"\x89PNG" if p.suffix == ".png" else b"%PDF")
    # no runs at all: only the analytic figures
    written, notes = write_figures(None, tmp_path / "analytic", formats=("png",), dpi=60)
    assert sorted(written) == [5, 6] and len(notes) == 5


def test_pooled_label_plots_mean_and_band(tmp_path):
    for seed in (0, 1):
        write_handmade_run(tmp_path, "dars_hw", seed=seed, steps=5)
    a = analyse([tmp_path], Options(n_boot=50, labels={"dars_hw": "DARS-HW"}))
    fig = fig1_entropy(a)
    ax = fig.axes[0]
    raws = [_raw_metrics(tmp_path, f"dars_hw-s{s}") for s in (0, 1)]
    want = [(r0["entropy/token_mean"] + r1["entropy/token_mean"]) / 2 for r0, r1 in zip(*raws)]
    np.testing.assert_allclose(_lines(ax)["DARS-HW"].get_ydata(), want)
    assert len(ax.collections) == 1  # the min-max band over the two seeds
    plt.close(fig)


def test_seed_group_bands_in_fig3_and_fig4(tmp_path):
    """Default labels pool the seeds of one configuration: figure 3 draws the mean over seeds
    with min-max error bars, figure 4 the mean Pass@k curve with a min-max band over seeds."""
    write_handmade_run(tmp_path, "dars_hw", seed=0, evals={2: HAND_EVAL_A, 4: HAND_EVAL_B})
    write_handmade_run(tmp_path, "dars_hw", seed=1, evals={2: HAND_EVAL_B, 4: HAND_EVAL_A})
    a = analyse([tmp_path], Options(n_boot=50))
    assert a.label_order == ["dars_hw"]

    def micro(probs, k):
        return np.mean([comb_pass_at_k(len(s), sum(s), k) for _b, _i, s, _p in probs])

    fig = fig3_pass1_passk(a)
    ax = fig.axes[0]
    ln = _lines(ax)["dars_hw"]
    mean1 = (micro(HAND_EVAL_A, 1) + micro(HAND_EVAL_B, 1)) / 2
    np.testing.assert_allclose(ln.get_xdata(), [mean1, mean1])
    assert ax.collections, "min-max error bars over the seeds expected"
    pts = np.vstack([np.asarray(s) for c in ax.collections for s in c.get_segments()])
    xs, ys = pts[:, 0], pts[:, 1]
    lo1, hi1 = sorted([micro(HAND_EVAL_A, 1), micro(HAND_EVAL_B, 1)])
    lo4, hi4 = sorted([micro(HAND_EVAL_A, 4), micro(HAND_EVAL_B, 4)])
    assert xs.min() == pytest.approx(lo1) and xs.max() == pytest.approx(hi1)
    assert ys.min() == pytest.approx(lo4) and ys.max() == pytest.approx(hi4)
    plt.close(fig)

    fig = fig4_passk_curves(a)
    overall = next(ax for ax in fig.axes if ax.get_title() == "Overall (micro)")
    want = np.array([[micro(p, k) for k in (1, 2, 3, 4)] for p in (HAND_EVAL_A, HAND_EVAL_B)])
    np.testing.assert_allclose(_lines(overall)["dars_hw"].get_ydata(), want.mean(0))
    (band,) = overall.collections
    verts = band.get_paths()[0].vertices
    inside = verts[(verts[:, 0] >= 1) & (verts[:, 0] <= 4)]
    for j, k in enumerate((1, 2, 3, 4)):
        at = inside[np.isclose(inside[:, 0], k), 1]
        assert at.min() == pytest.approx(want[:, j].min())
        assert at.max() == pytest.approx(want[:, j].max())
    plt.close(fig)
