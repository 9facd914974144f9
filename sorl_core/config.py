"""SORL configuration: every number of docs/ALGORITHM.md lives here, one field each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from tyro.conf import Suppress

METHODS = ("sorl", "flow-bc", "ifql", "fql")
"""The algorithms the lab trains: SORL and the baselines it is measured against (docs/ALGORITHM.md §9)."""

# Network sizes. `paper` is the paper's 4 x 512 (docs/ALGORITHM.md §2); `lab` is what a 2-core CPU trains in seconds
# (chosen by measurement, see docs/PERFORMANCE.md).
SIZES: dict[str, tuple[int, ...]] = {
    "paper": (512, 512, 512, 512),
    "lab": (256, 256, 256),
    "tiny": (64, 64, 64),
}


@dataclass
class SORLConfig:
    """Hyper-parameters of the SORL agent (docs/ALGORITHM.md §2-5) and of the baselines it is compared with (§9)."""

    method: Literal["sorl", "flow-bc", "ifql", "fql"] = "sorl"
    """The algorithm: `sorl` (shortcut model, the lab's subject) or a baseline on the same networks and data (docs/ALGORITHM.md
    §9): `flow-bc` (the actor by flow matching alone), `ifql` (behaviour flow + IQL critic, best-of-N by Q) or `fql`
    (one-step policy distilled from a behaviour flow with a Q term)."""
    obs_dim: Suppress[int] = 1
    """Size of the observation vector (taken from the data; not a CLI flag)."""
    action_dim: Suppress[int] = 2
    """Size of the action vector; actions live in [-1, 1] (taken from the data)."""
    size: Literal["paper", "lab", "tiny"] = "paper"
    """Named network size; `hidden_dims` overrides it when given."""
    hidden_dims: tuple[int, ...] | None = None
    """Hidden layer widths of actor and each critic member (None: taken from `size`)."""
    mode: Literal["faithful", "clean"] = "faithful"
    """`faithful` reproduces the authors' code (docs/ALGORITHM.md §4: gradient through a', one shared Adam stepped
    twice, targets and Q term from pre-iteration weights); `clean` is the textbook version."""
    lr: float = 1e-4
    """Adam learning rate (betas 0.9/0.999, eps 1e-8)."""
    batch_size: int = 256
    """Transitions per update."""
    discount: float = 0.99
    """Gamma of the critic's bootstrap target."""
    tau: float = 0.005
    """Polyak rate of the target actor and target critic."""
    q_agg: Literal["min", "mean"] = "mean"
    """How the critic ensemble is aggregated in the target and in best-of-N scoring."""
    q_loss_coef: float = 10.0
    """Weight of the normalised Q loss in the actor objective (alpha in the paper)."""
    fm_coef: float = 10.0
    """Weight of the flow-matching (behaviour regularisation) loss."""
    sc_coef: float = 10.0
    """Weight of the self-consistency loss."""
    m_disc: int = 8
    """Finest trained step count: levels 0..log2(m_disc); flow matching trains the finest."""
    m_btt: int = 8
    """Largest number of Euler steps back-propagated through in the Q loss; k ~ U{1,2,..,m_btt}."""
    num_critics: int = 2
    """Members of the critic ensemble."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (over all parameters in faithful mode, per network in clean)."""
    flow_eps: float = 1e-5
    """eps of the interpolation x_t = (1 - (1 - eps) t) x0 + t a."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden GELU of the critic (the paper: yes)."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """Precision of training: bf16 runs every forward and backward on bf16 copies of the networks;
    the weights, Adam's state and the targets stay float32. auto: bf16 where the device multiplies bf16 matrices
    at full speed (a CUDA GPU, a CPU with AVX-512), else fp32 (on AVX2-only CPUs bf16 is about 15x slower); the
    agent records which. With --resume a run keeps its precision, unless this is auto (chosen again here)."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    expectile: float = 0.9
    """ifql only: expectile of the value loss (FQL's IFQL: 0.9; 0.5 would be the mean, 1 the maximum)."""
    alpha: float = 300.0
    """fql only: weight of the distillation loss (FQL's alpha, set per environment: 300 on cube, 1000 on puzzle)."""
    flow_steps: int = 10
    """fql only: Euler steps of the behaviour flow that make the distillation target (FQL: 10)."""
    normalize_q_loss: bool = False
    """fql only: divide the Q term by the batch's mean |Q| (FQL's option; off in its published runs)."""

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose one of {sorted(SIZES)}")
        if self.mode not in ("faithful", "clean"):
            raise ValueError(f"mode must be 'faithful' or 'clean', not {self.mode!r}")
        if self.q_agg not in ("min", "mean"):
            raise ValueError(f"q_agg must be 'min' or 'mean', not {self.q_agg!r}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', not {self.precision!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0 < self.expectile < 1:
            raise ValueError(f"expectile must lie between 0 and 1, got {self.expectile}")
        if not self.alpha >= 0 or not (isinstance(self.flow_steps, int) and self.flow_steps >= 1):
            raise ValueError(f"alpha must be 0 or more and flow_steps a whole number of at least 1; got {self.alpha}, "
                             f"{self.flow_steps}")
        for name in ("m_disc", "m_btt"):
            value = getattr(self, name)
            if not is_power_of_two(value):
                raise ValueError(f"{name} must be a power of two (1, 2, 4, 8, ...), got {value}")
        if self.m_btt > self.m_disc:
            raise ValueError(f"m_btt ({self.m_btt}) cannot exceed m_disc ({self.m_disc})")
        if self.hidden_dims is not None:
            self.hidden_dims = tuple(int(h) for h in self.hidden_dims)

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.hidden_dims if self.hidden_dims is not None else SIZES[self.size]

    @property
    def max_level(self) -> int:
        """Level of the finest trained step, log2(m_disc)."""
        return self.m_disc.bit_length() - 1

    @property
    def step_counts(self) -> tuple[int, ...]:
        """K = {1, 2, 4, ..., m_btt}: step counts drawn for the critic target and the Q loss."""
        return tuple(2**i for i in range(self.m_btt.bit_length()))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["hidden_dims"] is not None:
            d["hidden_dims"] = list(d["hidden_dims"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SORLConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SORLConfig fields: {sorted(unknown)}")
        return cls(**d)


def is_power_of_two(m: int) -> bool:
    return isinstance(m, int) and m >= 1 and (m & (m - 1)) == 0


# Defaults for the toy worlds, chosen by measurement (assets/toy/README.md). A one-step bandit: discount 0
# makes the target the reward itself. Small nets train faster with a larger learning rate and faster targets.
# q_loss_coef (the paper's alpha, set per environment: 10-500 on OGBench) is 1000 here: with 10, the finest
# step, tied to the multimodal data by flow matching, still reproduced the data's modes after 12k iterations
# (ring, M_inf = 8: true reward 0.34 against 0.90 at M_inf = 1); with 1000 every step size reaches the best
# mode within about 6k iterations.
TOY_DEFAULTS = dict(size="tiny", lr=3e-3, tau=0.05, q_loss_coef=1000.0, q_agg="mean", discount=0.0)
TOY_BUNDLED_ITERATIONS = 9000
"""Training budget of the bundled toy policies (scripts/build_toy_assets.py): about 1.5 min per world on 2 cores."""
