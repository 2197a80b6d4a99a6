"""Figures: files are written, and what is drawn equals what was computed (read back from the
matplotlib Axes and compared with values computed independently from the files on disk); with
seven runs every label keeps its own look, bands stay apart, axes read at paper size."""

from __future__ import annotations

import dataclasses
import itertools
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
    passk_curve,
    smooth,
    training_series,
    write_figures,
)
from analysis.names import ALL, EXPERIMENTS
from dars.schedules import extra_rollouts_batch

# isort: split
import matplotlib.pyplot as plt  # after analysis.style chose Agg
from matplotlib.collections import LineCollection, PolyCollection


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_handmade_run(root, "baseline", evals={2: HAND_EVAL_A, 4: HAND_EVAL_B}, steps=6)
    write_handmade_run(root, "dars_et", evals={2: HAND_EVAL_B, 4: HAND_EVAL_A}, steps=6, extra_per_step=5)
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
        np.testing.assert_allclose(_lines(ax_seq)[lab].get_ydata(), [r["entropy/seq_mean"] for r in raw])
    assert ax_tok.get_xlabel() == "Training step" and "nats" in ax_tok.get_ylabel()
    assert fig.legends, "figure-level legend expected"
    plt.close(fig)
    sm = fig1_entropy(analysis, window=3)
    raw = [r["entropy/token_mean"] for r in _raw_metrics(runs, "baseline-s0")]
    want = [np.mean(raw[max(0, i - 2) : i + 1]) for i in range(len(raw))]
    np.testing.assert_allclose(_lines(sm.axes[0])["baseline"].get_ydata(), want)
    plt.close(sm)
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])


def test_fig2_and_fig7_plot_rollouts_and_accuracy(runs, analysis):
    raw = _raw_metrics(runs, "dars_et-s0")
    fig = fig2_rollouts(analysis)
    s1, s2, tot, per_step = fig.axes[:4]
    np.testing.assert_allclose(_lines(s1)["dars_et"].get_ydata(), [r["rollouts/stage1"] / r["prompts"] for r in raw])
    np.testing.assert_allclose(_lines(s2)["dars_et"].get_ydata(), [r["rollouts/stage2"] / r["prompts"] for r in raw])
    np.testing.assert_allclose(_lines(tot)["dars_et"].get_ydata(), [r["rollouts/per_prompt"] for r in raw])
    np.testing.assert_allclose(_lines(per_step)["dars_et"].get_ydata(), [r["rollouts/stage2"] for r in raw])
    plt.close(fig)
    fig = fig7_train_accuracy(analysis, x="tokens")
    acc, none = fig.axes[:2]
    # accuracy and prompt fractions in % (x100), as in the tables
    np.testing.assert_allclose(_lines(acc)["dars_et"].get_ydata(), [100 * r["acc/stage1"] for r in raw])
    np.testing.assert_allclose(_lines(acc)["dars_et"].get_xdata(), np.cumsum([r["tokens/generated"] for r in raw]))
    np.testing.assert_allclose(
        _lines(none)["dars_et"].get_ydata(), [100 * r["groups/solve_none"] / r["prompts"] for r in raw]
    )
    assert acc.get_xlabel() == "" and fig.axes[2].get_xlabel() == "Generated tokens"
    assert all("(%)" in ax.get_ylabel() for ax in fig.axes[:4])
    plt.close(fig)


def test_fig3_trajectory_points(analysis):
    fig = fig3_pass1_passk(analysis)
    ax = fig.axes[0]
    lines = _lines(ax)

    def micro(probs, k):
        return np.mean([comb_pass_at_k(len(s), sum(s), k) for _b, _i, s, _p in probs])

    ln = lines["dars_et"]  # step 2 = HAND_EVAL_B, step 4 = HAND_EVAL_A; in %
    np.testing.assert_allclose(ln.get_xdata(), [100 * micro(HAND_EVAL_B, 1), 100 * micro(HAND_EVAL_A, 1)])
    np.testing.assert_allclose(ln.get_ydata(), [100 * micro(HAND_EVAL_B, 4), 100 * micro(HAND_EVAL_A, 4)])
    arrows = [c for c in ax.texts if getattr(c, "arrow_patch", None) is not None]
    assert len(arrows) == 2  # one per consecutive pair of baseline and dars_et
    assert ax.get_xlabel() == "Pass@1 (%)" and ax.get_ylabel() == "Pass@4 (%)"
    plt.close(fig)


