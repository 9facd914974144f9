"""Toy 2-D worlds: offline contextual bandits with a known reward.

Each world is a one-step problem. An observation is a scalar context
c ~ U(-1, 1). An action is a point in [-1, 1]^2. The behaviour policy ignores
the context and draws actions from a clearly multimodal 2-D distribution (a
ring of Gaussians, two moons, a checkerboard, a spiral). The reward is known in
closed form,

    r(a, c) = 1 - ||a - g(c)||^2 - 4 * support_distance(a),
    g(c) = 0.75 * (cos t, sin t),  t = pi/2 + c * pi/4,

so among in-support actions the modes nearest the goal g(c) are best (the goal
sits on the ring's radius and swings with the context), and actions off the
data support are penalised: a policy that leaves the data (where a learned
critic is unreliable) is punished. Because the reward is exact, we can measure
the true value and the gap to the optimum for any policy.

Each support is a "core" set (mode centres, noiseless arcs, a noiseless
curve, squares) grown by a margin: support = {a : dist(a, core) <= margin}.
That gives closed-form distances, and an exact best reward:
1 - support_distance(g(c))^2. Numpy only; callers convert to torch.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

WORLDS = ("ring", "moons", "checkerboard", "spiral")

# Off-support penalty per unit of distance. The goal term's slope is at most
# 2 * ||a - g|| < 4 inside the action box, so leaving the support never pays.
OFF_SUPPORT_PENALTY = 4.0
# Radius of the goal g(c): on the ring's modes, so the best ring action is a mode.
GOAL_RADIUS = 0.75

# Ring: 8 Gaussian modes.
RING_MODES = 8
RING_RADIUS = 0.75
RING_STD = 0.07
RING_MARGIN = 3.0 * RING_STD  # the 3-sigma disc holds ~98.9% of a 2-D Gaussian

# Moons: the classic sklearn-style moons, mapped by a -> MOONS_SCALE * (a - MOONS_SHIFT).
# x in [-1, 2] maps to [-0.9, 0.9] and y in [-0.5, 1] to [-0.45, 0.45].
MOONS_SCALE = 0.6
MOONS_SHIFT = np.array([0.5, 0.25])
MOONS_NOISE = 0.04  # std, in the scaled coordinates
MOONS_MARGIN = 3.0 * MOONS_NOISE

# Checkerboard: 4x4 board on [-0.9, 0.9]^2. The "black" cells have an even (i + j).
BOARD_CELLS = 4
BOARD_LIM = 0.9
# Samples are exactly uniform on the squares. The margin only absorbs float32
# rounding of points that sit on a square's edge.
BOARD_MARGIN = 1e-6

# Spiral: two arms, r grows linearly from R0 to R1 over SPIRAL_TURNS turns.
# The second arm is the first one rotated by pi.
SPIRAL_R0 = 0.1
SPIRAL_R1 = 0.85
SPIRAL_TURNS = 1.5
SPIRAL_NOISE = 0.03
SPIRAL_MARGIN = 3.0 * SPIRAL_NOISE
SPIRAL_POINTS_PER_ARM = 1000  # point spacing ~4e-3, far below the margin

# Rows per block in the pairwise-distance loops; this caps memory at a few MB.
_CHUNK = 2048


# --------------------------------------------------------------------------- #
# Geometry helpers
# --------------------------------------------------------------------------- #
def _as_points(actions) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flatten (..., 2) actions to (M, 2) float64. Also return the leading shape."""
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] != 2:
        raise ValueError(f"actions must have shape (..., 2), got {a.shape}")
    return a.reshape(-1, 2), a.shape[:-1]


