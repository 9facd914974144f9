"""CPU speed: fused kernels (hidden layers, bf16 Adam) and malloc settings that keep freed buffers.

`csrc/kernels.cpp` holds three ops (the two layer ops with their autograd in C++):
- `gelu_tanh`: ATen computes the tanh-GELU with a slow vectorised tanh, once forward and again in the
  backward (about 135 us each on a 256 x 512 bf16 tensor here). The kernel writes the value and the
  slope dy/dz in one pass (about 50 us), so the backward is one multiply.
- `gelu_layer_norm`: the critic's GELU -> LayerNorm -> per-member affine in one pass per row.
- `adam_step` (`adam_from_copies` below): bf16 training's clip and Adam step in one pass per tensor.
Values match the eager functions to float rounding (tests/test_cpu_kernels.py).

The build (g++ and ninja, about 20 s) happens once, in `make setup` or on first use, and is cached in
torch's extension folder (TORCH_EXTENSIONS_DIR). Without a compiler, on other devices, or with
SORL_LAB_FUSED=0, eager PyTorch runs instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("csrc") / "kernels.cpp"
# Vector width to compile for, from the capability torch itself detected on this CPU.
_CAPABILITY_FLAGS = {
    "AVX512": ["-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"],
}
_DTYPES = (torch.float32, torch.bfloat16)
_lock = threading.Lock()
_loaded: bool | None = None  # None until the first attempt
_malloc_tuned = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h


def bf16_matmul_native(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices at full speed: a CUDA GPU with bf16, or a CPU oneDNN has bf16
    kernels for (AVX-512). Elsewhere (CPUs with AVX2 only) PyTorch falls back to a slow generic routine: a lab-size
    SORL update took 1,054 ms in bf16 against 71 ms in float32 on one core of such a CPU (AMD EPYC, AVX2)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def requested() -> bool:
    """False when the user switched the kernels off with SORL_LAB_FUSED=0."""
    return os.environ.get("SORL_LAB_FUSED", "1") != "0"


def load(verbose: bool = False) -> bool:
    """Build (first time only) and load the kernels; False, with one warning, if that is not possible."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            _loaded = requested() and _build(verbose)
    return _loaded


def _build(verbose: bool) -> bool:
    start = time.perf_counter()
    try:
        from torch.utils.cpp_extension import load as load_extension

        capability = torch.backends.cpu.get_cpu_capability()
        # One build per source text and location: two checkouts (or versions) on one machine would
        # otherwise keep rebuilding over each other in the shared cache folder.
        digest = hashlib.sha256(f"{SOURCE.resolve()}\n{SOURCE.read_text()}".encode()).hexdigest()[:10]
        load_extension(
            name=f"sorl_lab_kernels_{capability.lower()}_{digest}",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-fopenmp", *_CAPABILITY_FLAGS.get(capability, [])],
            extra_ldflags=["-fopenmp"],  # resolves to the libgomp torch already loaded: one thread pool
            is_python_module=False,
            verbose=verbose,
        )
    except Exception as err:  # no compiler, no ninja, read-only cache, ...: fall back, say how to fix
        warnings.warn(
            f"sorl_lab: the fused CPU kernels could not be built ({type(err).__name__}: {str(err)[:300]}); "
            "the networks run PyTorch's eager GELU and LayerNorm instead (same results, slower on CPU). "
            "They need g++ and ninja, which `make setup` installs; SORL_LAB_FUSED=0 skips them and this warning.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    seconds = time.perf_counter() - start
    if seconds > 5:  # a real build, not a cache hit: say once where the pause came from
        print(f"[sorl-lab] built the CPU kernels in {seconds:.0f} s (cached for later runs)", file=sys.stderr)
    return True


def keep_freed_memory() -> None:
    """Let glibc keep freed buffers for reuse instead of handing them back to the OS.

    An iteration frees and re-allocates the same activation and cast buffers (0.25-4 MB) hundreds of
    times; with glibc's defaults each comes back as fresh pages, about 1,500 page faults (2-4 ms of
    system time) an iteration on our machine, none with these settings. Process-wide, idempotent, and
    a no-op where the C library is not glibc: the program that owns the process calls it once (the `sorl-lab`
    command and the app do; a notebook or script that trains may), never a library object being built.
    """
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # buffers below 32 MB (glibc's maximum) from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and keep up to 1 GB of freed heap
    except (OSError, AttributeError):
        pass


def release_freed_memory() -> bool:
    """Hand the heap glibc keeps after frees back to the OS (malloc_trim); False where the C library is not glibc.

    A long-lived server calls it when its heavy work ends: two cube-single rollouts in threads leave about 400 MB
    of freed heap held by the process (RSS 1,003-1,018 MB, 606 MB after this call; it does not grow from one
    round to the next), which otherwise stays with the server after its users have left.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def grad_norms(grads: list, seeds: int = 1) -> torch.Tensor:
    """Global L2 norm of the gradients present: a scalar, or one per seed (P,) for seed-stacked weights,
    whose leading axis is seed-major (seed p's rows first p, or its E critic members p*E .. p*E+E-1)."""
    present = [g for g in grads if g is not None]
    if seeds == 1:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present, 2, dtype=torch.float32)))
    per_tensor = [torch.linalg.vector_norm(g.reshape(seeds, -1), 2, dim=1, dtype=torch.float32) for g in present]
    return torch.linalg.vector_norm(torch.stack(per_tensor, dim=1), 2, dim=1)


