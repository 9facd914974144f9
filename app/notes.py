""""What to notice" sentences under the figures, written from the numbers on screen: the toy page's, and the
Verifier page's reading of a step's candidates (score_truth_note).

Each function reads what the figure shows (rewards, Q values, errors) and says in one or two sentences what
a student should look for at the current settings, and why. No Streamlit here: the tests call these directly.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sorl_core import toy
from sorl_core.stats import spearman
from sorl_core.viz import fraction_label

# Differences in mean true reward smaller than this are treated as "no change" (the metrics row's 256 states
# move by about this much between sampling seeds).
REWARD_TOLERANCE = 0.03
# A drop this large at an intermediate M_inf counts as a collapse worth pointing out.
COLLAPSE = 0.15


def _by(rows: Sequence[Mapping], n: int) -> dict[int, float]:
    return {int(r["m_inf"]): float(r["mean_reward"]) for r in rows if int(r["n"]) == n}


POOR_REWARD = 0.0  # a mean true reward below this is far from the best (about 1): off the data, mostly


def scaling_note(rows: Sequence[Mapping], m_disc: int) -> str:
    """What the scaling panel says about sequential (M_inf at N = 1) and parallel (N at M_disc) scaling."""
    seq = _by(rows, 1)
    if 1 not in seq or m_disc not in seq:
        return ""
    r1, r_top = seq[1], seq[m_disc]
    if r_top < r1 - REWARD_TOLERANCE:
        text = (f"At N = 1 the true reward **falls** from {r1:.2f} at M_inf = 1 to {r_top:.2f} at M_inf = {m_disc}. "
                "This is a policy early in training: the finest step size is the one flow matching ties to the data, "
                "and it is the last to be pulled toward high-Q actions, so many small steps still reproduce the data's "
                "modes instead of the best one. Trained longer (the bundled policies), more steps stop hurting.")
    elif r_top > r1 + REWARD_TOLERANCE and r_top < POOR_REWARD:
        text = (f"At N = 1 the true reward rises from {r1:.2f} at M_inf = 1 to {r_top:.2f} at M_inf = {m_disc}, yet "
                "stays far below what the data allows: the policy's actions leave the data, and more Euler steps only "
                "make it leave less badly. Sequential scaling cannot repair what the policy learned.")
    elif r_top > r1 + REWARD_TOLERANCE:
        text = (f"Sequential scaling pays here: at N = 1 the true reward rises from {r1:.2f} at M_inf = 1 to "
                f"{r_top:.2f} at M_inf = {m_disc}. One big step must choose a mode and land on it at once; several "
                "small steps can follow the curved flow onto the best mode.")
    else:
        text = (f"At N = 1 the true reward hardly changes with M_inf ({r1:.2f} at 1 step, {r_top:.2f} at {m_disc}): "
                "this policy's one-step and many-step samples agree, the self-consistency the shortcut model was "
                f"trained for, so here extra Euler steps cost {m_disc}× the compute for no gain.")
    dips = [m for m in seq if 1 < m < m_disc and seq[m] < min(r1, r_top) - COLLAPSE]
    if dips:
        text += (f" Note the dip at M_inf = {', '.join(map(str, sorted(dips)))}: those step sizes are trained only "
                 "through self-consistency with their neighbours, and have not caught up.")
    par = {int(r["n"]): float(r["mean_reward"]) for r in rows if int(r["m_inf"]) == m_disc}
    if len(par) > 1:
        n_max = max(par)
        change = par[n_max] - par[min(par)]
        if change < -REWARD_TOLERANCE:
            text += (f" Best-of-{n_max} **lowers** the reward at M_inf = {m_disc} ({par[min(par)]:.2f} → "
                     f"{par[n_max]:.2f}): the critic's top-scored candidate is often one it overrates, a learned "
                     "verifier's winner's curse.")
        elif change > REWARD_TOLERANCE:
            text += (f" Best-of-{n_max} lifts the reward at M_inf = {m_disc} ({par[min(par)]:.2f} → {par[n_max]:.2f}): "
                     "where the policy still spreads over several modes, the critic picks the better one.")
        else:
            text += (f" Best-of-N changes little at M_inf = {m_disc}: the candidates already agree, so there is "
                     "little for the critic to choose between.")
    return text



def baseline_scaling_note(rows: Sequence[Mapping], method: str) -> str:
    """The scaling panel of a baseline, in numbers: what more Euler steps (N = 1) and more candidates (at its largest
    M_inf) do to the true reward, and where its best setting lies."""
    seq = _by(rows, 1)
    m_top = max(seq)
    parts = []
    if len(seq) > 1:
        change = seq[m_top] - seq[1]
        verb = "rises" if change > REWARD_TOLERANCE else "falls" if change < -REWARD_TOLERANCE else "stays"
        parts.append(f"At N = 1 the true reward {verb} from {seq[1]:.2f} at M_inf = 1 to {seq[m_top]:.2f} at "
                     f"M_inf = {m_top}" + (": more steps follow the data more closely, they do not seek reward." if
                                           method == "flow-bc" else "."))
    par = {int(r["n"]): float(r["mean_reward"]) for r in rows if int(r["m_inf"]) == m_top}
    if len(par) > 1:
        n_max = max(par)
        how = "by consensus (no critic)" if method == "flow-bc" else "by its critic"
        parts.append(f"Best-of-{n_max} ranked {how} moves it from {par[1]:.2f} to {par[n_max]:.2f} at M_inf = {m_top}.")
    best = max(rows, key=lambda r: float(r["mean_reward"]))
    parts.append(f"Its best setting here is M_inf = {int(best['m_inf'])}, N = {int(best['n'])} "
                 f"({float(best['mean_reward']):.2f}, {best['network_calls']} calls per action); switch Method to SORL to "
                 "compare at the same compute.")
    return " ".join(parts)

def q_landscape_note(world: str, c: float, xs, ys, q_grid) -> str:
    """Where the learned Q peaks at this state, whether that is on the data, and what the true reward is there."""
    w = toy.make_world(world)
    q = np.asarray(q_grid, dtype=np.float64)
    i, j = np.unravel_index(int(np.argmax(q)), q.shape)
    peak = np.array([[xs[j], ys[i]]])
    ctx = np.array([[c]], dtype=np.float64)
    true_peak = float(w.reward(peak, ctx)[0])
    where = f"({peak[0, 0]:+.2f}, {peak[0, 1]:+.2f})"
    if not bool(w.in_support(peak)[0]):
        return (f"The learned Q is highest at {where}, **off the data**, where the critic never saw an action: it "
                f"predicts {q[i, j]:.2f} there, but the true reward is {true_peak:.2f}. Off the data a critic only "
                "extrapolates. Best-of-N can pick such an action only if the actor proposes it, and flow matching "
                "keeps the actor near the data: that is why SORL regularises the policy.")
    return (f"The learned Q peaks at {where}, **on the data** (true reward there {true_peak:.2f}): at this state the "
            "critic ranks actions the way the true reward does, so best-of-N can be trusted here.")


ACTION_BOX_WIDTH = 2.0  # actions live in [-1, 1]^2


def consistency_note(probe, m: int, m_disc: int) -> str:
    """How the heatmap's rows relate to the M_inf on screen."""
    sizes = [float(d) for d in np.asarray(probe.step_sizes)]
    errors = [float(np.nanmean(row)) for row in np.asarray(probe.error, dtype=np.float64)]
    if m > m_disc:
        return (f"M_inf = {m} takes steps of 1/{m}, finer than any trained step (the finest is 1/{m_disc}): no row "
                "here covers them; the model is extrapolating in its step-size input.")
    if m == m_disc:
        worst = sizes[int(np.argmax(errors))] if errors else 1.0
        return (f"M_inf = {m_disc} uses the finest step, 1/{m_disc}, which flow matching trains directly, so no row "
                f"is about it. The rows say what fewer steps would lose: the brightest row, d = {fraction_label(worst)}, "
                "is where a coarser sampler disagrees most with the fine one.")
    d = 1.0 / m
    row = next((k for k, s in enumerate(sizes) if abs(s - d) < 1e-9), None)
    if row is None:
        return ""
    e = errors[row]
    share = e / ACTION_BOX_WIDTH
    # Three bands with a gap between "small" and "large", so a slider move does not flip the verdict on a hair.
    verdict = ("small: halving the step size would change the action little" if share < 0.01 else
               "large: these steps still disagree with the finer ones, so more steps would move the action"
               if share > 0.05 else "moderate: more steps would move the action a little")
    return (f"M_inf = {m} takes steps of d = {fraction_label(d)}; the row d = {fraction_label(d)} compares one such "
            f"step with two of half the size. Its mean error is {e:.1e}, {100 * share:.1f}% of the action box's "
            f"width: {verdict}.")