def _nearest_point_distance(a: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from each row of a (M, 2) to the nearest row of points (P, 2), in blocks."""
    # |a - p|^2 = |a|^2 + (|p|^2 - 2 a.p). Only the bracket depends on p, so
    # take its min first; that saves a pass over the (block, P) matrix.
    out = np.empty(len(a))
    p_sq = np.sum(points**2, axis=1)
    for start in range(0, len(a), _CHUNK):
        block = a[start : start + _CHUNK]
        cross = block @ (-2.0 * points.T)
        cross += p_sq
        out[start : start + _CHUNK] = np.sum(block**2, axis=1) + cross.min(axis=1)
    return np.sqrt(np.maximum(out, 0.0))



def _arc_distance(a: np.ndarray, centre, radius: float, t0: float, t1: float) -> np.ndarray:
    """Exact distance from points to the circular arc {centre + radius*(cos t, sin t): t in [t0, t1]}."""
    rel = a - np.asarray(centre)
    # Angle measured from t0 and wrapped into [0, 2*pi), to test whether it lies inside the arc.
    ang = np.mod(np.arctan2(rel[:, 1], rel[:, 0]) - t0, 2.0 * np.pi)
    on_arc = np.abs(np.hypot(rel[:, 0], rel[:, 1]) - radius)
    ends = [np.asarray(centre) + radius * np.array([np.cos(t), np.sin(t)]) for t in (t0, t1)]
    to_ends = np.minimum(*(np.hypot(*(a - e).T) for e in ends))
    return np.where(ang <= t1 - t0, on_arc, to_ends)


def _box_distance(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance from points (M, 2) to each axis-aligned box (B, 2); returns (M, B), 0 inside."""
    gap = np.maximum(np.maximum(lo[None] - a[:, None], a[:, None] - hi[None]), 0.0)
    return np.hypot(gap[..., 0], gap[..., 1])


# --------------------------------------------------------------------------- #
# Per-world geometry: a sampler, a distance-to-core and a margin
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class _Geometry:
    sample: Callable[[int, np.random.Generator], np.ndarray]  # raw (n, 2), before clipping
    core_distance: Callable[[np.ndarray], np.ndarray]  # (M, 2) -> (M,)
    margin: float


def _ring() -> _Geometry:
    angles = 2.0 * np.pi * np.arange(RING_MODES) / RING_MODES
    centres = RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def sample(n, rng):
        k = rng.integers(RING_MODES, size=n)
        return centres[k] + RING_STD * rng.standard_normal((n, 2))

    return _Geometry(sample, lambda a: _nearest_point_distance(a, centres), RING_MARGIN)


def _moons() -> _Geometry:
    # The unscaled moons: the upper half of the unit circle at (0, 0), and the
    # lower half of the unit circle at (1, 0.5). Both are given as
    # (centre, start angle, end angle).
    arcs = [
        (MOONS_SCALE * (np.array([0.0, 0.0]) - MOONS_SHIFT), 0.0, np.pi),
        (MOONS_SCALE * (np.array([1.0, 0.5]) - MOONS_SHIFT), np.pi, 2.0 * np.pi),
    ]

    def sample(n, rng):
        k = rng.integers(2, size=n)
        centre, t0, t1 = (np.array([arc[i] for arc in arcs])[k] for i in range(3))
        # The angle is uniform on each arc, as in the classic sklearn moons.
        ang = t0 + (t1 - t0) * rng.random(n)
        clean = centre + MOONS_SCALE * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return clean + MOONS_NOISE * rng.standard_normal((n, 2))

    def core_distance(a):
        return np.minimum(*(_arc_distance(a, c, MOONS_SCALE, t0, t1) for c, t0, t1 in arcs))

    return _Geometry(sample, core_distance, MOONS_MARGIN)


def _checkerboard() -> _Geometry:
    width = 2.0 * BOARD_LIM / BOARD_CELLS
    ij = np.array([(i, j) for i in range(BOARD_CELLS) for j in range(BOARD_CELLS) if (i + j) % 2 == 0])
    lo = -BOARD_LIM + width * ij.astype(np.float64)  # (8, 2) lower-left corners
    hi = lo + width

    def sample(n, rng):
        k = rng.integers(len(lo), size=n)
        return lo[k] + width * rng.random((n, 2))

    def core_distance(a):
        return _box_distance(a, lo, hi).min(axis=1)

    return _Geometry(sample, core_distance, BOARD_MARGIN)


@functools.lru_cache(maxsize=None)
def _spiral_arm() -> tuple[np.ndarray, np.ndarray]:
    """Dense polyline of one noiseless spiral arm and its cumulative arc length."""
    s = np.linspace(0.0, 1.0, SPIRAL_POINTS_PER_ARM)
    r = SPIRAL_R0 + (SPIRAL_R1 - SPIRAL_R0) * s
    ang = 2.0 * np.pi * SPIRAL_TURNS * s
    arm = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(arm, axis=0).T))])
    return arm, cum


