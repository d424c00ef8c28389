"""Knowledge distillation for compression training: the dense model teaches its pruned copy.

Pruning during fine-tuning overfits the little data it sees; matching the dense teacher's outputs
and hidden states instead keeps the student close to the function it had (progressive knowledge
distillation: the sparsity is raised in steps, distilling at each).

    teacher = copy.deepcopy(model).eval()
    distiller = Distiller(teacher, model, hidden=r"encoder\\.layer\\.\\d+$")
    pruner = Pruner(model, "bsr:0.5:16x1", method="admm")
    for sparsity in progressive(pruner, [0.5, 0.7, 0.9]):      # one stage per sparsity
        for batch in data:
            loss = distiller.loss(batch)                        # outputs + matched hidden states
            (loss + pruner.penalty()).backward(); opt.step(); opt.zero_grad(); pruner.step(loss)
        ...                                                      # the generator prunes between stages

Hidden states are taken with forward hooks on the modules whose names match `hidden`, paired by
name between teacher and student; a pair whose shapes differ is skipped, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from gearshift.frontend.compression import Pruner
from gearshift.frontend.structures import Circulant


def _first_tensor(out) -> torch.Tensor:
    """A module's main output: the tensor itself, or the first tensor of a tuple / model output."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out
    return next(v for v in values if isinstance(v, torch.Tensor))


class Distiller:
    """loss(inputs) = output_weight * MSE(student out, teacher out) + hidden_weight * mean over matched
    hidden states of MSE(student h, teacher h). `output`: picks the tensor to match from a model's output
    (default: its first tensor, e.g. a transformer's last hidden state)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, *, hidden: str | None = None,
                 output_weight: float = 1.0, hidden_weight: float = 1.0,
                 output: Callable[[object], torch.Tensor] = _first_tensor):
        self.teacher, self.student = teacher.eval(), student
        self.output_weight, self.hidden_weight, self.output = output_weight, hidden_weight, output
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._seen: dict[str, dict[str, torch.Tensor]] = {"teacher": {}, "student": {}}
        self.hidden_names: list[str] = []
        self._hooks: list = []
        if hidden:
            regex = re.compile(hidden)
            teacher_modules = dict(teacher.named_modules())
            for name, module in student.named_modules():
                if name and regex.search(name) and name in teacher_modules:
                    self.hidden_names.append(name)
                    self._hooks.append(module.register_forward_hook(self._hook("student", name)))
                    self._hooks.append(teacher_modules[name].register_forward_hook(self._hook("teacher", name)))
            if not self.hidden_names:
                raise ValueError(f"no module of both models matches hidden={hidden!r}")

    def close(self) -> None:
        """Remove the hooks from both models (they stay usable on their own)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def __enter__(self) -> Distiller:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _hook(self, side: str, name: str):
        def record(_module, _inputs, out):
            self._seen[side][name] = _first_tensor(out)
        return record

    def loss(self, inputs) -> torch.Tensor:
        """Run both models on `inputs` (a dict of keyword arguments, or one tensor) and return the loss."""
        call = (lambda m: m(**inputs)) if isinstance(inputs, dict) else (lambda m: m(inputs))
        with torch.no_grad():
            target = self.output(call(self.teacher))
        got = self.output(call(self.student))
        loss = self.output_weight * nn.functional.mse_loss(got, target)
        pairs = [(self._seen["student"][n], self._seen["teacher"][n]) for n in self.hidden_names
                 if n in self._seen["student"] and self._seen["student"][n].shape == self._seen["teacher"][n].shape]
        if pairs and self.hidden_weight:
            loss = loss + self.hidden_weight * sum(nn.functional.mse_loss(s, t) for s, t in pairs) / len(pairs)
        for seen in self._seen.values():
            seen.clear()
        return loss


def progressive(pruner: Pruner, sparsities: Sequence[float], *, finetune: Callable[[float], None] | None = None
                ) -> Iterator[float]:
    """Stages of progressive compression: before each stage the zeroing structures take its sparsity
    and the caller trains (distils) with the pruner's penalty; after it the pruner prunes inside the
    previous stage's mask (nested levels) and `finetune(sparsity)` runs, if given. Yields each sparsity;
    after the generator is exhausted the model holds the last stage, its masks fixed."""
    previous = -1.0
    for sparsity in sparsities:
        if sparsity <= previous:
            raise ValueError(f"progressive sparsities must increase, got {list(sparsities)}")
        previous = sparsity
        for t in pruner.targets:
            if not isinstance(t.structure, Circulant):  # a tying constraint: no sparsity to raise
                t.structure.sparsity = sparsity
        pruner.pruned = False  # the penalty drives the masked weights towards the next stage
        pruner.update()
        yield sparsity
        pruner.prune(sparsity)
        if finetune is not None:
            finetune(sparsity)
