"""Temporal Fiber Fusion: the fused/parallel layer against a plain per-frame loop of the same equations.

How to run (about a minute on 2 CPU cores with the defaults):
    .venv/bin/python benchmarks/bench_tff.py
    .venv/bin/python benchmarks/bench_tff.py --threads 1 --repeats 21   # steadier on a shared machine
    .venv/bin/python benchmarks/bench_tff.py --dim 512 --patches 64 --frames 64 128

The loop form is what a direct transcription of eq. 1-3 looks like: a Python loop over frames for the
circular convolution (eq. 1), for the memory recurrence (eq. 2) and for the periodic sum with K separate
matmuls per frame (eq. 3). The fused form is `TemporalFiberFusionLayer`: rolls for eq. 1, the associative
`linear_scan` for eq. 2, and one einsum with the per-frame folded weight W~_f = sum_w cos(2 pi w f / F) W_w
for eq. 3. Fusion, context broadcast, FFN and LayerNorm (eq. 4-5) are the same code in both. Forward only,
under torch.no_grad(); the layer is perturbed from its init (which is the identity) so that every path
contributes to the output.

Reported: median wall time of ``--repeats`` runs after one warm-up, the two forms run alternately; the ratio
loop / fused; the max abs difference between the two forms; analytic FLOPs per token at the paper's size
(see `flops_per_token`).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from tempflex.temporal import TemporalFiberFusionLayer

# ---- the loop form of eq. 1-5 ------------------------------------------------------------------------------


def loop_local(layer: TemporalFiberFusionLayer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with a loop over frames: L_f = k_-1 x_(f-1 mod F) + k_0 x_f + k_+1 x_(f+1 mod F)."""
    n = x.shape[1]
    k = layer.kernel_mlp(x.mean(dim=1)).unflatten(-1, (3, -1))  # (B, P, 3, D)
    out = [
        k[:, :, 0] * x[:, (f - 1) % n] + k[:, :, 1] * x[:, f] + k[:, :, 2] * x[:, (f + 1) % n]
        for f in range(n)
    ]
    return torch.stack(out, dim=1)  # (B, F, P, D)