def _spiral() -> _Geometry:
    arm, cum = _spiral_arm()
    curve = np.concatenate([arm, -arm])  # the second arm is the first one rotated by pi

    def sample(n, rng):
        # Uniform in arc length, so the outer turns are not sparser than the centre.
        k = rng.integers(2, size=n)
        length = rng.random(n) * cum[-1]
        clean = np.stack([np.interp(length, cum, arm[:, 0]), np.interp(length, cum, arm[:, 1])], axis=1)
        clean *= np.where(k == 0, 1.0, -1.0)[:, None]
        return clean + SPIRAL_NOISE * rng.standard_normal((n, 2))

    return _Geometry(sample, lambda a: _nearest_point_distance(a, curve), SPIRAL_MARGIN)


_BUILDERS = {"ring": _ring, "moons": _moons, "checkerboard": _checkerboard, "spiral": _spiral}


@functools.lru_cache(maxsize=None)
def _geometry(name: str) -> _Geometry:
    return _BUILDERS[name]()


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def goal(contexts) -> np.ndarray:
    """Rewarded point g(c) = 0.75 (cos t, sin t), t = pi/2 + c*pi/4, for contexts (..., 1) -> (..., 2)."""
    c = _as_contexts(contexts)
    theta = np.pi / 2.0 + c * (np.pi / 4.0)
    return GOAL_RADIUS * np.concatenate([np.cos(theta), np.sin(theta)], axis=-1)


def _as_contexts(contexts) -> np.ndarray:
    """Return contexts as float64 (..., 1). A bare scalar becomes shape (1,)."""
    c = np.asarray(contexts, dtype=np.float64)
    if c.ndim == 0:
        c = c.reshape(1)
    if c.shape[-1] != 1:
        raise ValueError(f"contexts must have shape (..., 1) (obs_dim = 1), got {c.shape}")
    return c


@dataclass(frozen=True)
class ToyWorld:
    """A 2-D toy offline contextual bandit. Build one with ``make_world(name)``."""

    name: str
    obs_dim: int = 1
    action_dim: int = 2

    def __post_init__(self):
        if self.name not in WORLDS:
            raise ValueError(f"unknown toy world {self.name!r}; known worlds: {', '.join(WORLDS)}")

    @property
    def margin(self) -> float:
        """How far past the noiseless core (modes, arcs, curve, squares) the support extends."""
        return _geometry(self.name).margin

    def sample_contexts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Contexts c ~ U(-1, 1), shape (n, 1), float32."""
        return rng.uniform(-1.0, 1.0, size=(n, 1)).astype(np.float32)

    def sample_behaviour(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Behaviour actions, shape (n, 2), float32, clipped to [-1, 1]. They do not depend on the context."""
        raw = _geometry(self.name).sample(n, rng)
        return np.clip(raw, -1.0, 1.0).astype(np.float32)

    def _distance64(self, actions) -> tuple[np.ndarray, tuple[int, ...]]:
        a, lead = _as_points(actions)
        geo = _geometry(self.name)
        return np.maximum(geo.core_distance(a) - geo.margin, 0.0), lead

    def support_distance(self, actions) -> np.ndarray:
        """Euclidean distance from each action (..., 2) to the data support; 0 inside. float32, shape (...)."""
        d, lead = self._distance64(actions)
        return d.reshape(lead).astype(np.float32)

    def in_support(self, actions) -> np.ndarray:
        """Boolean mask (...) of actions inside the data support."""
        d, lead = self._distance64(actions)
        return (d <= 1e-9).reshape(lead)

    def reward(self, actions, contexts) -> np.ndarray:
        """True reward 1 - ||a - g(c)||^2 - 4 * support_distance(a).

        actions (..., 2) and contexts (..., 1) broadcast over their leading dims.
        For example, pass actions (S, N, 2) with contexts[:, None, :] of shape (S, 1, 1).
        Returns float32 of the broadcast leading shape.
        """
        a = np.asarray(actions, dtype=np.float64)
        d, lead = self._distance64(a)
        closeness = 1.0 - np.sum((a - goal(contexts)) ** 2, axis=-1)
        return (closeness - OFF_SUPPORT_PENALTY * d.reshape(lead)).astype(np.float32)

    def best_reward(self, contexts) -> np.ndarray:
        """Maximum reward over all actions for each context (..., 1) -> (...), float32.

        Leaving the support never pays (see OFF_SUPPORT_PENALTY), so the best action
        is the support point nearest the goal: 1 - support_distance(g(c))^2, exactly.
        """
        return (1.0 - self.support_distance(goal(contexts)).astype(np.float64) ** 2).astype(np.float32)


