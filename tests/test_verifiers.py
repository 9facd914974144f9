"""Verifiers: each one's pick equals a direct computation; bad choices get clear errors; sweeps record them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import load_agent, save_checkpoint
from sorl_core.config import SORLConfig
from sorl_core.verifiers import VERIFIERS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def agent():
    torch.manual_seed(0)
    a = SORLAgent(SORLConfig(size="tiny", obs_dim=3, action_dim=2, m_btt=2, q_agg="mean"), seed=0)
    with torch.no_grad():  # targets that differ from the online critic, so target-q is its own verifier
        for p in a.target_critic.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return a


OBS = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)


def direct_scores(agent, verifier, res, beta):
    s, n, a_dim = res.candidates.shape
    obs = torch.as_tensor(OBS).repeat_interleave(n, dim=0)
    flat = res.candidates.reshape(s * n, a_dim)
    if verifier == "consensus":
        c = res.candidates
        return -torch.stack([torch.stack([(c[i] - c[i, j]).norm(dim=1).sum() for j in range(n)]) for i in range(s)])
    critic = agent.target_critic if verifier == "target-q" else agent.critic
    k = min(res.m_inf, agent.config.m_btt) if verifier == "q-kbtt" else res.m_inf
    q1, q2 = critic(obs, flat, k)
    out = {"q": (q1 + q2) / 2, "target-q": (q1 + q2) / 2, "q-kbtt": (q1 + q2) / 2, "q-min": torch.minimum(q1, q2),
           "q-lcb": (q1 + q2) / 2 - beta * (q1 - q2).abs()}[verifier]
    return out.reshape(s, n)


@pytest.mark.parametrize("verifier", list(VERIFIERS))
def test_each_verifier_picks_the_argmax_of_its_direct_computation(agent, verifier):
    res = agent.sample(OBS, m_inf=4, n=6, generator=3, verifier=verifier, beta=0.7)
    expected = direct_scores(agent, verifier, res, 0.7)
    torch.testing.assert_close(res.q, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(res.chosen, expected.argmax(dim=1))
    assert torch.equal(res.actions, res.candidates[torch.arange(len(OBS)), res.chosen])
    # the candidates do not depend on the verifier: same noise, same Euler paths
    assert torch.equal(res.candidates, agent.sample(OBS, m_inf=4, n=6, generator=3).candidates)
    assert res.critic_calls == (0 if verifier == "consensus" else 6) and res.actor_calls == 24


def test_verifiers_disagree_somewhere(agent):
    picks = {v: agent.sample(OBS, m_inf=4, n=16, generator=1, verifier=v).chosen for v in VERIFIERS}
    assert len({tuple(p.tolist()) for p in picks.values()}) >= 3


def test_bad_verifier_choices_are_clear_errors(agent):
    with pytest.raises(ValueError, match="unknown verifier 'best'; choose one of q, q-min"):
        agent.sample(OBS, n=4, verifier="best")
    with pytest.raises(ValueError, match="beta .* must be 0 or more, got -1"):
        agent.sample(OBS, n=4, verifier="q-lcb", beta=-1)


def test_target_q_on_an_inference_only_file_says_the_target_is_absent(agent, tmp_path):
    save_checkpoint(tmp_path / "export.pt", agent, {"world": "ring"}, inference_only=True)
    exported, _ = load_agent(tmp_path / "export.pt", device="cpu")
    with pytest.raises(ValueError, match="no target critic"):
        exported.sample(OBS, n=4, verifier="target-q")
    full = tmp_path / "full.pt"
    save_checkpoint(full, agent, {"world": "ring"})
    reloaded, _ = load_agent(full, device="cpu")
    assert torch.equal(reloaded.sample(OBS, n=4, generator=0, verifier="target-q").q,
                       agent.sample(OBS, n=4, generator=0, verifier="target-q").q)


def test_old_sweep_files_without_a_verifier_column_still_load():
    import pandas as pd

    from app import scaling_page as S

    current = pd.read_csv(REPO / "assets" / "ogbench" / "cube-single-task2" / "sweep.csv")
    old = current.drop(columns="verifier").to_csv(index=False).encode()  # as written before the column existed
    df = S.parse_sweep(old, "sweep.csv")
    assert set(df.verifier) == {"q"} and len(df) == 12
    bad = old.decode().splitlines()
    bad[0] += ",verifier"
    bad[1] += ",oracle"
    bad[2:] = [line + ",q" for line in bad[2:]]
    with pytest.raises(S.SweepError, match="column verifier must name one of"):
        S.parse_sweep("\n".join(bad).encode(), "x.csv")


@pytest.mark.slow
def test_evaluate_writes_a_verifier_column_and_shares_the_n1_cell(tmp_path):
    from sorl_core.cli import main

    policy = REPO / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
    rc = main(["evaluate", "--checkpoint", str(policy), "--m-inf", "1", "--n", "1", "2", "--verifier", "q",
               "consensus", "--episodes", "2", "--workers", "1", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    import csv

    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [(r["n"], r["verifier"]) for r in rows] == [("1", "q"), ("1", "consensus"), ("2", "q"), ("2", "consensus")]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("verifier", "ms_per_action")}  # noqa: E731
    assert strip(rows[0]) == strip(rows[1])  # nothing is ranked at N = 1
    assert rows[3]["critic_calls"] == "0" and rows[2]["critic_calls"] == "2"
    assert "verifier" in (tmp_path / "sweep.html").read_text()
    # target-q on the bundled (inference-only) policy: refused before any episode runs
    assert main(["evaluate", "--checkpoint", str(policy), "--m-inf", "1", "--n", "2", "--verifier", "target-q",
                 "--episodes", "1", "--out", str(tmp_path / "t"), "--no-progress"]) == 2


def test_sweep_figures_read_a_bundled_sweep_through_pandas():
    """pandas reads the fixed grid's empty `adaptive` cells as NaN: they are still the fixed grid."""
    from sorl_core.studies.sweep_report import read_sweeps, sweep_figures

    grid, compute = sweep_figures(read_sweeps(REPO / "assets" / "ogbench" / "cube-single-task2" / "sweep.csv"))
    assert len(grid.data[0].z) == 4  # M_inf 1..8 rows
    lines = [t for t in compute.data if t.mode == "lines+markers" and t.x[0] is not None]
    assert len(lines) == 3  # one line per N