def loop_memory(layer: TemporalFiberFusionLayer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2 with a loop over frames: m_f = alpha_f m_(f-1) + (1 - alpha_f) x_f, m_(-1) = 0."""
    m = torch.zeros_like(x[:, 0])  # (B, P, D)
    out = []
    for f in range(x.shape[1]):
        alpha = torch.sigmoid(layer.memory_gate(x[:, f]))
        m = alpha * m + (1 - alpha) * x[:, f]
        out.append(m)
    return torch.stack(out, dim=1)  # (B, F, P, D)


def loop_periodic(layer: TemporalFiberFusionLayer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with a loop over frames and K separate matmuls per frame (aliased terms skipped as in "mask")."""
    n = x.shape[1]
    out = []
    for f in range(n):
        acc = torch.zeros_like(x[:, f])  # (B, P, D)
        for k, w in enumerate(layer.frequencies.tolist()):
            if layer.alias == "mask" and 2 * w > n:
                continue
            acc = acc + math.cos(2 * math.pi * ((w * f) % n) / n) * (x[:, f] @ layer.periodic_proj[k].T)
        out.append(acc)
    return torch.stack(out, dim=1)  # (B, F, P, D)


def loop_layer(layer: TemporalFiberFusionLayer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 4-5 over the loop-form fibres; the per-token parts are the layer's own code."""
    paths = {"local": loop_local, "memory": loop_memory, "periodic": loop_periodic}
    beta = layer.fusion_weights(x)[:, None, :, :, None]  # (B, 1, P, A, 1)
    y = sum(beta[..., i, :] * paths[name](layer, x) for i, name in enumerate(layer.fibres))
    y = y + layer.context_scale * y.mean(dim=2, keepdim=True)  # (B, F, P, D)
    return x + layer.norm(y + layer.ffn(y))


# ---- analytic FLOPs ----------------------------------------------------------------------------------------


def scan_flops(n: int) -> int:
    """Elementwise flops per channel of `linear_scan` on n steps: 3 per merged pair + 2 per filled-in step."""
    if n <= 1:
        return 0
    half = (n + 1) // 2
    return 5 * half + scan_flops(half)


def flops_per_token(
    d: int, frames: int, patches: int, batch: int = 1, k: int = 5
) -> dict[str, tuple[float, float]]:
    """FLOPs per token and layer, (fused, loop), for kernel hidden D and FFN hidden 2D.

    A multiply-add is 2 FLOPs, any other elementwise op (sigmoid, GELU included) 1. Per token:
    - kernel_mlp: 2(D*D + D*3D) once per fibre, i.e. divided by F; plus the fibre mean, D. Same in both.
    - local conv (eq. 1): 3 products and 2 sums per channel, 5D. Same in both.
    - memory (eq. 2): gate 2D^2 + D (sigmoid), (1 - a) and (1 - a) x 2D, then the recurrence: 2D in the loop,
      scan_flops(F) / F * D (about 5D) in the scan, which trades a little work for log depth.
    - periodic (eq. 3): loop K(2D^2 + 2D) (K matmuls, scale, accumulate); fused 2D^2 for the one per-frame
      matmul
      plus the fold 2*K*D^2 per frame, shared by the B*P tokens of that frame: 2*K*D^2 / (B*P).
    - fusion and context (eq. 4): W_beta 6D / F, weighting 6D, context mean and gamma 3D. Same in both.
    - FFN and norm (eq. 5): 2(D*2D + 2D*2D) + GELU 2D + GLU 2D + LayerNorm ~8D + residuals 2D. Same in both.
    """
    kernel = (8 * d * d) / frames + d
    memory_common = 2 * d * d + 3 * d
    ffn_norm = 12 * d * d + 14 * d
    fusion = 6 * d / frames + 9 * d
    return {
        "kernel_mlp + local (eq. 1)": (kernel + 5 * d, kernel + 5 * d),
        "memory (eq. 2)": (memory_common + scan_flops(frames) / frames * d, memory_common + 2 * d),
        "periodic (eq. 3)": (2 * d * d + 2 * k * d * d / (batch * patches), k * (2 * d * d + 2 * d)),
        "fusion + context (eq. 4)": (fusion, fusion),
        "FFN + norm (eq. 5)": (ffn_norm, ffn_norm),
    }


# ---- timing ------------------------------------------------------------------------------------------------


def median_ms(
    fused: Callable[[], torch.Tensor], loop: Callable[[], torch.Tensor], repeats: int
) -> tuple[float, float]:
    """Median wall times (ms) of the two forms, run alternately so that they share any background load."""
    fused(), loop()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in zip((fused, loop), times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1])


def make_layer(dim: int, seed: int) -> TemporalFiberFusionLayer:
    torch.manual_seed(seed)
    layer = TemporalFiberFusionLayer(dim).eval()
    with torch.no_grad():  # leave the identity init: every path and the norm contribute
        for p in layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
        layer.norm.weight.fill_(1.0)
    return layer


def run_timings(args: argparse.Namespace) -> None:
    layer = make_layer(args.dim, args.seed)
    pairs = {
        "local": (layer.local_path, lambda x: loop_local(layer, x)),
        "memory": (layer.memory_path, lambda x: loop_memory(layer, x)),
        "periodic": (layer.periodic_path, lambda x: loop_periodic(layer, x)),
        "layer": (layer, lambda x: loop_layer(layer, x)),
    }
    print(
        f"B={args.batch}, P={args.patches}, D={args.dim}, fp32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'F':>4} {'part':<9} {'fused ms':>10} {'loop ms':>10} {'loop/fused':>11} {'max abs diff':>13}")
    for frames in args.frames:
        x = torch.randn(
            args.batch, frames, args.patches, args.dim, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            for name, (fused, loop) in pairs.items():
                diff = (fused(x) - loop(x)).abs().max().item()
                t_fused, t_loop = median_ms(partial(fused, x), partial(loop, x), args.repeats)
                row = f"{frames:>4} {name:<9} {t_fused:>10.2f} {t_loop:>10.2f} {t_loop / t_fused:>10.2f}x"
                print(f"{row} {diff:>13.2e}")


def print_flops(d: int = 1152, layers: int = 4, frames: int = 128, patches: int = 64) -> None:
    print(
        f"\nAnalytic GFLOPs per token, paper size: D={d}, {layers} layers, F={frames}, P={patches}, B=1, K=5"
    )
    print(f"{'part':<27} {'fused':>10} {'loop':>10}")
    terms = flops_per_token(d, frames, patches)
    for name, (fused, loop) in terms.items():
        print(f"{name:<27} {layers * fused / 1e9:>10.4f} {layers * loop / 1e9:>10.4f}")
    fused, loop = (layers * sum(t[i] for t in terms.values()) for i in (0, 1))
    tokens = frames * patches
    label = f"total ({layers} layers)"
    print(f"{label:<27} {fused / 1e9:>10.4f} {loop / 1e9:>10.4f}   loop/fused {loop / fused:.2f}x")
    clip_fused, clip_loop = fused * tokens / 1e12, loop * tokens / 1e12
    print(f"per clip of {tokens} tokens: {clip_fused:.2f} TFLOPs fused vs {clip_loop:.2f} loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1, help="B, clips per batch")
    parser.add_argument("--patches", type=int, default=64, help="P, patches per frame")
    parser.add_argument("--dim", type=int, default=256, help="D, width (the paper uses 1152)")
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 128], help="F values to time")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_timings(args)
    print_flops()


if __name__ == "__main__":
    main()