def test_fig4_curves_and_bands(analysis):
    fig = fig4_passk_curves(analysis)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["AIME24", "MATH-500", "Overall (micro)"]
    overall = next(ax for ax in fig.axes if ax.get_title() == "Overall (micro)")
    ln = _lines(overall)["my_variant"]
    np.testing.assert_array_equal(ln.get_xdata(), [1, 2, 3, 4])
    want = [np.mean([comb_pass_at_k(4, sum(s), k) for _b, _i, s, _p in HAND_EVAL_B]) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(ln.get_ydata(), 100 * np.asarray(want))  # in %
    assert overall.get_xscale() == "log" and fig.axes[0].get_ylabel() == "Pass@k (%)"
    # one CI band per label, drawn as whiskers (no fill that could merge with the others)
    assert len(overall.collections) == 3
    assert all(isinstance(c, LineCollection) for c in overall.collections)
    plt.close(fig)


def test_fig5_analytic_curves():
    fig = fig5_advantage()
    ax_plain, ax_std = fig.axes[:2]
    lines = _lines(ax_plain)
    grpo = next(ln for lab, ln in lines.items() if lab.startswith("GRPO"))
    p = np.asarray(grpo.get_xdata())
    np.testing.assert_allclose(grpo.get_ydata(), 8 * 2 * p * (1 - p))
    et = lines["ET target (peak)"]
    y = np.asarray(et.get_ydata())
    assert np.allclose(y[p < 0.5], 4.0) and np.isnan(y[p >= 0.5]).all()
    hw = next(ln for lab, ln in lines.items() if lab.startswith("HW target"))
    np.testing.assert_allclose(np.asarray(hw.get_ydata())[p < 0.5], 2 * (1 - p[p < 0.5]) * 4.0)
    grpo_std = next(ln for lab, ln in _lines(ax_std).items() if lab.startswith("GRPO"))
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


def test_a_new_schedule_reaches_figures_5_and_6(tmp_path, monkeypatch):
    """One registered function (with its target) + one YAML: drawn, with nothing changed in
    analysis/."""
    import shutil

    from dars import schedules

    def half_peak(p, a_peak):
        return np.full_like(p, a_peak / 2)

    monkeypatch.setitem(
        schedules.SCHEDULES,
        "half",
        lambda acc, n, n_max, use_std=False: schedules._from_target(acc, n, n_max, use_std, half_peak),
    )
    monkeypatch.setitem(schedules.TARGETS, "half", half_peak)
    conf = tmp_path / "schedule"
    shutil.copytree(schedules.CONF_SCHEDULES, conf)
    (conf / "half.yaml").write_text("# @package algorithm\nschedule: half\nn_max: 24\n")
    monkeypatch.setattr(schedules, "CONF_SCHEDULES", conf)

    fig = fig5_advantage()
    lines = _lines(fig.axes[0])
    p = np.asarray(lines["half target"].get_xdata())
    np.testing.assert_allclose(np.asarray(lines["half target"].get_ydata())[p < 0.5], 2.0)
    dots = lines["half delivered ($n_{max}$=24)"]
    extra = extra_rollouts_batch(np.arange(4) / 8, 8, 24, "half")
    pp = np.where(np.arange(4) == 0, 1 / 16, np.arange(4) / 8)
    np.testing.assert_allclose(dots.get_ydata(), (8 + extra) * 2 * pp * (1 - pp))
    assert "ET target (peak)" in lines  # the paper's schedules are still there
    plt.close(fig)

    fig = fig6_expected_rollouts()
    lines = _lines(fig.axes[0])
    half = lines["half ($n_{max}$=24)"]
    q = np.asarray(half.get_xdata())
    np.testing.assert_allclose(half.get_ydata(), schedules.expected_total_rollouts("half", q, 8, 24))
    assert {"ET ($n_{max}$=32)", "HW ($n_{max}$=64)", "GRPO (n=8)"} <= set(lines)
    plt.close(fig)


def test_palette_is_fixed_and_consistent(analysis):
    styles = style.label_styles(analysis.label_order, analysis.label_experiment)
    assert styles["baseline"]["color"] == style.PALETTE["baseline"]
    assert styles["dars_et"]["color"] == style.PALETTE["dars_et"]
    assert styles["my_variant"]["color"] not in style.PALETTE.values()
    # the same label gets the same colour in every figure
    f1, f4 = fig1_entropy(analysis), fig4_passk_curves(analysis)
    for lab in analysis.label_order:  # colour, line style and marker: the same in each figure
        l1, l4 = _lines(f1.axes[0])[lab], _lines(f4.axes[0])[lab]
        assert _look(l1) == _look(l4) == tuple(styles[lab].values())
    plt.close(f1)
    plt.close(f4)
    # deterministic, collision-free extras; shared experiment -> same colour, new line style
    cm = style.colour_map(["x1", "x2", "x3", "dars_hw"])
    assert cm == style.colour_map(["dars_hw", "x3", "x2", "x1"])
    assert len({cm["x1"], cm["x2"], cm["x3"]}) == 3
    st = style.label_styles(["a", "b"], {"a": "dars_et", "b": "dars_et"})
    assert st["a"]["color"] == st["b"]["color"] and st["a"]["linestyle"] != st["b"]["linestyle"]
    assert st["a"]["marker"] != st["b"]["marker"]


def _look(line) -> tuple:
    return line.get_color(), line.get_linestyle(), line.get_marker()


def test_every_label_has_its_own_look():
    """No two labels share (colour, line style, marker), whatever the mix: the seven
    experiments, several labels per experiment (n_max sweeps), more unknown names than extra
    colours. The seven keep their fixed look; breadth variants are dashed."""
    seven = style.label_styles(EXPERIMENTS, {e: e for e in EXPERIMENTS})
    assert len({tuple(v.values()) for v in seven.values()}) == 7
    for e in EXPERIMENTS:
        assert seven[e] == {"color": style.PALETTE[e], "linestyle": style.LOOK[e][0], "marker": style.LOOK[e][1]}
        assert (seven[e]["linestyle"] == "--") == ("breadth" in e)
    labels = list(EXPERIMENTS) + [f"dars_hw_n{m}" for m in (16, 32, 48, 96, 128)] + [f"custom{i}" for i in range(20)]
    exp = {lab: ("dars_hw" if lab.startswith("dars_hw_n") else lab) for lab in labels}
    looks = style.label_styles(labels, exp)
    assert len({tuple(v.values()) for v in looks.values()}) == len(labels)


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
    mean1 = 100 * (micro(HAND_EVAL_A, 1) + micro(HAND_EVAL_B, 1)) / 2
    np.testing.assert_allclose(ln.get_xdata(), [mean1, mean1])
    assert ax.collections, "min-max error bars over the seeds expected"
    pts = np.vstack([np.asarray(s) for c in ax.collections for s in c.get_segments()])
    xs, ys = pts[:, 0] / 100, pts[:, 1] / 100
    lo1, hi1 = sorted([micro(HAND_EVAL_A, 1), micro(HAND_EVAL_B, 1)])
    lo4, hi4 = sorted([micro(HAND_EVAL_A, 4), micro(HAND_EVAL_B, 4)])
    assert xs.min() == pytest.approx(lo1) and xs.max() == pytest.approx(hi1)
    assert ys.min() == pytest.approx(lo4) and ys.max() == pytest.approx(hi4)
    plt.close(fig)

    fig = fig4_passk_curves(a)
    overall = next(ax for ax in fig.axes if ax.get_title() == "Overall (micro)")
    want = 100 * np.array([[micro(p, k) for k in (1, 2, 3, 4)] for p in (HAND_EVAL_A, HAND_EVAL_B)])
    np.testing.assert_allclose(_lines(overall)["dars_hw"].get_ydata(), want.mean(0))
    (band,) = overall.collections  # whiskers: one vertical segment per marked k (all 4 here)
    segs = sorted((np.asarray(s) for s in band.get_segments()), key=lambda s: s[0, 0])
    assert [s[0, 0] for s in segs] == [1, 2, 3, 4]
    for j, seg in enumerate(segs):
        assert seg[:, 0].tolist() == [j + 1, j + 1]  # vertical
        assert seg[:, 1].min() == pytest.approx(want[:, j].min())
        assert seg[:, 1].max() == pytest.approx(want[:, j].max())
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# seven runs at paper size
# --------------------------------------------------------------------------------------------


def _problems16(solved: list[int]) -> list[tuple]:
    """Problems with 16 samples each (K = 16: more k values than markers per curve)."""
    return [("aime" if i < 3 else "math", f"p{i}", [1] * c + [0] * (16 - c), [""] * 16) for i, c in enumerate(solved)]


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    """The seven experiments as identical runs (40 steps, K = 16): every series coincides, the
    hardest case for telling labels apart."""
    root = tmp_path_factory.mktemp("seven")
    evals = {20: _problems16([0, 2, 5, 9, 12, 16]), 40: _problems16([1, 3, 8, 11, 15, 16])}
    for e in EXPERIMENTS:
        write_handmade_run(root, e, evals=evals, steps=40, n_val=16, extra_per_step=1)
    a = analyse([root], Options(n_boot=50))
    assert a.label_order == list(EXPERIMENTS) and a.K == 16
    return a


def _marked_x(line) -> list[float]:
    return [float(line.get_xdata()[i]) for i in line.get_markevery()]


def test_seven_coinciding_runs_stay_distinguishable(seven):
    """Seven identical training curves: each label keeps its own (colour, line style, marker),
    markers sit at a few points only, shifted per label so no marked point carries more than
    two labels' markers (with 40 steps and 8 markers per curve)."""
    styles = style.label_styles(seven.label_order, seven.label_experiment)
    for fn in (fig1_entropy, fig2_rollouts, fig7_train_accuracy):
        fig = fn(seven)
        for ax in fig.axes[:2]:
            lines = _lines(ax)
            assert sorted(lines) == sorted(EXPERIMENTS)
            assert len({_look(ln) for ln in lines.values()}) == 7
            for lab, ln in lines.items():
                assert _look(ln) == tuple(styles[lab].values())
                assert 4 <= len(ln.get_markevery()) <= style.MARKS_PER_LINE < len(ln.get_xdata())
            marks = [x for ln in lines.values() for x in _marked_x(ln)]
            assert max(marks.count(x) for x in marks) <= 2
        plt.close(fig)


def test_training_values_and_percent_axes_with_seven_runs(seven):
    fig = fig7_train_accuracy(seven)
    for ax, col in zip(
        fig.axes[:4], ["acc/stage1", "groups/frac_solve_none", "groups/frac_solve_partial", "groups/frac_solve_all"]
    ):
        assert "(%)" in ax.get_ylabel()
        for lab, ln in _lines(ax).items():
            xs, ys, _lo, _hi = training_series(seven.training, lab, col)
            np.testing.assert_array_equal(ln.get_xdata(), xs)
            np.testing.assert_allclose(ln.get_ydata(), 100 * ys)
            y = np.asarray(ln.get_ydata())
            if col != "acc/stage1":  # (the hand-made accuracy, 0.1 * step, is no fraction)
                assert y.min() >= 0 and y.max() <= 100 and y.max() > 1  # %, not a fraction
    plt.close(fig)


def test_step_axes_have_integer_ticks(tmp_path):
    """A short run (2 steps) gets ticks 1, 2 on the step axis, never 1.2, 1.4 (as the default
    locator draws), and the stage-2 count panel integer ticks too."""
    write_handmade_run(tmp_path, "dars_et", steps=2, evals={}, extra_per_step=1)
    a = analyse([tmp_path], Options(n_boot=20))
    for fn in (fig1_entropy, fig2_rollouts, fig7_train_accuracy):
        fig = fn(a)
        fig.canvas.draw()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), (fn.__name__, ticks)
        if fn is fig2_rollouts:
            lo, hi = fig.axes[3].get_ylim()
            assert all(float(t).is_integer() for t in fig.axes[3].get_yticks() if lo <= t <= hi)
        plt.close(fig)


