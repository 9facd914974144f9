"""Actor (shortcut model) and fused critic ensemble (docs/ALGORITHM.md §2)."""

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

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        dims = [obs_dim + action_dim + 2, *hidden, action_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """obs (B, O), x (B, A), t and level (B, 1) floats -> velocity (B, A)."""
        h = torch.cat([obs, x, t, level], dim=-1).to(self.layers[0].weight.dtype)  # bf16 copies take bf16
        for layer in self.layers[:-1]:
            h = _gelu(layer(h))
        return self.layers[-1](h)


class CriticEnsemble(nn.Module):
    """E independent MLPs Q_j(obs, action, k) evaluated as one batched matmul per layer.

    Weights are stacked (E, in, out) so both members cost one `baddbmm` instead of E small matmuls.
    Each hidden layer is Linear -> GELU -> LayerNorm(eps 1e-6) with a per-member scale and shift.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], num: int = 2, layer_norm: bool = True):
        super().__init__()
        dims = [obs_dim + action_dim + 1, *hidden, 1]
        self.num = num
        self.layer_norm = layer_norm
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, o in zip(dims[:-1], dims[1:]):
            bound = math.sqrt(6.0 / (i + o))  # Xavier-uniform for each member separately
            self.weights.append(nn.Parameter(torch.empty(num, i, o).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(num, 1, o)))
        self.ln_scales = nn.ParameterList(nn.Parameter(torch.ones(num, 1, h)) for h in hidden) if layer_norm else None
        self.ln_shifts = nn.ParameterList(nn.Parameter(torch.zeros(num, 1, h)) for h in hidden) if layer_norm else None

    def forward(self, obs: torch.Tensor, action: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
        """obs (B, O), action (B, A), k (B, 1) or a number -> Q values (E, B)."""
        if not torch.is_tensor(k):
            k = obs.new_full((obs.shape[0], 1), float(k))
        h = torch.cat([obs, action, k], dim=-1).to(self.weights[0].dtype).unsqueeze(0).expand(self.num, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = gelu_layer_norm(h, self.ln_scales[i], self.ln_shifts[i], 1e-6) if self.layer_norm else _gelu(h)
        return h.squeeze(-1)

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
