"""Actor (shortcut model) and fused critic ensemble (docs/ALGORITHM.md §2), and their seed-stacked forms.

Several seeds train as one model (`SORLAgent(config, seed=[0, 1, 2, 3])`): every weight gets a leading
seed axis and each layer is one batched matmul over the seeds, the way the critic's members already are.
Seed p of a stack holds exactly the weights a single-seed network of that seed would hold; `split` and
`join` convert between the two layouts (for weights and for anything shaped like them, e.g. Adam's moments).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cpu import gelu_layer_norm, gelu_tanh

# Flax's nn.gelu defaults to the tanh approximation; keep it for parity with the authors.
_gelu = gelu_tanh


class ShortcutActor(nn.Module):
    """s(x, t, level | obs): a plain MLP over the raw concatenation [obs, x, t, level]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], generator: torch.Generator | None = None):
        """generator: where the initial weights are drawn from (None: torch's global generator)."""
        super().__init__()
        dims = [obs_dim + action_dim + 2, *hidden, action_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o, device="meta") for i, o in zip(dims[:-1], dims[1:]))
        self.to_empty(device="cpu")
        # nn.Linear's own initialisation is drawn and discarded first, as it always was: a seed keeps giving the
        # weights it gave when the networks were seeded through torch's global generator.
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            nn.init.uniform_(layer.bias, -1 / math.sqrt(layer.in_features), 1 / math.sqrt(layer.in_features), generator=generator)
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """obs (B, O), x (B, A), t and level (B, 1) floats -> velocity (B, A)."""
        h = torch.cat([obs, x, t, level], dim=-1).to(self.layers[0].weight.dtype)  # bf16 copies take bf16
        for layer in self.layers[:-1]:
            h = _gelu(layer(h))
        return self.layers[-1](h)


class StackedActor(nn.Module):
    """P shortcut actors evaluated together: layer i holds weight (P, in, out) and bias (P, 1, out).

    Parameters come in ShortcutActor's order (layer 0 weight, layer 0 bias, layer 1 weight, ...).
    """

    def __init__(self, seeds: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        dims = [obs_dim + action_dim + 2, *hidden, action_dim]
        self.seeds = seeds
        self.layers = nn.ModuleList(_StackedLinear(seeds, i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor, level: torch.Tensor,
                members: torch.Tensor | None = None) -> torch.Tensor:
        """obs (P, B, O), x (P, B, A), t and level (P, B, 1) -> velocity (P, B, A).

        members: indices of the seeds to evaluate (inputs then have that many rows on the seed axis);
        None evaluates all of them.
        """
        h = torch.cat([obs, x, t, level], dim=-1).to(self.layers[0].weight.dtype)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            w, b = layer.weight, layer.bias
            if members is not None:
                w, b = w.index_select(0, members), b.index_select(0, members)
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = _gelu(h)
        return h

    @staticmethod
    def split(tensors: list[torch.Tensor], p: int) -> list[torch.Tensor]:
        """Seed p's share of parameter-shaped tensors, in ShortcutActor's layout (weight (out, in), bias (out,))."""
        return [t[p].t().contiguous() if i % 2 == 0 else t[p, 0].clone() for i, t in enumerate(tensors)]

    @staticmethod
    def join(members: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """The inverse of `split`: one list per seed, in ShortcutActor's layout -> stacked tensors."""
        return [torch.stack([m[i].t() if i % 2 == 0 else m[i].unsqueeze(0) for m in members]).contiguous()
                for i in range(len(members[0]))]


class _StackedLinear(nn.Module):
    def __init__(self, seeds: int, i: int, o: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(seeds, i, o))
        self.bias = nn.Parameter(torch.zeros(seeds, 1, o))


class CriticEnsemble(nn.Module):
    """E independent MLPs Q_j(obs, action, k) evaluated as one batched matmul per layer.

    Weights are stacked (E, in, out) so both members cost one `baddbmm` instead of E small matmuls.
    Each hidden layer is Linear -> GELU -> LayerNorm(eps 1e-6) with a per-member scale and shift.
    `seeds` > 1 stacks that many ensembles seed-major: (seeds * E, in, out), seed p's members at p*E .. p*E+E-1.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], num: int = 2, layer_norm: bool = True,
                 seeds: int = 1, generator: torch.Generator | None = None):
        """generator: where the initial weights are drawn from (None: torch's global generator)."""
        super().__init__()
        dims = [obs_dim + action_dim + 1, *hidden, 1]
        self.num, self.seeds = num, seeds
        self.layer_norm = layer_norm
        num = num * seeds
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, o in zip(dims[:-1], dims[1:]):
            bound = math.sqrt(6.0 / (i + o))  # Xavier-uniform for each member separately
            self.weights.append(nn.Parameter(torch.empty(num, i, o).uniform_(-bound, bound, generator=generator)))
            self.biases.append(nn.Parameter(torch.zeros(num, 1, o)))
        self.ln_scales = nn.ParameterList(nn.Parameter(torch.ones(num, 1, h)) for h in hidden) if layer_norm else None
        self.ln_shifts = nn.ParameterList(nn.Parameter(torch.zeros(num, 1, h)) for h in hidden) if layer_norm else None

    def forward(self, obs: torch.Tensor, action: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
        """obs (B, O), action (B, A), k (B, 1) or a number -> Q values (E, B).

        Seed-stacked: obs (P, B, O), action (P, B, A), k (P, B, 1) -> (E, P, B).
        """
        if not torch.is_tensor(k):
            k = obs.new_full((*obs.shape[:-1], 1), float(k))
        h = torch.cat([obs, action, k], dim=-1).to(self.weights[0].dtype)
        stacked = h.ndim == 3
        h = h.repeat_interleave(self.num, dim=0) if stacked else h.unsqueeze(0).expand(self.num, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = gelu_layer_norm(h, self.ln_scales[i], self.ln_shifts[i], 1e-6) if self.layer_norm else _gelu(h)
        h = h.squeeze(-1)
        return h.view(self.seeds, self.num, -1).transpose(0, 1) if stacked else h

    def split(self, tensors: list[torch.Tensor], p: int) -> list[torch.Tensor]:
        """Seed p's share of parameter-shaped tensors: its E members, as a single-seed ensemble holds them."""
        return [t[p * self.num:(p + 1) * self.num].clone() for t in tensors]

    @staticmethod
    def join(members: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """The inverse of `split`: one list per seed -> seed-major stacked tensors."""
        return [torch.cat([m[i] for m in members]).contiguous() for i in range(len(members[0]))]

    def member(self, j: int, obs: torch.Tensor, action: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
        """Q of member j alone, computed layer by layer without the batched path (used by tests)."""
        if not torch.is_tensor(k):
            k = obs.new_full((obs.shape[0], 1), float(k))
        h = torch.cat([obs, action, k], dim=-1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w[j] + b[j]
            if i < last:
                h = _gelu(h)
                if self.layer_norm:
                    h = F.layer_norm(h, h.shape[-1:], eps=1e-6) * self.ln_scales[i][j] + self.ln_shifts[i][j]
        return h.squeeze(-1)