def test_fig4_bands_stay_apart_with_seven_runs(seven):
    """No filled bands (seven would merge into one mass): each band is whiskers at its own
    label's markers, which differ between labels; values in %, equal to the computed curve."""
    fig = fig4_passk_curves(seven)
    overall = next(ax for ax in fig.axes if ax.get_title() == "Overall (micro)")
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    lines = _lines(overall)
    assert len({_look(ln) for ln in lines.values()}) == 7
    whisker_x = sorted(float(s[0, 0]) for c in overall.collections for s in c.get_segments())
    assert whisker_x == sorted(x for ln in lines.values() for x in _marked_x(ln))
    assert len({tuple(_marked_x(ln)) for ln in lines.values()}) > 1  # staggered per label
    for lab, ln in lines.items():
        c = passk_curve(seven, lab, ALL)
        np.testing.assert_array_equal(ln.get_xdata(), c["k"])
        np.testing.assert_allclose(ln.get_ydata(), 100 * c["value"])
        assert min(ln.get_ydata()) >= 0 and max(ln.get_ydata()) <= 100
    plt.close(fig)


def _tick_labels_apart(fig, axis) -> list[str]:
    """The visible tick labels of ``axis`` (after a draw); asserts no two of them overlap."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labs = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
    lo, hi = axis.get_view_interval()
    labs = [t for t in labs if lo <= (t.get_position()[0] if axis.axis_name == "x" else t.get_position()[1]) <= hi]
    boxes = sorted((t.get_window_extent(r) for t in labs), key=lambda b: (b.x0, b.y0))
    for b1, b2 in itertools.pairwise(boxes):
        assert not b1.overlaps(b2), [t.get_text() for t in labs]
    return [t.get_text() for t in labs]


def test_fig3_percent_ticks_readable_over_a_narrow_range(analysis):
    """Pass@1 and Pass@K within 0.01 points (17.60-17.61 %; fractions once gave ticks that
    read "0.17600.17650.1770"): a few plain, non-overlapping tick labels in %, and no offset
    text (the default formatter draws "+1.76e1" and ticks 0.002, 0.004, ...)."""
    t = analysis.trajectory.copy()
    m = t["metric"] == "pass"
    t.loc[m, "value"] = 0.176 + 0.0001 * t.loc[m, "value"]
    a = dataclasses.replace(analysis, trajectory=t)
    fig = fig3_pass1_passk(a)
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        texts = _tick_labels_apart(fig, axis)
        assert 3 <= len(texts) <= 8, texts
        assert all(17 < float(x) < 18 for x in texts)
        assert axis.get_offset_text().get_text() == ""
    x = np.asarray(_lines(ax)["dars_et"].get_xdata())
    assert (x >= 17.6).all() and (x <= 17.61).all()
    plt.close(fig)


def test_untrained_run_draws_no_training_curve(tmp_path):
    """A run killed after its step-0 validation (metrics.jsonl empty): every figure still draws,
    the run has no line in the training figures and at most its one step-0 point in figure 3."""
    write_handmade_run(tmp_path, "baseline", evals={0: HAND_EVAL_A, 4: HAND_EVAL_B}, steps=4)
    run = write_handmade_run(tmp_path, "dars_hw_breadth", evals={0: HAND_EVAL_A}, steps=0)
    assert (run / "metrics.jsonl").read_text() == ""
    a = analyse([tmp_path], Options(n_boot=20))
    written, notes = write_figures(a, tmp_path / "out", formats=("png",), dpi=40)
    assert sorted(written) == [1, 2, 3, 4, 5, 6, 7] and not notes
    for fn in (fig1_entropy, fig2_rollouts, fig7_train_accuracy):
        fig = fn(a)
        assert all(sorted(_lines(ax)) == ["baseline"] for ax in fig.axes if ax.get_visible())
        plt.close(fig)
    fig = fig3_pass1_passk(a)
    ln = _lines(fig.axes[0]).get("dars_hw_breadth")
    assert ln is None or len(ln.get_xdata()) == 1
    plt.close(fig)
    # only untrained runs: no training figures (a note says why), no crash
    only = tmp_path / "only"
    write_handmade_run(only, "dars_et", evals={0: HAND_EVAL_A}, steps=0)
    written, notes = write_figures(analyse([only], Options(n_boot=20)), tmp_path / "out2", formats=("png",), dpi=40)
    assert {5, 6} <= set(written) and not {1, 2, 7} & set(written)
    assert sum("no training metrics" in n for n in notes) == 3