@torch.no_grad()
def adam_from_copies(opt: torch.optim.Adam, params: list, grads: list, copies: list, max_norm: float,
                     seeds: int = 1) -> torch.Tensor:
    """Global-norm clip and Adam step of float32 weights from their bf16 working copies, one pass a tensor.

    params: float32 weights, all in `opt`'s single group; grads: the working copies' gradients (bf16,
    or float32 for float32 copies), None where the loss gave none (Adam then moves the weight on
    momentum alone, as a zero gradient would); copies: the working copies to receive the new weights,
    None to leave one as it is. Adam's state is `opt.state` in torch.optim.Adam's own layout, so
    `opt.state_dict()`, checkpoints and resume are unchanged; the update is Adam's to float rounding
    (tests/test_cpu_kernels.py). seeds > 1: seed-stacked weights, each seed clipped by its own norm.
    Returns the norm before clipping (one per seed). CPU only: it reads the norm on the host.
    """
    norm = grad_norms(grads, seeds)
    scales = [max((float(n) + 1e-6) / max_norm, 1.0) for n in norm.reshape(-1)]
    group = opt.param_groups[0]
    states = [opt.state[p] for p in params]
    for p, state in zip(params, states):
        if not state:  # Adam creates its state at a weight's first step
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    steps = [state["step"] for state in states]
    torch._foreach_add_(steps, 1)
    bf16 = [c if c is not None and c.dtype == torch.bfloat16 else None for c in copies]
    beta1, beta2 = group["betas"]
    moments = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
    for seed, scale in enumerate(scales):  # one seed's rows of every tensor are one contiguous block
        rows = (lambda ts: ts) if seeds == 1 else (lambda ts: [None if t is None else t.view(seeds, -1)[seed] for t in ts])
        torch.ops.sorl_lab.adam_step(rows(params), rows(grads), rows(moments[0]), rows(moments[1]), rows(bf16),
                                     float(group["lr"]), beta1, beta2, group["eps"], float(steps[0]), scale)
    same_dtype = [(c, p) for c, p in zip(copies, params) if c is not None and c.dtype == p.dtype]
    if same_dtype:  # float32 parts of a working copy (LayerNorm scale and shift)
        torch._foreach_copy_([c for c, _ in same_dtype], [p for _, p in same_dtype])
    return norm


def _use_kernels(z: torch.Tensor) -> bool:
    return z.device.type == "cpu" and z.dtype in _DTYPES and load()


def gelu_tanh(z: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (Flax's default): the fused kernel where it applies, else eager."""
    if not _use_kernels(z):
        return F.gelu(z, approximate="tanh")
    return torch.ops.sorl_lab.gelu_tanh(z)


def gelu_layer_norm(z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm(GELU(z)) * scale + shift over the last axis; z (E, B, H), scale and shift (E, 1, H).

    The critic's hidden-layer tail. Fused: float32 inside and one rounding to z's dtype; eager: three
    ops, with the affine in z's dtype so that bf16 activations are not promoted back to float32.
    """
    if not _use_kernels(z):
        h = F.layer_norm(F.gelu(z, approximate="tanh"), z.shape[-1:], eps=eps)
        return torch.addcmul(shift.to(h.dtype), h, scale.to(h.dtype))
    return torch.ops.sorl_lab.gelu_layer_norm(z, scale.float(), shift.float(), eps)


if __name__ == "__main__":  # `python -m sorl_core.cpu`: build now (make setup) and check against eager
    if not load(verbose="-v" in sys.argv):
        sys.exit("fused CPU kernels not available; see the warning above")
    z = torch.linspace(-6, 6, 2 * 3 * 40).reshape(2, 3, 40)
    scale, shift = torch.linspace(0.5, 1.5, 80).reshape(2, 1, 40), torch.linspace(-0.2, 0.2, 80).reshape(2, 1, 40)
    eager = F.layer_norm(F.gelu(z, approximate="tanh"), (40,), eps=1e-6) * scale + shift
    err = max((gelu_tanh(z) - F.gelu(z, approximate="tanh")).abs().max().item(),
              (gelu_layer_norm(z, scale, shift) - eager).abs().max().item())
    print(f"fused CPU kernels ready ({torch.backends.cpu.get_cpu_capability()}); max |fused - eager| = {err:.1e}")
    # Rows of z < -4 have a tiny spread after the GELU: LayerNorm magnifies eager's rounding in 1 + tanh(u).
    sys.exit(0 if err < 1e-3 else 1)
