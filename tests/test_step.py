"""The DARS step both backends call (dars/step.py), on a deterministic engine given as input:
prompt j's rollouts are correct for the first ``correct[j]`` draws of each stage."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from dars import schedules, step

N = 8
CORRECT1 = [0, 1, 3, 4, 8]  # stage-1 correct of 8, per prompt (the ET table's rows)


def engine(correct2):
    calls = []

    def sample(stage, counts):
        calls.append((stage, counts.tolist()))
        good = CORRECT1 if stage == 1 else correct2
        return [(j, float(k < good[j])) for j, c in enumerate(counts) for k in range(c)]

    def score(rows):
        return np.array([j for j, _ in rows]), np.array([r for _, r in rows])

    return sample, score, calls


def algo_cfg(**kw):
    return OmegaConf.create(
        {"schedule": "et", "n_max": 32, "use_std": False, "filter_groups": True, "upper_threshold": 1.0, **kw}
    )


def test_two_stages_merge_into_one_group_per_prompt_and_filter():
    sample, score, calls = engine(correct2=[2, 0, 0, 0, 0])
    two = step.two_stage_rollout(sample, score, 5, N, algo_cfg())
    extra = schedules.extra_rollouts_batch(np.array(CORRECT1) / N, N, 32, "et")
    assert calls == [(1, [8] * 5), (2, extra.tolist())] and extra.tolist() == [24, 11, 1, 0, 0]
    assert two.acc1.tolist() == [c / N for c in CORRECT1]
    assert np.bincount(two.group).tolist() == [32, 19, 9, 8, 8]  # stage 1 rows first, then stage 2
    assert two.group[:40].tolist() == sorted(list(range(5)) * 8)
    # prompt 0: all wrong in stage 1, 2 right of its 24 extras -> rescued; prompt 4 (8/8) filtered
    assert two.stats.acc[0] == pytest.approx(2 / 32) and two.stats.stage2_saved == 1.0
    assert two.stats.keep.tolist() == [True, True, True, True, False]

    lengths = np.full(len(two.group), 5)
    lengths[:3] = 16  # three responses used the whole budget
    rec = step.StepRecord(step=1, **step.rollout_fields(two, lengths, max_response_length=16)).to_json()
    assert rec["rollouts/stage1"] == 40 and rec["rollouts/stage2"] == 36 and rec["rollouts/per_prompt"] == 76 / 5
    assert rec["groups/kept"] == 4 and rec["groups/solve_all"] == 1 and rec["groups/solve_none"] == 0
    assert rec["response_length/clip_ratio"] == pytest.approx(3 / 76)
    assert rec["tokens/generated"] == int(lengths.sum()) and rec["acc/stage1"] == pytest.approx(np.mean(CORRECT1) / N)


def test_uniform_schedule_has_no_second_stage():
    sample, score, calls = engine(correct2=[0] * 5)
    two = step.two_stage_rollout(sample, score, 5, N, algo_cfg(schedule="uniform", n_max=N, filter_groups=False))
    assert calls == [(1, [8] * 5)] and two.stage2 is None and two.stats.keep.all()


def test_the_record_writes_every_run_format_key_once_and_kl_only_when_there_is_one():
    rec = step.StepRecord(step=3).to_json()
    keys = list(step.RUN_FORMAT_KEYS.values())
    assert len(set(keys)) == len(keys) and "loss/kl" not in rec and set(rec) == set(keys) - {"loss/kl"}
    assert "loss/kl" in step.StepRecord(loss_kl=0.1).to_json()
    part = {"rollouts_stage2": 4, "samples_seen": 9}
    assert step.from_keys(step.to_keys(part)) == part and step.to_keys(part)["rollouts/stage2"] == 4