def reward_map_note(world: str, c: float, cloud: Mapping, chosen_action) -> str:
    """The best reward possible at this state against what the policy reaches, and a warning off the data."""
    w = toy.make_world(world)
    ctx = np.array([[c]], dtype=np.float64)
    best = float(w.best_reward(ctx)[0])
    chosen_r = float(w.reward(np.asarray(chosen_action, dtype=np.float64)[None], ctx)[0])
    text = (f"Best possible here: {best:.2f}. The policy's actions average {cloud['mean_reward']:.2f}, "
            f"{100 * cloud['frac_in_support']:.0f} % of them on the data; ★ scores {chosen_r:.2f}.")
    if cloud["frac_in_support"] < 0.5:
        text += (" Most actions left the data: the actor followed the critic where it was never trained, and the "
                 "reward's off-support penalty shows what that costs.")
    elif best - cloud["mean_reward"] < 0.1:
        text += " The actions sit on the data mode nearest the goal ✕: the policy has found the best behaviour here."
    else:
        text += " Look for actions on modes far from the goal ✕: each costs reward."
    return text


def trajectory_note(m: int, n: int) -> str:
    """What the Euler paths show at this M_inf."""
    if m == 1:
        text = ("With M_inf = 1 every path is one straight jump from noise to action: the model must pick a mode "
                "and land on it in a single step.")
    else:
        text = (f"With M_inf = {m} each path takes {m} steps of 1/{m}: the early steps choose a mode, the later ones "
                "refine the action on it. Press ▶ Play to watch.")
    if n > 1:
        text += " The yellow path is the candidate the critic picked."
    return text


