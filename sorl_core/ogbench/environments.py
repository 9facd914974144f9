"""The OGBench environments the lab trains SORL on, one entry each (docs/ENVIRONMENTS.md).

An entry holds SORL's per-environment settings (discount, AGG, q_loss_coef: docs/ALGORITHM.md §6), the task it
opens on, the dataset it learns from and how that dataset is made, and how a state of it is saved and restored.
Training, evaluation, the studies and the app look environments up here.

Adding an environment: one `Environment(...)` in `ENVIRONMENTS` (its dataset must be one OGBench's scripted
oracles can generate, listed in `sorl_core.ogbench.datasets.DATASET_SPECS`, or one a user supplies as official files),
plus its row in tests/test_environments.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Environment:
    """One OGBench environment family, e.g. `cube-single-play` (its singletask tasks are `...-singletask-taskN-v0`)."""

    name: str
    discount: float  # gamma of the critic's target
    q_agg: Literal["min", "mean"]  # how the critic ensemble is aggregated (target and best-of-N)
    q_loss_coef: float  # alpha, the weight of the Q loss
    default_task: int  # the singletask task the lab opens on (OGBench's default)
    # Where the dataset comes from: regenerated here with OGBench's scripted oracles (the official recipe), or only
    # from the official files a user copies in (locomotion datasets need trained expert policies).
    dataset_source: Literal["oracles", "official files"]
    # How a state is saved and restored for counterfactual rollouts: MuJoCo's integration state, the derived arrays
    # the environment reads between steps and every plain Python attribute of its wrappers (button states of the
    # puzzles, task targets, TimeLimit's counter): sorl_core.ogbench.rollouts.env_state / restore_env_state.
    state: Literal["mujoco + python attributes"] = "mujoco + python attributes"
    settings_from: str = "SORL (paper, Table 6)"  # where discount, AGG and alpha come from
    # The lab's aim for a headline task: success at M_inf = 8, N = 1 over 50 fresh episodes that makes it a learned
    # task (RESULTS.md reports how far each bundled policy is from it); None where the lab sets none.
    target: float | None = None

    @property
    def dataset(self) -> str:
        """The dataset file name, e.g. `cube-single-play-v0`."""
        return f"{self.name}-v0"

    def task(self, task: int | None = None) -> str:
        """The singletask environment name of task `task` (default: the default task)."""
        return f"{self.name}-singletask-task{self.default_task if task is None else task}-v0"

    def recipe(self):
        """The official recipe that regenerates the dataset (sorl_core.ogbench.datasets.DatasetSpec); None for datasets
        that only come as official files."""
        from .datasets import DATASET_SPECS

        return DATASET_SPECS.get(self.dataset)


ENVIRONMENTS: dict[str, Environment] = {e.name: e for e in (
    Environment("antmaze-large-navigate", 0.99, "min", 500, 1, "official files"),
    Environment("antmaze-giant-navigate", 0.995, "min", 500, 1, "official files"),
    Environment("humanoidmaze-medium-navigate", 0.995, "mean", 100, 1, "official files"),
    Environment("humanoidmaze-large-navigate", 0.995, "mean", 500, 1, "official files"),
    Environment("antsoccer-arena-navigate", 0.995, "mean", 500, 4, "official files"),
    Environment("cube-single-play", 0.99, "mean", 10, 2, "oracles", target=0.80),
    Environment("cube-double-play", 0.99, "mean", 50, 2, "oracles", target=0.10),
    Environment("scene-play", 0.99, "mean", 100, 2, "oracles", target=0.40),
    # SORL publishes no puzzle settings. FQL's (discount 0.99, mean over critics, task 4) are used, and its alpha is
    # translated: FQL weighs its behaviour term 1000 on puzzle against 300 on cube, 3.3x more behaviour-bound, so
    # SORL's Q weight is cube-single's 10 x 300 / 1000 = 3 (FQL's alpha multiplies the behaviour term, SORL's the
    # normalised Q term: the two are not the same number).
    Environment("puzzle-3x3-play", 0.99, "mean", 3, 4, "oracles",
                settings_from="FQL's puzzle settings (SORL publishes none): discount 0.99, mean over critics; FQL's "
                              "alpha 1000 (its behaviour weight; 300 on cube) translated to SORL's Q weight as "
                              "cube-single's 10 x 300 / 1000 = 3"),
)}


def environment_for(env_name: str) -> Environment:
    """The entry of an OGBench name such as `cube-single-play-singletask-task2-v0` or `cube-single-play-v0`."""
    base = env_name.split("-singletask")[0].removesuffix("-v0")
    if base not in ENVIRONMENTS:
        raise ValueError(f"no SORL preset for {env_name!r}; supported environments: {', '.join(sorted(ENVIRONMENTS))}")
    return ENVIRONMENTS[base]


def preset_for(env_name: str) -> Environment:
    """SORL's settings for an environment name (the entry itself: discount, q_agg, q_loss_coef, default_task)."""
    return environment_for(env_name)
