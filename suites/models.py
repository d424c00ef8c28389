"""The models suite: whole models, dense and at each structure that applies, every peer on the same
pruned weights (the torch module's weights are projected, then exported: ORT, torch, plain TVM and
gearshift all run those numbers).

Transformers: the BERT-base-shaped encoder, `transformers` BERT and DistilBERT (random init, BERT-base
widths); CNNs: ResNet-18, VGG-16 and MobileNet v2 from torchvision (random init). Dense-layer
structures go to every Linear whose shape takes them; the pattern conv to every full 3x3 conv.
MobileNet v2's 3x3 convs are depthwise (one input channel per output): a PatDNN pattern keeps 4 of
a kernel's 9 taps either way, but those convs are a sliver of its FLOPs, so the case reports how
many layers took the structure rather than claiming the speedup a full conv would get.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.errors import GearshiftError, InputError
from gearshift.spec import Log
from gearshift.suites import engines as E
from gearshift.suites import structures as S


@dataclass(frozen=True)
class Model:
    name: str
    make: Callable[[], tuple[object, dict[str, np.ndarray]]]  # -> (torch module in eval mode, feeds)
    structures: tuple[S.Structure, ...]


def _bert(hidden: int, layers: int, heads: int, ffn: int):
    def make():
        from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert

        config = BertConfig(vocab_size=8000, hidden=hidden, layers=layers, heads=heads, ffn=ffn, max_positions=128)
        return tiny_bert(config).eval(), bert_inputs(config, batch=1, seq_len=128)
    return make


def demo_model():
    """The bundled BERT-style encoder (512 wide, 4 layers, FFN 2048, sequence 128; BERT-medium's
    shape, random weights): (module, feeds). The demo, the RT3 suite and the quick models suite run it."""
    return _bert(512, 4, 8, 2048)()


def _transformers(kind: str):
    def make():
        import torch

        from gearshift.frontend.torch_compat import make_torchvision_importable

        make_torchvision_importable()
        import transformers as tf

        torch.manual_seed(0)
        if kind == "bert":
            model = tf.BertModel(tf.BertConfig(num_hidden_layers=2, vocab_size=8000), add_pooling_layer=False)
        else:
            model = tf.DistilBertModel(tf.DistilBertConfig(n_layers=2, vocab_size=8000))
        rng = np.random.default_rng(0)
        return model.eval(), {"input_ids": rng.integers(2, 7000, (1, 128)).astype(np.int64),
                              "attention_mask": np.ones((1, 128), np.int64)}
    return make


def _vision(name: str, size: int):
    def make():
        import torch

        from gearshift.frontend.torch_compat import make_torchvision_importable

        make_torchvision_importable()
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None)
        return model.eval(), {"x": np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)}
    return make


def plan(quick: bool) -> list[Model]:
    transformer = (S.bsr(0.2), S.block_patterns(0.125), S.circulant_blocks(8))
    if quick:
        return [Model("BERT-style encoder (512 wide, 4 layers; the demo's model)", demo_model, transformer),
                Model("ResNet-18 (64x64)", _vision("resnet18", 64), (S.pattern_conv(0.72),))]
    return [Model("BERT-base-shaped encoder (4 layers)", _bert(768, 4, 12, 3072),
                  (S.bsr(0.2), S.bsr(0.1), S.block_patterns(0.125), S.circulant_blocks(8), S.circulant_blocks(32))),
            Model("transformers BERT (base widths, 2 layers)", _transformers("bert"), (S.bsr(0.2), S.block_patterns(0.125))),
            Model("transformers DistilBERT (base widths, 2 layers)", _transformers("distilbert"), (S.bsr(0.2),)),
            Model("ResNet-18 (224x224)", _vision("resnet18", 224), (S.pattern_conv(0.5), S.pattern_conv(0.72))),
            Model("VGG-16 (224x224)", _vision("vgg16", 224), (S.pattern_conv(0.72),)),
            Model("MobileNet v2 (224x224)", _vision("mobilenet_v2", 224), (S.pattern_conv(0.72),))]


def count(quick: bool) -> int:
    return sum(1 + len(m.structures) for m in plan(quick))


def cases(quick: bool, workdir: Path, db=None, log: Log = lambda _m: None) -> Iterator[E.Case]:
    """Per model: the dense case (no structure), then one case per structure."""
    for model in plan(quick):
        try:
            module, feeds = model.make()
        except ImportError as err:  # torchvision / transformers are the test extras
            log(f"{model.name}: skipped ({err})")
            continue
        for structure in (None, *model.structures):
            try:
                yield case(model.name, module, feeds, structure, workdir, db, log)
            except GearshiftError as err:  # e.g. the exporter refuses the model: the report says so
                label = structure.label if structure else "dense"
                log(f"{model.name}, {label}: not built: {err}")
                yield E.Case("models", f"{model.name}, {label}", None, feeds,
                             {"kind": "model", "model": model.name, "family": structure.family if structure else "dense"},
                             error=str(err).splitlines()[0][:300])


def project_module(module, structure: S.Structure) -> tuple[object, int, int]:
    """A copy of `module` with every weight that takes `structure` projected onto it; returns it with
    (layers structured, layers that could carry a weight structure)."""
    import torch

    pruned = copy.deepcopy(module)
    done = total = 0
    for layer in pruned.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
            total += 1
            w = layer.weight.detach().numpy()
            depthwise = isinstance(layer, torch.nn.Conv2d) and layer.groups > 1
            if not depthwise and S.fits(structure, w.shape):
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(S.project(structure, w)))
                done += 1
    return pruned, done, total


def case(model: str, module, feeds, structure: S.Structure | None, workdir: Path, db=None,
         log: Log = lambda _m: None) -> E.Case:
    """`module` (projected onto `structure`, or dense) exported and built for every peer."""
    import torch

    from gearshift.frontend.inventory import inventory
    from gearshift.frontend.load import export_torch, load

    label = structure.label if structure else "dense"
    pruned, done, total = project_module(module, structure) if structure else (module, 0, 0)
    if structure and not done:
        raise InputError(f"{model}: no layer takes {label}")
    with torch.no_grad():
        proto = export_torch(pruned, feeds, output_names=["y"])
    flops = sum(layer.flops for layer in inventory(load(proto)))  # load: shapes inferred
    facts = {"kind": "model", "model": model, "family": structure.family if structure else "dense",
             "setting": structure.setting if structure else 1.0, "ideal": structure.ideal if structure else 1.0,
             "flops": flops, "structured_layers": f"{done} of {total}" if structure else None}
    built = E.Case("models", f"{model}, {label}", proto, feeds, facts)
    built.add(E.onnx_runtime(proto, feeds))
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    built.add(E.torch_engine("torch", lambda: pruned(**tensors)))
    built.add(E.plain_tvm(proto, feeds, flops))
    folder = workdir / E.slug(built.name)
    built.add(E.gearshift("gearshift dense", proto, feeds, "dense", folder, db))
    if structure:
        built.add(E.gearshift("gearshift", proto, feeds, structure.spec, folder, db, log))
    log(f"{built.name}: built ({flops / 1e9:.2f} GFLOP dense" + (f"; {done} of {total} layers structured)" if structure else ")"))
    return built
