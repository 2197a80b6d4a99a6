"""Advantages, group filter, loss aggregation and the clipped PPO term on hand-computed cases."""

import numpy as np
import pytest
import torch

from dars import algorithm as algo


def test_advantage_no_std_unequal_groups():
    # group 0: 3 rollouts (1,0,0); group 1: 5 rollouts (1,1,0,0,1); group 2: a single rollout
    group = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2])
    r = np.array([1, 0, 0, 1, 1, 0, 0, 1, 1], dtype=float)
    adv = algo.group_advantages(group, r)
    np.testing.assert_allclose(adv, [2 / 3, -1 / 3, -1 / 3, 0.4, 0.4, -0.6, -0.6, 0.4, 0.0])
    # each group's advantages sum to zero
    for g in range(3):
        assert adv[group == g].sum() == pytest.approx(0.0, abs=1e-12)


def test_advantage_with_unbiased_std():
    group = np.array([0, 0, 0, 0])
    r = np.array([1.0, 0.0, 0.0, 0.0])
    std = np.std(r, ddof=1)  # torch.std default (n-1), as upstream (docs/algorithm.md §1)
    np.testing.assert_allclose(algo.group_advantages(group, r, use_std=True), (r - 0.25) / (std + 1e-6))


def test_advantage_mass_matches_schedule_theory():
    # sum |A| for n rollouts at accuracy p is n * 2p(1-p) (docs/algorithm.md §3.2)
    n, c = 8, 2
    r = np.array([1.0] * c + [0.0] * (n - c))
    adv = algo.group_advantages(np.zeros(n, dtype=int), r)
    p = c / n
    assert np.abs(adv).sum() == pytest.approx(n * 2 * p * (1 - p))


def test_filter_groups_and_saved_fraction():
    # 4 prompts; stage-1 acc: 0, 0, 0.5, 1. After stage 2, prompt 0 got one success, prompt 1 none.
    group = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3])
    r = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    stage1_acc = np.array([0.0, 0.0, 0.5, 1.0])
    s = algo.filter_groups(group, r, 4, stage1_acc, enabled=True)
    assert s.keep.tolist() == [True, False, True, False]
    assert (s.solve_none, s.solve_all, s.solve_partial) == (1, 1, 2)
    assert s.stage2_saved == pytest.approx(0.5)
    assert algo.filter_groups(group, r, 4, stage1_acc, enabled=False).keep.all()
    s = algo.filter_groups(group, r, 4, stage1_acc, enabled=True, upper_threshold=0.5)
    assert s.keep.tolist() == [True, False, False, False]


def test_token_weights_per_mode():
    lengths = np.array([2, 4])
    # seq-mean-token-sum-norm: sum_t / L_max, mean over sequences -> 1 / (N * L_max)
    np.testing.assert_allclose(algo.token_weights(lengths, "seq-mean-token-sum-norm", 10), [1 / 20, 1 / 20])
    np.testing.assert_allclose(algo.token_weights(lengths, "token-mean", 10), [1 / 6, 1 / 6])
    np.testing.assert_allclose(algo.token_weights(lengths, "seq-mean-token-mean", 10), [1 / 4, 1 / 8])
    with pytest.raises(ValueError, match="loss_agg_mode"):
        algo.token_weights(lengths, "nope", 10)


def _loss(logp, old, adv, mask, mode="seq-mean-token-sum-norm", L=4, **kw):
    w = algo.token_weights(mask.sum(-1).numpy(), mode, L)
    return algo.ppo_loss(logp, old, adv, mask, torch.tensor(w, dtype=logp.dtype), 0.2, 0.2, **kw)


def test_old_loss_agg_name_dars_is_the_same_loss_warned_once(caplog, monkeypatch):
    """``loss_agg_mode: dars`` (configs in the wild) is seq-mean-token-sum-norm under its old name."""
    monkeypatch.setattr(algo, "_ALIASES_WARNED", set())
    torch.manual_seed(0)
    logp, old = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1.0] * 5, [1.0] * 2 + [0.0] * 3, [1.0] * 4 + [0.0]])
    adv = torch.tensor([0.5, -1.0, 0.25])
    with caplog.at_level("WARNING", logger="dars"):
        old_name = _loss(logp, old, adv, mask, mode="dars", L=8).loss
        _loss(logp, old, adv, mask, mode="dars", L=8)
    new_name = _loss(logp, old, adv, mask, mode="seq-mean-token-sum-norm", L=8).loss
    assert old_name.item() == new_name.item()
    warned = [r.getMessage() for r in caplog.records if "loss_agg_mode=dars" in r.getMessage()]
    assert len(warned) == 1 and "seq-mean-token-sum-norm" in warned[0]


