"""The architectures the sweep imports: torchvision classifiers, `transformers` configs and hand-built
ONNX graphs of old-opset ops, all with random weights (nothing is downloaded).

torchvision's model definitions are plain Python; its PyPI wheel's C ops link the CUDA build of
torch and do not load against the CPU wheel gearshift pins, which `gearshift.frontend.torch_compat`
works around (the models never call those ops).

Each entry is an `Entry`: a name, a way to make the ONNX model (export of a torch module with a given
exporter and opset, or a hand-built graph) and the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


@dataclass(frozen=True)
class Entry:
    name: str
    family: str  # "torchvision", "transformers" or "onnx"
    make: Callable[[], tuple[onnx.ModelProto, dict[str, np.ndarray]]] = field(repr=False)
    exporter: str = "-"
    opset: int = 0


def torchvision():
    """torchvision, importable against the CPU torch wheel (gearshift.frontend.torch_compat)."""
    from gearshift.frontend.torch_compat import make_torchvision_importable

    make_torchvision_importable()
    import torchvision as tv

    return tv


def _export(module_fn: Callable, shape: tuple, exporter: str, opset: int):
    def make():
        import torch

        from gearshift.frontend.load import export_torch

        torch.manual_seed(RNG_SEED)
        module = module_fn().eval()
        x = np.random.default_rng(RNG_SEED).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            proto = export_torch(module, {"x": x}, exporter=exporter, output_names=["y"], opset=opset)
        return proto, {"x": x}
    return make


# Random initialisations that make the comparison say nothing: torchvision's N(0, 0.1) convs send
# Inception v3's outputs to 1e9 (no two fp32 summation orders agree to 1e-3 element by element
# there); GoogLeNet's N(0, 0.01) convs leave an output that does not depend on the input; ViT's head
# starts at zero. He initialisation keeps their outputs near 1 and input-dependent.
HE_INIT = {"inception_v3", "googlenet", "vit_b_16"}


def vision(name: str, size: int = 64, exporter: str = "legacy", opset: int = 17, **kwargs) -> Entry:
    def module():
        import torch

        model = getattr(torchvision().models, name)(weights=None, **kwargs)
        if name in HE_INIT:
            for layer in model.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        return model
    return Entry(name, "torchvision", _export(module, (1, 3, size, size), exporter, opset), exporter, opset)


def hf(kind: str, exporter: str = "legacy", opset: int = 17) -> Entry:
    """A small random-init `transformers` model: BERT, DistilBERT, RoBERTa, GPT-2 or ViT."""
    def make():
        import torch
        import transformers as tf

        from gearshift.frontend.load import export_torch

        torch.manual_seed(RNG_SEED)
        small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        rng = np.random.default_rng(RNG_SEED)
        if kind == "vit":
            model = tf.ViTModel(tf.ViTConfig(**small, image_size=32, patch_size=8), add_pooling_layer=False)
            feeds = {"pixel_values": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}
        else:
            if kind == "bert":
                model = tf.BertModel(tf.BertConfig(**small, vocab_size=512), add_pooling_layer=False)
            elif kind == "roberta":
                model = tf.RobertaModel(tf.RobertaConfig(**small, vocab_size=512), add_pooling_layer=False)
            elif kind == "distilbert":
                model = tf.DistilBertModel(tf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=512))
            elif kind == "gpt2":
                model = tf.GPT2Model(tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=512, n_positions=64,
                                                   bos_token_id=0, eos_token_id=0, use_cache=False))
            else:
                raise ValueError(kind)
            feeds = {"input_ids": rng.integers(2, 500, (1, 16)).astype(np.int64)}
            if kind != "gpt2":
                feeds["attention_mask"] = np.ones((1, 16), np.int64)
        model.eval()
        with torch.no_grad():
            proto = export_torch(model, feeds, exporter=exporter, output_names=["y"], opset=opset)
        return proto, feeds
    return Entry(f"{kind}", "transformers", make, exporter, opset)


# -- hand-built graphs of ops the exporters no longer emit --------------------------------------
def _graph(name: str, nodes, x_shape, y_shape, inits: dict, opset: int):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=4 if opset < 11 else 7)


def onnx_graph(name: str, opset: int) -> Entry:
    def make():
        rng = np.random.default_rng(RNG_SEED)
        x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
        conv_w = (rng.standard_normal((8, 8, 3, 3)) / 8).astype(np.float32)
        if name == "lrn":
            nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
                     helper.make_node("LRN", ["r"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)]
            return _graph(name, nodes, x.shape, x.shape, {"w": conv_w}, opset), {"x": x}
        if name == "upsample":
            scales = np.array([1, 1, 2, 2], np.float32)
            if opset < 9:
                nodes = [helper.make_node("Upsample", ["x"], ["y"], mode="nearest", scales=scales.tolist())]
                inits = {}
            else:
                nodes = [helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")]
                inits = {"s": scales}
            return _graph(name, nodes, x.shape, (1, 8, 24, 24), inits, opset), {"x": x}
        if name == "batchnorm-spatial":
            stats = {k: rng.uniform(0.5, 1.5, 8).astype(np.float32) for k in ("scale", "bias", "mean", "var")}
            node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-5,
                                    **({"spatial": 1} if opset < 9 else {}))
            return _graph(name, [node], x.shape, x.shape, stats, opset), {"x": x}
        if name == "clip-attrs":  # Clip with min/max attributes (before opset 11)
            nodes = [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)]
            return _graph(name, nodes, x.shape, x.shape, {}, opset), {"x": x}
        if name == "gemm-flatten":
            w = (rng.standard_normal((10, 8 * 12 * 12)) / 30).astype(np.float32)
            nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
                     helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1, alpha=1.0, beta=1.0),
                     helper.make_node("Softmax", ["g"], ["y"], axis=1)]
            return _graph(name, nodes, x.shape, (1, 10), {"w": w, "b": np.zeros(10, np.float32)}, opset), {"x": x}
        if name == "pad-attrs":  # Pad with pads as an attribute (before opset 11)
            nodes = [helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=0.0)]
            return _graph(name, nodes, x.shape, (1, 8, 14, 14), {}, opset), {"x": x}
        raise ValueError(name)
    return Entry(name, "onnx", make, "hand-built", opset)


VISION_FULL = ["alexnet", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11", "vgg16_bn", "googlenet",
               "inception_v3", "squeezenet1_0", "squeezenet1_1", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
               "mobilenet_v3_large", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf",
               "regnet_y_400mf", "convnext_tiny", "mnasnet1_0", "swin_t", "vit_b_16", "maxvit_t"]
# Input sizes: 64 where the model takes it; the legacy exporter needs the adaptive pools of AlexNet and
# VGG to divide their input (6x6 and 7x7 feature maps: 224), and ViT/MaxViT fix their image size.
SIZES = {"inception_v3": 96, "alexnet": 224, "vgg11": 224, "vgg16_bn": 224, "swin_t": 64, "vit_b_16": 224,
         "maxvit_t": 224}
HF = ["bert", "distilbert", "roberta", "gpt2", "vit"]
GRAPHS = [("lrn", 9), ("upsample", 7), ("upsample", 9), ("batchnorm-spatial", 7), ("batchnorm-spatial", 9),
          ("clip-attrs", 6), ("gemm-flatten", 9), ("pad-attrs", 2)]


def full() -> list[Entry]:
    """The whole sweep: every architecture through the legacy exporter (opset 17 and the oldest it
    takes for CNNs, 9) and the dynamo exporter (its own opset, 18), and the hand-built graphs."""
    entries = []
    for name in VISION_FULL:
        size = SIZES.get(name, 64)
        entries.append(vision(name, size, "legacy", 17))
    for name in ["resnet18", "vgg11", "squeezenet1_0", "googlenet", "densenet121", "mobilenet_v2", "alexnet"]:
        entries.append(vision(name, SIZES.get(name, 64), "legacy", 9))
    for name in ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf"]:
        entries.append(vision(name, SIZES.get(name, 64), "dynamo", 18))
    entries += [hf(kind, "legacy", 17) for kind in HF] + [hf(kind, "dynamo", 18) for kind in HF]
    entries += [hf("bert", "legacy", opset) for opset in (14, 20)]
    entries += [onnx_graph(name, opset) for name, opset in GRAPHS]
    return entries


def fast() -> list[Entry]:
    """The subset `make test` runs: small, each a different family of ops."""
    return [vision("resnet18", 32, "legacy", 9), vision("mobilenet_v3_small", 32, "legacy", 17),
            vision("squeezenet1_1", 48, "dynamo", 18), hf("bert", "legacy", 17), hf("gpt2", "dynamo", 18),
            *[onnx_graph(name, opset) for name, opset in GRAPHS]]
