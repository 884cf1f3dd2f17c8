"""Temporal Fiber Fusion (paper eq. 1-5): each fibre against a naive loop written from the equations, the
scan against a plain loop, causality, aliasing, fibre ablation, init, checkpointing, golden value, errors and
the parameter count at the paper's size. Tiny sizes: D = 32, P = 4-6, F = 1-8 unless stated."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F_
from transformers.initialization import guard_torch_init_functions

from tempflex.temporal import TemporalFiberFusion, TemporalFiberFusionLayer, linear_scan
from tempflex.temporal.scan import linear_scan_loop

D = 32


def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Add fixed random values to every parameter, so that no path is the identity or zero as at init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def make_layer(dtype=torch.float64, seed=0, **kwargs) -> TemporalFiberFusionLayer:
    torch.manual_seed(seed)
    return perturb(TemporalFiberFusionLayer(D, **kwargs).to(dtype), seed=seed)


def make_x(b=2, f=5, p=4, dtype=torch.float64, seed=1) -> torch.Tensor:
    return torch.randn(b, f, p, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- naive references, straight from the equations -------------------------------------------------------


def naive_local(layer, x):
    """Eq. 1, one fibre and one frame at a time."""
    B, F, P, _ = x.shape
    w1, b1 = layer.kernel_mlp[0].weight, layer.kernel_mlp[0].bias
    w2, b2 = layer.kernel_mlp[2].weight, layer.kernel_mlp[2].bias
    out = torch.zeros_like(x)
    for b, p in itertools.product(range(B), range(P)):
        x_bar = sum(x[b, f, p] for f in range(F)) / F
        k = w2 @ F_.gelu(w1 @ x_bar + b1) + b2
        taps = {-1: k[:D], 0: k[D : 2 * D], 1: k[2 * D :]}
        for f in range(F):
            out[b, f, p] = sum(taps[j] * x[b, (f + j) % F, p] for j in (-1, 0, 1))
    return out


def naive_memory(layer, x):
    """Eq. 2, the recurrence one frame at a time."""
    B, F, P, _ = x.shape
    out = torch.zeros_like(x)
    for b, p in itertools.product(range(B), range(P)):
        m = torch.zeros(D, dtype=x.dtype)
        for f in range(F):
            alpha = torch.sigmoid(layer.memory_gate.weight @ x[b, f, p] + layer.memory_gate.bias)
            m = alpha * m + (1 - alpha) * x[b, f, p]
            out[b, f, p] = m
    return out


def naive_periodic(layer, x, alias="mask"):
    """Eq. 3, a sum over w of cos * matmul per frame; f = 0..F-1; with "mask", terms with w > F/2 dropped."""
    F = x.shape[1]
    out = torch.zeros_like(x)
    for f in range(F):
        for k, w in enumerate(layer.frequencies.tolist()):
            if alias == "mask" and w > F / 2:
                continue
            out[:, f] += math.cos(2 * math.pi * w * f / F) * (x[:, f] @ layer.periodic_proj[k].T)
    return out


# ---- shapes and fibres -------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 2, 3, 8])
def test_shapes(frames):
    layer, x = make_layer(torch.float32), make_x(f=frames, p=6, dtype=torch.float32)
    for path in (layer.local_path, layer.memory_path, layer.periodic_path, layer):
        y = path(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert TemporalFiberFusion(D, num_layers=2)(x).shape == x.shape


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_fibres_match_naive_equations(frames):
    layer, x = make_layer(), make_x(f=frames)
    torch.testing.assert_close(layer.local_path(x), naive_local(layer, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.memory_path(x), naive_memory(layer, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.periodic_path(x), naive_periodic(layer, x), rtol=1e-10, atol=1e-10)


def test_forward_matches_eq_4_and_5():
    layer, x = make_layer(), make_x()
    logits = layer.fusion_gate(x.mean(dim=1))  # (B, P, 3)
    beta = torch.softmax(logits, dim=-1)[:, None, :, :, None]  # (B, 1, P, 3, 1)
    paths = (naive_local(layer, x), naive_memory(layer, x), naive_periodic(layer, x))
    y = sum(beta[..., i, :] * path for i, path in enumerate(paths))
    y = y + layer.context_scale * y.mean(dim=2, keepdim=True)
    h = F_.gelu(y @ layer.ffn.fc1.weight.T + layer.ffn.fc1.bias) @ layer.ffn.fc2.weight.T + layer.ffn.fc2.bias
    ffn = h[..., :D] * torch.sigmoid(h[..., D:])  # GLU: first half gated by the second
    expected = x + F_.layer_norm(y + ffn, (D,), layer.norm.weight, layer.norm.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


# ---- scan -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 2, 3, 17, 64, 128])
@pytest.mark.parametrize("regime", ["uniform", "near_zero", "near_one"])
def test_scan_matches_loop(frames, regime):
    g = torch.Generator().manual_seed(frames)
    u = torch.rand(3, frames, 5, 8, generator=g)
    a = {"uniform": u, "near_zero": 1e-4 * u, "near_one": 1 - 1e-4 * u}[regime]
    b = torch.randn(3, frames, 5, 8, generator=g)
    expected = linear_scan_loop(a, b, dim=1)
    err = (linear_scan(a, b, dim=1) - expected).abs().max() / expected.abs().max()
    assert err < 1e-5


def test_scan_long_sequence_stays_finite():
    # a = 0.05 over 4096 steps: log-space cumsum would need exp(4096 * 3), far past fp32.
    a, b = torch.full((4096, 3), 0.05), torch.randn(4096, 3, generator=torch.Generator().manual_seed(0))
    h = linear_scan(a, b, dim=-2)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h, linear_scan_loop(a, b, dim=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("frames", [1, 2, 5, 8])
def test_scan_gradients(frames):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(frames, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(frames, 3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, dim=0), (a, b))


def test_scan_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        linear_scan(torch.ones(3, 2), torch.ones(3, 1), dim=0)


def test_memory_is_causal():
    layer, x = make_layer(torch.float32), make_x(f=8, dtype=torch.float32)
    base = layer.memory_path(x)
    for f in range(7):
        changed = x.clone()
        changed[:, f + 1 :] += torch.randn_like(changed[:, f + 1 :])
        out = layer.memory_path(changed)
        assert torch.equal(out[:, : f + 1], base[:, : f + 1])
        assert not torch.equal(out[:, f + 1], base[:, f + 1])


# ---- periodic aliasing ----------------------------------------------------------------------------------


def test_alias_mask_short_clip():
    layer = make_layer()  # frequencies 1, 2, 4, 8, 16
    coef = layer.periodic_coefficients(4)  # (F, K)
    assert coef.dtype == torch.float32
    assert torch.equal(coef[:, 2:], torch.zeros(4, 3))  # w = 4, 8, 16 masked at F = 4
    torch.testing.assert_close(coef[:, 1], torch.tensor([1.0, -1.0, 1.0, -1.0]))  # w = F/2 kept
    x = make_x(f=4)
    torch.testing.assert_close(
        layer.periodic_path(x), naive_periodic(layer, x, "mask"), rtol=1e-10, atol=1e-10
    )


def test_alias_mask_long_clip_masks_nothing():
    layer = make_layer()
    assert (layer.periodic_coefficients(64).abs().sum(dim=0) > 0).all()
    x = make_x(b=1, f=64, p=2)
    torch.testing.assert_close(
        layer.periodic_path(x), naive_periodic(layer, x, "keep"), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("frames", [1, 3, 4, 8])
def test_alias_keep_is_raw_formula(frames):
    layer, x = make_layer(alias="keep"), make_x(f=frames)
    torch.testing.assert_close(
        layer.periodic_path(x), naive_periodic(layer, x, "keep"), rtol=1e-10, atol=1e-10
    )
    assert torch.equal(layer.periodic_coefficients(4)[:, 2:], torch.ones(4, 3))  # w = 4, 8, 16: constant 1


def test_single_frame_periodic_is_zero_when_masked():
    layer, x = make_layer(), make_x(f=1)
    assert torch.equal(layer.periodic_path(x), torch.zeros_like(x))


# ---- fusion and fibre subsets ---------------------------------------------------------------------------


def test_fusion_weights_sum_to_one():
    layer, x = make_layer(), make_x()
    beta = layer.fusion_weights(x)
    assert beta.shape == (2, 4, 3) and (beta > 0).all()
    torch.testing.assert_close(beta.sum(dim=-1), torch.ones(2, 4, dtype=beta.dtype))


SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(("local", "memory", "periodic"), r)]


@pytest.mark.parametrize("fibres", SUBSETS, ids="+".join)
def test_fibre_subsets(fibres):
    layer, x = make_layer(fibres=fibres), make_x()
    idx = [("local", "memory", "periodic").index(f) for f in fibres]
    beta = torch.softmax(layer.fusion_gate(x.mean(dim=1))[..., idx], dim=-1)  # over the active fibres only
    torch.testing.assert_close(layer.fusion_weights(x), beta)
    paths = {"local": layer.local_path, "memory": layer.memory_path, "periodic": layer.periodic_path}
    y = sum(beta[:, None, :, i, None] * paths[f](x) for i, f in enumerate(fibres))
    y = y + layer.context_scale * y.mean(dim=2, keepdim=True)
    torch.testing.assert_close(layer(x), x + layer.norm(y + layer.ffn(y)))


def test_inactive_fibres_do_not_matter():
    layer, x = make_layer(fibres=("memory",)), make_x()
    assert torch.equal(layer.fusion_weights(x), torch.ones(2, 4, 1, dtype=x.dtype))
    before = layer(x)
    with torch.no_grad():
        layer.kernel_mlp[2].bias.add_(1.0)
        layer.periodic_proj.mul_(3.0)
    assert torch.equal(layer(x), before)


# ---- init, training, checkpointing ----------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 4])
def test_fresh_tff_is_identity_and_learns(frames):
    torch.manual_seed(0)
    model = TemporalFiberFusion(D, num_layers=2)
    x = make_x(f=frames, dtype=torch.float32)
    assert torch.equal(model(x), x)
    assert torch.equal(model.layers[0].local_path(x), x)  # identity kernel
    model(x).pow(2).sum().backward()
    assert model.layers[0].norm.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert not torch.equal(model(x), x)


def test_reset_parameters_restores_init_and_spares_loaded_tensors():
    layer = make_layer(torch.float32)
    loaded = (layer.norm.weight, layer.kernel_mlp[0].weight, layer.kernel_mlp[2].bias)
    kept = [t.detach().clone() for t in loaded]
    for t in loaded:
        t._is_hf_initialized = True  # as transformers marks a tensor loaded from a checkpoint
    with guard_torch_init_functions():  # what transformers' initialize_weights wraps _init_weights in
        layer.reset_parameters()
    assert all(torch.equal(t, k) for t, k in zip(loaded, kept))
    for t in loaded:
        del t._is_hf_initialized
    layer.reset_parameters()
    assert torch.equal(layer.norm.weight, torch.zeros(D))
    assert torch.equal(layer.norm.bias, torch.zeros(D)) and torch.equal(layer.context_scale, torch.zeros(D))
    assert torch.equal(layer.fusion_gate.weight, torch.zeros(3, D))
    assert torch.equal(layer.kernel_mlp[2].bias, torch.cat([torch.zeros(D), torch.ones(D), torch.zeros(D)]))


def test_gradient_checkpointing_same_output_and_grads():
    torch.manual_seed(0)
    model = perturb(TemporalFiberFusion(D, num_layers=2)).train()
    x = make_x(f=4, dtype=torch.float32).requires_grad_()
    results = []
    for flag in (False, True):
        model.zero_grad()
        x.grad = None
        model.gradient_checkpointing = flag
        out = model(x)
        out.pow(2).sum().backward()
        results.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in model.parameters()]))
    (o1, gx1, gp1), (o2, gx2, gp2) = results
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)
    torch.testing.assert_close(gx1, gx2)
    for a, b in zip(gp1, gp2):
        torch.testing.assert_close(a, b)


def test_low_precision_dtype():
    layer32, x32 = make_layer(torch.float32), make_x(f=8, dtype=torch.float32)
    out16 = make_layer(torch.bfloat16)(x32.bfloat16())
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), layer32(x32), rtol=0.05, atol=0.1)


def test_golden_value():
    torch.manual_seed(0)
    layer = perturb(TemporalFiberFusionLayer(D), seed=123)
    x = torch.randn(2, 6, 5, D, generator=torch.Generator().manual_seed(7))
    out = layer(x)
    assert out.sum().item() == pytest.approx(GOLDEN_SUM, rel=1e-5)
    assert (out - x).abs().sum().item() == pytest.approx(GOLDEN_DELTA, rel=1e-5)


# From a run of test_golden_value's exact code (torch 2.13 CPU); a change means the computation changed.
GOLDEN_SUM = 63.21036911010742
GOLDEN_DELTA = 222.4868927001953


# ---- contract and errors --------------------------------------------------------------------------------


def test_parameter_names_are_the_contract():
    layer = TemporalFiberFusionLayer(D)
    names = {n.split(".")[0] for n, _ in layer.named_parameters()}
    assert names == {
        "kernel_mlp",
        "memory_gate",
        "periodic_proj",
        "fusion_gate",
        "context_scale",
        "ffn",
        "norm",
    }
    assert layer.periodic_proj.shape == (5, D, D) and layer.fusion_gate.out_features == 3
    assert layer.kernel_mlp[-1].out_features == 3 * D and layer.ffn.fc1.out_features == 2 * D
    assert layer.frequencies.dtype == torch.long and "frequencies" in layer.state_dict()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fibres": ("local", "motion")}, "unknown TFF fibre"),
        ({"fibres": ()}, "non-empty"),
        ({"frequencies": ()}, "frequencies must not be empty"),
        ({"frequencies": (1, 0)}, "positive integers"),
        ({"alias": "fold"}, "alias"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalFiberFusionLayer(D, **kwargs)


@pytest.mark.parametrize(
    "shape, match",
    [((2, 4, D), "got 3 dimensions"), ((2, 4, 3, 16), "width D=32"), ((2, 0, 3, D), "at least one")],
)
def test_bad_input_raises(shape, match):
    layer = TemporalFiberFusionLayer(D)
    with pytest.raises(ValueError, match=match):
        layer(torch.zeros(shape))
    with pytest.raises(ValueError, match=match):
        layer.memory_path(torch.zeros(shape))


def test_parameter_count_at_paper_size():
    d, layers = 1152, 4
    with torch.device("meta"):
        model = TemporalFiberFusion(d, num_layers=layers)
    counted = sum(p.numel() for p in model.parameters())
    per_layer = (
        (d * d + d)
        + (d * 3 * d + 3 * d)  # kernel_mlp: D -> D -> 3D
        + (d * d + d)  # memory_gate W_alpha (with bias)
        + 5 * d * d  # periodic_proj, K = 5
        + (3 * d + 3)  # fusion_gate W_beta
        + d  # context_scale gamma
        + (d * 2 * d + 2 * d)
        + (2 * d * 2 * d + 2 * d)  # ffn: W1 D -> 2D, W2 2D -> 2D
        + 2 * d  # norm
    )
    print(
        f"TFF at D={d}, {layers} layers: {counted:,} parameters ({counted / layers / 1e6:.2f}M per layer); "
        f"by hand {layers * per_layer:,}"
    )
    assert counted == layers * per_layer  # every parameter accounted for
    equations = 16 * d * d  # the matrices of eq. 1-5 alone (no biases): D^2 + 3D^2 + D^2 + 5D^2 + 2D^2 + 4D^2
    assert abs(counted / layers - equations) <= 0.02 * equations  # the "about 21.2M a layer"


def test_stack_needs_a_layer():
    with pytest.raises(ValueError, match="num_layers"):
        TemporalFiberFusion(D, num_layers=0)
