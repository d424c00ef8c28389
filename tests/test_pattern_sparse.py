"""Pattern sparsity: the library and projection, the pattern conv kernel against ONNX Runtime for
pattern-set sizes, strides, paddings and edge cases, fall-backs with their reasons, the spec parser,
and the ADMM pruner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, ort_run
from onnx import TensorProto, helper, numpy_helper

import gearshift
from gearshift.errors import InputError
from gearshift.frontend.patterns import PatternPruner, candidates, library, project
from gearshift.relay_passes.plan import LayerSpec, parse_spec
from gearshift.relay_passes.pattern_sparse import reference_conv

RNG = np.random.default_rng(5)


def conv_model(w: np.ndarray, h: int, wd: int, stride: int = 1, pads=(1, 1, 1, 1), group: int = 1):
    cout, k = w.shape[0], w.shape[2]
    cin = w.shape[1] * group
    b = np.linspace(-1, 1, cout, dtype=np.float32)  # the same for a model and its pruned twin
    oh, ow = (h + pads[0] + pads[2] - k) // stride + 1, (wd + pads[1] + pads[3] - k) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], strides=[stride] * 2, pads=list(pads),
                              group=group, kernel_shape=[k, k], name="conv"),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, wd])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, oh, ow])],
                              [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(b, "conv.bias")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def run_both(proto_compiled, proto_reference, spec, x, tmp_path):
    built = gearshift.compile_model(proto_compiled, "host", sparsity=spec)
    got = gearshift.Session(gearshift.save(built, tmp_path / "art")).run({"x": x})["y"]
    return built, got, ort_run(proto_reference.SerializeToString(), {"x": x})[0]


def test_library_and_projection():
    every = candidates()
    assert every.shape == (56, 3, 3) and every.sum(axis=(1, 2)).tolist() == [4] * 56 and every[:, 1, 1].all()
    w = RNG.standard_normal((8, 6, 3, 3)).astype(np.float32)
    masks = library(w, 4)
    pruned, ids, kept = project(w, masks, 0.5)
    assert kept.sum() == 24  # half of the 48 kernels removed
    for o in range(8):
        for i in range(6):
            k = pruned[o, i] != 0
            assert not k.any() if not kept[o, i] else (k <= masks[ids[o, i]]).all()
    # each kernel takes the library pattern that keeps most of its energy
    energy = [(w[0, 0] ** 2 * m).sum() for m in masks]
    assert ids[0, 0] == int(np.argmax(energy))
    with pytest.raises(ValueError, match="connectivity"):
        project(w, masks, 1.0)


def test_spec_parser():
    assert parse_spec("pattern") == LayerSpec("pattern")
    assert parse_spec("pattern:6") == LayerSpec("pattern", None, None, 6)
    assert parse_spec("pattern:4:0.72") == LayerSpec("pattern", 0.72, None, 4)
    assert str(parse_spec("pattern:4:0.72")) == "pattern:4:0.72"
    assert parse_spec("pattern:4:0.75:8x1:4") == LayerSpec("pattern", 0.75, (8, 1), 4, 4)
    assert str(parse_spec("pattern:4:0.75:8x1:4")) == "pattern:4:0.75:8x1:4"
    for bad, msg in [("pattern:x", "pattern count"), ("pattern:0", "pattern count"), ("pattern:4:2", r"\[0, 1\)"),
                     ("pattern::0.5", "needs a pattern count"), ("pattern:4:0.5:1", "pattern block"),
                     ("pattern:4:0.5:4x4:16", "entry count"), ("pattern:4:0.5:4x4:8:1", "expected pattern"),
                     ("pattern:::4x4:8", "needs a pattern count")]:
        with pytest.raises(InputError, match=msg):
            parse_spec(bad)


@pytest.mark.parametrize("k,stride,pads,size", [
    (4, 1, (1, 1, 1, 1), (12, 12)), (6, 1, (0, 0, 0, 0), (9, 13)), (8, 2, (1, 1, 1, 1), (13, 11)),
    (4, 2, (0, 1, 1, 0), (10, 10)), (4, 1, (1, 1, 1, 1), (5, 56)),  # 56 wide: a block of 7 vectors
    (4, 2, (1, 1, 1, 1), (6, 58)),  # stride 2, 29 outputs wide: several vectors per column phase
])
def test_pattern_conv_matches_onnxruntime(k, stride, pads, size, tmp_path):
    cin, cout = 12, 20  # neither a multiple of the vector width
    w = RNG.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    pruned, _, _ = project(w, library(w, k), 0.75)
    x = RNG.standard_normal((1, cin, *size)).astype(np.float32)
    built, got, ref = run_both(conv_model(w, *size, stride, pads), conv_model(pruned, *size, stride, pads),
                               f"pattern:{k}:0.75", x, tmp_path)
    assert [layer["decision"] for layer in built.report["sparse_layers"]] == ["pattern"]
    assert "conv.weight.pattern_bias" in built.weights  # the bias add is fused into the kernel
    assert not any(w.shape == (1, cout, 1, 1) for w in built.weights.values())
    assert_close(got, ref)


@pytest.mark.parametrize("group", [4, 5, 12])
def test_kernel_by_channel_groups(group):
    """Channels taken in groups (partial sums through the output), groups not dividing CI included."""
    from gearshift.relay_passes.pattern_sparse import check_kernel
    from gearshift.schedules.kernels.pattern_conv import pack

    cin, cout = 12, 16
    w = RNG.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    masks = library(w, 4)
    pruned, _, _ = project(w, masks, 0.4)
    arrays = pack(pruned, masks, 2, group)
    ngroups = -(-cin // group)
    assert len(arrays[2]) == ngroups * cout * 4 + 1
    sizes = (1, cin, cout, 9, 11, (1, 1, 1, 1), 1, masks.tobytes(), 4, len(arrays[1]), 8, 2, ngroups)
    assert check_kernel(sizes, pruned, arrays) < 1e-6


@pytest.mark.parametrize("form", ["baked", "runtime"])
def test_existing_patterns_and_pruned_filter(form, tmp_path):
    from gearshift.relay_passes.plan import SparsityPlan
    w = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
    pruned, _, _ = project(w, library(w, 4), 0.8)
    pruned[3] = 0  # a filter whose kernels are all pruned: its output is the bias alone
    x = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
    model = conv_model(pruned, 10, 10)
    built, got, ref = run_both(model, model, SparsityPlan.parse("pattern", form=form), x, tmp_path)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "pattern" and layer["why"] == "existing patterns"
    assert_close(got, ref)


@pytest.mark.parametrize("case,why", [("grouped", "grouped"), ("5x5", "3x3 only"), ("dense", "density")])
def test_unsupported_convs_fall_back_with_reason(case, why, tmp_path):
    if case == "grouped":
        w, group, spec = RNG.standard_normal((8, 2, 3, 3)).astype(np.float32), 4, "pattern:4:0.7"
    elif case == "5x5":
        w, group, spec = RNG.standard_normal((8, 8, 5, 5)).astype(np.float32), 1, "pattern:4:0.7"
    else:  # 4 of 9 kept and no connectivity pruning: 44 % dense, not worth the pattern kernel
        w, group, spec = RNG.standard_normal((8, 8, 3, 3)).astype(np.float32), 1, "pattern:4"
    x = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
    model = conv_model(w, 10, 10, group=group)
    built = gearshift.compile_model(model, "host", sparsity=spec)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "dense" and why in layer["why"]
    got = gearshift.Session(gearshift.save(built, tmp_path / "art")).run({"x": x})["y"]
    if case != "dense":
        assert_close(got, ort_run(model.SerializeToString(), {"x": x})[0])


def test_reference_conv_matches_torch():
    x = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (0, 1, 1, 0)),
                                     torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_allclose(reference_conv(x, w, (1, 0, 0, 1), 2), ref, atol=1e-5)


def test_admm_pruner_converges_to_the_constraint():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1))
    x, target = torch.randn(16, 4, 6, 6), torch.randn(16, 8, 6, 6)
    pruner = PatternPruner(model, patterns=4, connectivity=0.5, rho=1.0, update_every=10)

    def distance() -> float:  # how far W is from satisfying the constraint, relative to |W|
        w = model[0].weight.detach().numpy()
        return float(np.linalg.norm(w - project(w, library(w, 4), 0.5)[0]) / np.linalg.norm(w))

    assert list(pruner.modules) == ["0"]  # the 1x1 conv is not a pattern layer
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = distance()
    for _ in range(100):
        opt.zero_grad()
        (torch.nn.functional.mse_loss(model(x), target) + pruner.penalty()).backward()
        opt.step()
        pruner.step()
    assert distance() < 0.75 * before  # ADMM pulls W towards the pattern + connectivity constraint
    pruner.prune()
    for _ in range(5):  # masked fine-tuning keeps the pruned entries at zero
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()
    pruner.finalize()
    w = model[0].weight.detach().numpy()
    masks = pruner.libraries["0"]
    nonzero = (w.reshape(8, 4, 9) != 0)
    assert (nonzero.any(axis=2)).sum() == 16  # half the kernels left
    fits = ~(nonzero[:, :, None, :] & ~masks.reshape(1, 1, 4, 9)).any(axis=3)
    assert fits.any(axis=2).all()