def test_ppo_clip_hand_computed():
    old = torch.zeros(1, 3)
    # ratios e^0.5=1.65 (clipped to 1.2 for A>0), e^-0.5=0.61 (A>0: unclipped min), 1.0
    logp = torch.tensor([[0.5, -0.5, 0.0]])
    mask = torch.ones(1, 3)
    out = _loss(logp, old, torch.tensor([1.0]), mask, L=3)
    # A>0: loss = max(-rho, -clip(rho)) = -min(rho, clip) -> [-1.2, -0.6065, -1]
    want = (-1.2 - np.exp(-0.5) - 1.0) / 3
    assert out.pg_sum.item() == pytest.approx(want, rel=1e-6)
    assert out.clipped_tokens.item() == 1.0
    out = _loss(logp, old, torch.tensor([-1.0]), mask, L=3)
    # A<0: loss = max(rho, clip(rho)) -> [1.6487, 0.8 (clipped up), 1]
    assert out.pg_sum.item() == pytest.approx((np.exp(0.5) + 0.8 + 1.0) / 3, rel=1e-6)
    assert out.clipped_tokens.item() == 1.0


def test_padding_tokens_do_not_count():
    old = torch.zeros(2, 3)
    logp = torch.tensor([[0.1, 0.2, 9.0], [0.0, 0.0, 0.0]])  # 9.0 is padding
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    a = _loss(logp, old, torch.tensor([1.0, -1.0]), mask, mode="token-mean").pg_sum
    b = _loss(
        logp.clone().index_put_((torch.tensor([0]), torch.tensor([2])), torch.tensor(-5.0)),
        old,
        torch.tensor([1.0, -1.0]),
        mask,
        mode="token-mean",
    ).pg_sum
    assert a.item() == pytest.approx(b.item())


@pytest.mark.parametrize("mode", algo.LOSS_AGG_MODES)
def test_micro_batch_accumulation_equals_full_batch(mode):
    """Weights computed for the whole optimiser-step batch make micro-batch sums exact."""
    torch.manual_seed(0)
    B, T, L = 6, 5, 8
    lengths = torch.tensor([5, 1, 3, 5, 2, 4])
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    theta = torch.randn(B, T, requires_grad=True)
    old = torch.randn(B, T) * 0.1
    adv = torch.randn(B)
    ent = torch.rand(B, T)
    w = torch.tensor(algo.token_weights(lengths.numpy(), mode, L), dtype=torch.float32)
    per_tok = 1.0 / lengths.sum().item()
    full = algo.ppo_loss(
        theta, old, adv, mask, w, 0.2, 0.28, entropy=ent, entropy_coeff=0.01, entropy_weight=per_tok
    ).loss
    (g_full,) = torch.autograd.grad(full, theta)
    total = 0
    for idx in ([0, 1], [2], [3, 4, 5]):
        total = (
            total
            + algo.ppo_loss(
                theta[idx],
                old[idx],
                adv[idx],
                mask[idx],
                w[idx],
                0.2,
                0.28,
                entropy=ent[idx],
                entropy_coeff=0.01,
                entropy_weight=per_tok,
            ).loss
        )
    (g_micro,) = torch.autograd.grad(total, theta)
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(g_micro, g_full)


def test_entropy_bonus_lowers_loss_and_kl_is_nonnegative():
    logp = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    base = _loss(logp, logp, torch.tensor([0.5]), mask).loss
    bonus = _loss(
        logp, logp, torch.tensor([0.5]), mask, entropy=torch.ones(1, 2), entropy_coeff=0.1, entropy_weight=0.5
    ).loss
    assert bonus.item() == pytest.approx(base.item() - 0.1)
    out = _loss(
        logp, logp, torch.tensor([0.5]), mask, ref_logprob=torch.tensor([[-1.5, -1.0]]), kl_coef=1.0, entropy_weight=0.5
    )
    assert out.kl_sum.item() > 0
    assert out.loss.item() > base.item()