def make_world(name: str) -> ToyWorld:
    """Return the toy world called ``name`` (one of WORLDS). Raises ValueError for an unknown name."""
    return ToyWorld(name)


def make_dataset(world: ToyWorld | str, size: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """An offline one-step dataset of behaviour transitions, deterministic in ``seed``.

    Keys: observations (n, 1), actions (n, 2), rewards (n,), next_observations (n, 1),
    masks (n,), terminals (n,); all float32. Every episode ends after one step,
    so masks are 0 (never bootstrap, Q = r) and terminals are 1. next_observations
    only exist so generic offline-RL code can consume the dict.
    """
    if isinstance(world, str):
        world = make_world(world)
    rng = np.random.default_rng(seed)
    obs = world.sample_contexts(size, rng)
    actions = world.sample_behaviour(size, rng)
    return {
        "observations": obs,
        "actions": actions,
        "rewards": world.reward(actions, obs),
        "next_observations": obs.copy(),
        "masks": np.zeros(size, dtype=np.float32),
        "terminals": np.ones(size, dtype=np.float32),
    }


_SORTED_PROJECTIONS: OrderedDict[bytes, np.ndarray] = OrderedDict()
_SORTED_PROJECTIONS_LOCK = threading.Lock()


def _sorted_projections(points: np.ndarray, dirs: np.ndarray, keep: int = 4) -> np.ndarray:
    """np.sort(points @ dirs, axis=0), remembered for the last `keep` large point sets.

    The offline data (10,000 actions) is compared with every new batch of policy actions: sorting its
    projections was most of a sliced-Wasserstein call (about 20 of 25 ms), once per setting in the app.
    """
    if len(points) < 2048:
        return np.sort(points @ dirs, axis=0)
    key = hashlib.blake2b(np.ascontiguousarray(points).tobytes() + dirs.tobytes(), digest_size=16).digest()
    with _SORTED_PROJECTIONS_LOCK:
        if key in _SORTED_PROJECTIONS:
            _SORTED_PROJECTIONS.move_to_end(key)
            return _SORTED_PROJECTIONS[key]
    proj = np.sort(points @ dirs, axis=0)
    proj.flags.writeable = False  # shared between callers
    with _SORTED_PROJECTIONS_LOCK:
        _SORTED_PROJECTIONS[key] = proj
        while len(_SORTED_PROJECTIONS) > keep:
            _SORTED_PROJECTIONS.popitem(last=False)
    return proj


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, n_projections: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two 2-D point sets (sizes may differ).

    Both sets are projected onto n_projections directions on the half circle:
    an evenly spaced fan, rotated by a random offset drawn from ``seed``. That
    gives lower variance than random directions and is still deterministic.
    Each 1-D W1 compares the two empirical quantile functions on a common
    grid of max(len(x), len(y)) mid-point levels. For equal sizes this is the
    exact W1 on that projection.
    """
    xp, _ = _as_points(x)
    yp, _ = _as_points(y)
    if len(xp) == 0 or len(yp) == 0:
        raise ValueError("sliced_wasserstein needs two non-empty point sets")
    offset = np.random.default_rng(seed).uniform(0.0, np.pi / n_projections)
    angles = offset + np.pi * np.arange(n_projections) / n_projections
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=0)  # (2, K)
    m = max(len(xp), len(yp))
    levels = (np.arange(m) + 0.5) / m

    def quantiles(points: np.ndarray) -> np.ndarray:
        # Empirical quantile function (inverse CDF) of each projection at the shared levels.
        proj = _sorted_projections(points, dirs)
        idx = np.clip(np.ceil(levels * len(points)).astype(int) - 1, 0, len(points) - 1)
        return proj[idx]

    return float(np.mean(np.abs(quantiles(xp) - quantiles(yp))))


def _broadcast_contexts(contexts, lead: tuple[int, ...]) -> np.ndarray:
    """Shape contexts so they broadcast against actions with leading shape ``lead``.

    Accepts contexts whose leading shape already matches, (S, 1) against
    (S, N, ...) actions (one context per row), or a single context.
    """
    c = _as_contexts(contexts)
    if c.shape[:-1] == lead or c.size == 1:
        return c
    if lead and c.size == lead[0]:
        return c.reshape((lead[0],) + (1,) * (len(lead) - 1) + (1,))
    raise ValueError(f"cannot match contexts of shape {c.shape} to actions with leading shape {lead}")


def action_metrics(world: ToyWorld | str, actions, contexts, data_actions) -> dict[str, float]:
    """Score a policy's actions against the true reward and the behaviour data.

    actions: (N, 2) with contexts (N, 1), or (S, N, 2) with contexts (S, 1)
    (N samples per context), or any shape with contexts of the same leading
    shape. Returns mean_reward, frac_in_support, sliced_wasserstein (all
    actions pooled, compared with data_actions), and reward_gap = mean of
    best_reward - reward.
    """
    if isinstance(world, str):
        world = make_world(world)
    a = np.asarray(actions, dtype=np.float64)
    c = _broadcast_contexts(contexts, a.shape[:-1])
    r = world.reward(a, c).astype(np.float64)
    best = np.broadcast_to(world.best_reward(c).astype(np.float64), r.shape)
    return {
        "mean_reward": float(r.mean()),
        "frac_in_support": float(world.in_support(a).mean()),
        "sliced_wasserstein": sliced_wasserstein(a.reshape(-1, 2), data_actions),
        "reward_gap": float(np.mean(best - r)),
    }


def reward_grid(
    world: ToyWorld | str, context: float, resolution: int = 101, lim: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true reward on a square grid, for heatmaps.

    Returns xs (R,), ys (R,) and a (R, R) float32 array with R[i, j] = reward((xs[j], ys[i]), context).
    Rows are y, so use imshow(R, origin="lower", extent=(-lim, lim, -lim, lim)). The arrays are read-only and
    shared: a world is its name, and the lab's front page asks for the same few grids on every slider move.
    """
    name = world if isinstance(world, str) else world.name
    return _reward_grid(name, float(context), int(resolution), float(lim))


@functools.lru_cache(maxsize=256)  # 256 grids of 101 x 101 float32: 10 MB
def _reward_grid(name: str, context: float, resolution: int, lim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.linspace(-lim, lim, resolution)
    ys = np.linspace(-lim, lim, resolution)
    gx, gy = np.meshgrid(xs, ys)  # "xy" indexing: gx[i, j] = xs[j]
    grid = np.stack([gx, gy], axis=-1)
    arrays = xs, ys, make_world(name).reward(grid, np.full((1,), context))
    for a in arrays:
        a.flags.writeable = False
    return arrays