def short_run_note(iterations: int, bundled_iterations: int) -> str:
    """What to expect from a policy trained on the page, against the bundled, longer-trained one."""
    if iterations >= bundled_iterations:
        return ""
    return (f"This policy had {iterations:,} iterations; the bundled one had {bundled_iterations:,}. So short a "
            "run usually looks converged at M_inf = 1 but not at M_inf = 8: the finest step is tied to the data by "
            "flow matching and is the last to learn from the critic, so more Euler steps can lower the reward. "
            "Compare the two below.")


def comparison_note(series: Mapping[str, Sequence[Mapping]], m_disc: int) -> str:
    """One line per policy: how its N = 1 reward moves from M_inf = 1 to M_disc."""
    lines = []
    for label, rows in series.items():
        seq = _by(rows, 1)
        if 1 in seq and m_disc in seq:
            change = seq[m_disc] - seq[1]
            trend = ("falls" if change < -REWARD_TOLERANCE else "rises" if change > REWARD_TOLERANCE
                     else "stays level")
            lines.append(f"- **{label}**: at N = 1 the reward {trend} from {seq[1]:.2f} (M_inf = 1) to "
                         f"{seq[m_disc]:.2f} (M_inf = {m_disc}).")
    return "\n".join(lines)


# Worlds whose bundled policy does not show the paper's converged picture, and why (measured in
# assets/toy/README.md, pinned by tests/test_bundled_toy.py).
COUNTER_EXAMPLES = {
    "moons": ("**moons is a counter-example.** Its goal lies above the data in every state, and inside the data the "
              "reward rises toward it. The critic, trained on data actions only, continues that rise past the edge "
              "of the data and scores actions there highly; in truth they are punished. The actor follows it off "
              "the data at every step size, and best-of-N picks the candidates furthest off, so here it lowers the "
              "reward. No alpha tried (10, 100, 1000) avoided it; the figures are in assets/toy/README.md."),
}


def world_note(world: str) -> str:
    return COUNTER_EXAMPLES.get(world, "")


def score_truth_note(scores, true_rewards, chosen: int, verifier: str, truth: str = "true reward") -> str:
    """How well the verifier's ranking of this state's candidates matches the truth (`truth` names it)."""
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(true_rewards, dtype=np.float64)
    if len(x) < 2:
        return ""
    rho = spearman(x, y)  # NaN when either side is constant
    regret = float(y.max() - y[int(chosen)])
    if np.ptp(y) <= 1e-9:  # every candidate is worth the same: no ranking to judge, no correlation to print
        return (f"All {len(x)} candidates have the same {truth} here ({y[0]:.3f}), so any pick is as good as any "
                "other: this state cannot tell a good verifier from a bad one.")
    correlation = f"{rho:.2f}" if np.isfinite(rho) else "undefined (the scores are all equal)"
    text = (f"Rank correlation of the {verifier} score with the {truth} over these {len(x)} candidates: "
            f"{correlation}; the pick's {truth} is {regret:.3f} below the best candidate's.")
    if regret <= 1e-3:
        text += " Here the verifier picked the truly best candidate."
    elif np.ptp(y) < 0.02:
        text += (f" All candidates are worth nearly the same here ({truth}s within {np.ptp(y):.3f}), so the "
                 "ranking hardly matters at this state.")
    elif np.isfinite(rho) and rho < 0.3:
        text += (" The verifier barely knows which candidate is better: best-of-N is then a lottery, and a large N "
                 "mostly finds the candidates it overrates.")
    return text
