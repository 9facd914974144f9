"""Adaptive compute per state: exact call counts against hand counts, clear errors for malformed rules, the CLI's
rows with their adaptive column, and old sweep files that still load."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sorl_core import budgets
from sorl_core.studies import adaptive
from sorl_core.agent import SORLAgent
from sorl_core.config import SORLConfig

REPO = Path(__file__).resolve().parents[1]
OBS = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def agent():
    torch.manual_seed(0)
    a = SORLAgent(SORLConfig(size="tiny", obs_dim=3, action_dim=2, m_btt=2, q_agg="mean"), seed=0)
    return a


def scaling(agent, m, n=1, seed=5):
    return agent.sample(OBS, m_inf=m, n=n, generator=seed)


def act(agent, rule: str, obs, **kw):
    """One action per state by an adaptive rule, through the one sampler."""
    return agent.sample(obs, budget=budgets.parse_rule(rule), **kw)


# ----------------------------------------------------------------------------- sequential
def test_seq_with_a_huge_eps_stops_after_comparing_m1_with_m2(agent):
    res = act(agent, "seq:eps=1e9", OBS, generator=5)
    assert res.actor_calls.tolist() == [1 + 2] * len(OBS) and res.critic_calls.tolist() == [0] * len(OBS)
    assert res.m_used.tolist() == [2] * len(OBS)
    assert torch.equal(res.actions, scaling(agent, 2).actions)  # same noise: the M = 2 action of agent.sample


def test_seq_with_eps_zero_goes_to_m_disc(agent):
    # Actions clipped to the same corner at M and 2M agree exactly and stop even at eps = 0: take inner states.
    inner = (torch.stack([scaling(agent, m).actions for m in (1, 2, 4, 8)]).abs() < 1).all(dim=0).all(dim=1)
    assert inner.sum() >= 4
    res = act(agent, "seq:eps=0", OBS, generator=5)
    assert res.actor_calls[inner.numpy()].tolist() == [1 + 2 + 4 + 8] * int(inner.sum())
    # (a subset of states runs as a smaller batch: equal up to float rounding)
    torch.testing.assert_close(res.actions[inner], scaling(agent, 8).actions[inner], rtol=0, atol=1e-6)
    capped = act(agent, "seq:eps=0,mmax=4", OBS, generator=5)
    assert capped.actor_calls[inner.numpy()].tolist() == [1 + 2 + 4] * int(inner.sum())
    torch.testing.assert_close(capped.actions[inner], scaling(agent, 4).actions[inner], rtol=0, atol=1e-6)


def test_seq_stops_each_state_where_a_hand_count_says(agent):
    acts = {m: scaling(agent, m).actions for m in (1, 2, 4, 8)}
    gaps = {m: (acts[m] - acts[m // 2]).abs().amax(dim=1) for m in (2, 4, 8)}
    eps = float(gaps[2].median())
    expected_m, expected_calls = [], []
    for s in range(len(OBS)):
        m, calls = 1, 1
        while m < 8:
            m *= 2
            calls += m
            if gaps[m][s] <= eps:
                break
        expected_m.append(m)
        expected_calls.append(calls)
    res = act(agent, f"seq:eps={eps!r}", OBS, generator=5)
    assert res.m_used.tolist() == expected_m and res.actor_calls.tolist() == expected_calls
    assert len(set(expected_m)) >= 2  # the rule did adapt: states stopped at different M
    for s, m in enumerate(expected_m):
        torch.testing.assert_close(res.actions[s], acts[m][s], rtol=0, atol=1e-6)



# ----------------------------------------------------------------------------- jump
def test_jump_with_a_huge_eps_keeps_the_m2_action_for_three_calls(agent):
    res = act(agent, "jump:eps=1e9", OBS, generator=5)
    assert res.actor_calls.tolist() == [1 + 2] * len(OBS) and res.m_used.tolist() == [2] * len(OBS)
    torch.testing.assert_close(res.actions, scaling(agent, 2).actions, rtol=0, atol=1e-6)


def test_jump_stops_or_jumps_each_state_where_a_hand_count_says(agent):
    gap = (scaling(agent, 2).actions - scaling(agent, 1).actions).abs().amax(dim=1)
    eps = float(gap.median())
    res = act(agent, f"jump:eps={eps!r}", OBS, generator=5)
    easy = (gap <= eps).numpy()
    assert 0 < easy.sum() < len(OBS)  # the rule did adapt
    assert res.actor_calls.tolist() == [3 if e else 3 + 8 for e in easy]  # M = 4 is never paid for
    assert res.m_used.tolist() == [2 if e else 8 for e in easy]
    two, eight = scaling(agent, 2).actions, scaling(agent, 8).actions
    for s, e in enumerate(easy):
        torch.testing.assert_close(res.actions[s], (two if e else eight)[s], rtol=0, atol=1e-6)
    capped = act(agent, "jump:eps=0,mmax=4", OBS, generator=5)
    assert set(capped.actor_calls.tolist()) <= {3, 3 + 4} and budgets.parse_rule("jump:eps=0,mmax=4").caps(agent) == (4, 1)

# ----------------------------------------------------------------------------- parallel
def test_par_with_a_huge_delta_draws_n_max(agent):
    res = act(agent, "par:delta=1e9,nmax=16", OBS, generator=5)
    assert res.n_used.tolist() == [16] * len(OBS)
    assert res.actor_calls.tolist() == [8 * 16] * len(OBS) and res.critic_calls.tolist() == [16] * len(OBS)
    assert (res.network_calls == 8 * 16 + 16).all()
    one_round = act(agent, "par:delta=inf,nmax=4", OBS, generator=5)  # one round = agent.sample's draw
    assert torch.equal(one_round.actions, scaling(agent, 8, n=4).actions)
    assert act(agent, "par:delta=1e9", OBS[:2], generator=5).n_used.tolist() == [64, 64]  # default N_max


def test_par_with_delta_zero_stops_after_one_round(agent):
    res = act(agent, "par:delta=0,m=2", OBS, generator=5)
    assert res.n_used.tolist() == [4] * len(OBS)
    assert res.actor_calls.tolist() == [2 * 4] * len(OBS) and res.critic_calls.tolist() == [4] * len(OBS)
    consensus = act(agent, "par:delta=0", OBS, generator=5, verifier="consensus")
    assert consensus.critic_calls.tolist() == [0] * len(OBS)  # no critic: no critic calls
    assert consensus.actor_calls.tolist() == [8 * 4] * len(OBS)


def test_par_stops_each_state_where_a_hand_count_says(agent):
    first = scaling(agent, 8, n=4)
    top2 = first.q.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]) / first.q.std(dim=1)
    delta = float(margin.median())
    res = act(agent, f"par:delta={delta!r},nmax=8", OBS, generator=5)
    expected = [4 if float(m) > delta else 8 for m in margin]
    assert res.n_used.tolist() == expected and len(set(expected)) == 2
    assert res.actor_calls.tolist() == [8 * n for n in expected] and res.critic_calls.tolist() == expected
    stopped = [s for s, n in enumerate(expected) if n == 4]
    assert torch.equal(res.actions[stopped], first.actions[stopped])
    # the others keep the best of all 8 by the critic
    for s in (s for s, n in enumerate(expected) if n == 8):
        q = agent.q_value(OBS[s], res.actions[s][None], k=8)
        assert float(q) >= float(first.q[s].max()) - 1e-6


# ----------------------------------------------------------------------------- parsing
def test_rules_parse():
    assert budgets.parse_rule("seq:eps=0.05") == budgets.Rule("seq", 0.05, None, 64, "seq:eps=0.05")
    rule = budgets.parse_rule(" par:delta=1.0,nmax=32,m=4 ")
    assert (rule.kind, rule.knob, rule.m, rule.nmax, rule.label) == ("par", 1.0, 4, 32, "par:delta=1.0,nmax=32,m=4")


@pytest.mark.parametrize("text, why", [
    ("seq", "does not start with seq:, jump: or par:"),
    ("fast:eps=1", "does not start with seq:, jump: or par:"),
    ("seq:eps", "malformed or repeated setting 'eps'"),
    ("seq:eps=1,eps=2", "malformed or repeated setting 'eps=2'"),
    ("seq:delta=1", "unknown setting"),
    ("par:eps=1", "unknown setting"),
    ("par:nmax=8", "lacks delta="),
    ("par:delta=1,nmax=8,", "malformed"),
    ("seq:eps=abc", "eps='abc', not a number"),
    ("par:delta=-1", "not a number >= 0"),
    ("par:delta=nan", "not a number >= 0"),
    ("par:delta=1,nmax=6", "nmax='6', not a multiple of 4"),
    ("par:delta=1,m=3", "m='3', not a power of two"),
    ("seq:eps=0.1,mmax=x", "mmax='x', not a power of two"),
])
def test_malformed_rules_name_the_expected_form(text, why):
    with pytest.raises(budgets.RuleError) as err:
        budgets.parse_rule(text)
    msg = str(err.value)
    assert why in msg and "expected seq:eps=" in msg and "e.g. seq:eps=0.05 or par:delta=1.0." in msg
    assert msg.replace("e.g. ", "").count(". ") == 0  # one sentence


def test_a_rule_beyond_m_disc_is_refused_without_extrapolate(agent):
    with pytest.raises(ValueError, match="beyond the trained m_disc=8"):
        budgets.check_rules(agent, ["seq:eps=0.1,mmax=16"])


def test_fixed_frontier_and_calls():
    assert adaptive.fixed_calls(8, 1) == 8 and adaptive.fixed_calls(8, 4) == 36 and adaptive.fixed_calls(1, 16) == 32
    points = [(1, 0.1), (2, 0.4), (8, 0.9), (4, 0.7)]
    assert adaptive.fixed_frontier(points, 5.5) == (4, 0.7)
    assert adaptive.fixed_frontier(points, 8) == (8, 0.9) and adaptive.fixed_frontier(points, 0.5) is None
    assert adaptive.mixture_frontier(points, 6) == pytest.approx(0.8)  # halfway between (4, 0.7) and (8, 0.9)
    assert adaptive.mixture_frontier(points, 3) == pytest.approx(0.55) and adaptive.mixture_frontier(points, 99) == 0.9
    assert adaptive.mixture_frontier(points, 0.5) is None


def test_toy_table_reports_mean_calls(agent):
    toy_agent = SORLAgent(SORLConfig(size="tiny", obs_dim=1, action_dim=2, q_agg="mean"), seed=0)
    table = adaptive.toy_table(toy_agent, "ring", ["seq:eps=1e9", "par:delta=0,m=1"], contexts=32, sampling_seeds=(0, 1))
    assert table["seq:eps=1e9"]["network_calls"] == 3 and table["par:delta=0,m=1"]["network_calls"] == 8
    assert math.isfinite(table["seq:eps=1e9"]["mean_reward"])


# ----------------------------------------------------------------------------- run_episodes, CLI, app
class FakeEnvs:
    """Two episodes: episode 0 ends after one step, episode 1 after three (enough to average calls)."""

    count = 2

    def reset(self, seeds):
        self.t = np.zeros(2, dtype=int)
        return OBS[:2].copy()

    def step(self, index, actions):
        self.t[index] += 1
        done = self.t[index] >= np.array([1, 3])[index]
        return OBS[index].copy(), np.zeros(len(index)), done, np.zeros(len(index), bool), done


def test_run_episodes_with_a_budget_holds_the_mean_calls_over_actions_taken(agent):
    from sorl_core.ogbench.rollouts import run_episodes

    spent = iter([np.array([3, 15]), np.array([7]), np.array([7])])

    class Res:
        def __init__(self, s):
            self.actions = torch.zeros(s, 2)
            self.actor_calls = next(spent)
            self.critic_calls = np.ones(s)

    class Spender:  # a budget whose states spend the calls listed above
        def sample(self, agent, obs, **kw):
            return Res(len(obs))

    result = run_episodes(agent, FakeEnvs(), 8, 1, [0, 1], budget=Spender())
    assert result.actions_taken == 4
    assert result.actor_calls == (3 + 15 + 7 + 7) / 4 and result.critic_calls == 1.0
    assert result.summary()["network_calls"] == 9.0


@pytest.mark.slow
def test_cli_writes_adaptive_rows_beside_the_grid(tmp_path):
    from sorl_core.cli import main

    policy = REPO / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
    rc = main(["evaluate", "--checkpoint", str(policy), "--m-inf", "8", "--n", "1", "--adaptive", "seq:eps=0.05",
               "par:delta=1.0,nmax=8", "--episodes", "2", "--workers", "1", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["adaptive"] for r in rows] == ["", "seq:eps=0.05", "par:delta=1.0,nmax=8"]
    assert (rows[1]["m_inf"], rows[1]["n"], rows[2]["m_inf"], rows[2]["n"]) == ("8", "1", "8", "8")
    seq_calls, par_calls = float(rows[1]["network_calls"]), float(rows[2]["network_calls"])
    assert 3 <= seq_calls <= 15 and float(rows[1]["critic_calls"]) == 0
    assert 36 <= par_calls <= 72 and float(rows[2]["actor_calls"]) == pytest.approx(8 * float(rows[2]["critic_calls"]), abs=1e-3)
    assert "seq:eps=0.05" in (tmp_path / "sweep.html").read_text()
    from app import scaling_page as S

    df = S.parse_sweep((tmp_path / "sweep.csv").read_bytes())
    assert list(df.adaptive) == ["", "seq:eps=0.05", "par:delta=1.0,nmax=8"]
    assert len(S.fixed(df)) == 1 and S.budget_options(df) == [8]
    fig = S.compute_figure(S.combine([("sweep.csv", df)]))
    assert any("par:delta=1.0,nmax=8" in (t.name or "") for t in fig.data)
    # a malformed rule: refused before any episode, in one sentence
    assert main(["evaluate", "--checkpoint", str(policy), "--adaptive", "seq:eps", "--episodes", "1",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2


def test_old_sweep_files_still_load_and_adaptive_calls_may_be_fractions():
    import pandas as pd

    from app import scaling_page as S

    current = pd.read_csv(REPO / "assets" / "ogbench" / "cube-single-task2" / "sweep.csv", keep_default_na=False)
    old = current.drop(columns=["adaptive", "verifier"]).to_csv(index=False).encode()  # before both columns
    df = S.parse_sweep(old, "sweep.csv")
    assert len(df) == 12 and set(df.adaptive) == {""} and set(df.verifier) == {"q"}
    assert df.network_calls.dtype.kind == "i"
    with_rule = current.copy()
    extra = with_rule.iloc[[9]].copy()
    extra[["adaptive", "actor_calls", "critic_calls", "network_calls"]] = ["seq:eps=0.05", 6.25, 0.0, 6.25]
    df = S.parse_sweep(pd.concat([with_rule, extra]).to_csv(index=False).encode(), "sweep.csv")
    assert len(df) == 13 and df.network_calls.iloc[-1] == 6.25
    assert len(S.grid(df)[0]) == 4 and S.compute_optimal(df, 7)["network_calls"] == 4
    # a fraction in a fixed grid row is still an error
    bad = current.astype({"network_calls": float})
    bad.loc[0, "network_calls"] = 1.5
    with pytest.raises(S.SweepError, match="column network_calls must hold whole numbers"):
        S.parse_sweep(bad.to_csv(index=False).encode(), "bad.csv")


def test_rules_are_compared_with_the_fixed_cell_that_costs_no_more_over_pooled_seeds():
    from sorl_core.studies.adaptive import pooled_comparison

    def row(m, n, calls, successes, length, rule=""):
        return {"m_inf": m, "n": n, "network_calls": calls, "successes": successes, "episodes": 50,
                "mean_length": length, "adaptive": rule}

    seed0 = [row(4, 1, 4, 30, 100), row(8, 1, 8, 40, 100), row(16, 1, 16, 44, 100), row(8, 1, 9.0, 45, 80, "jump")]
    seed1 = [row(4, 1, 4, 34, 100), row(8, 1, 8, 42, 100), row(16, 1, 16, 40, 100), row(8, 1, 12.0, 47, 120, "jump")]
    (jump,) = pooled_comparison(seed0 + seed1)
    assert jump["rule"] == "jump" and (jump["successes"], jump["episodes"]) == (92, 100)
    assert jump["network_calls"] == pytest.approx((80 * 9.0 + 120 * 12.0) / 200)  # weighted by actions taken
    best = jump["fixed"]  # 10.8 calls: M_inf 8 (82 of 100) is the best fixed cell within them; 16 costs more
    assert (best["m_inf"], best["successes"], best["network_calls"]) == (8, 82, 8)
    assert jump["apart"] is False  # 92% [85%, 96%] against 82% [73%, 88%]: the intervals overlap
