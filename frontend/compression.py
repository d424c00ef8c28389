"""Compression training: one pruner for every structure and every method (in the spirit of `torch.ao.pruning`).

    pruner = Pruner(model, {r"attention": "bsr:0.5:16x1", r"intermediate|output": "bsr:0.7:16x1"}, method="slr")
    for batch in data:                            # phase 1: drive the weights towards the structure
        loss = task_loss(...)
        (loss + pruner.penalty()).backward(); optimizer.step(); optimizer.zero_grad()
        pruner.step(loss)                         # the task loss: SLR's acceptance test needs it
    pruner.prune()                                # phase 2: project, and keep the structure from now on
    ... fine-tune as usual ...
    pruner.finalize()                             # bake it in: export to ONNX, compile with no flag

Layers are chosen by regex on module names, each mapped to a spec in the `--sparsity` grammar
(first match wins; a plain string applies to every Linear and Conv2d). Methods:

- `lasso`: reweighted group lasso (block pruning for BERT, Li et al.): λ Σ γ_g ‖g‖ over the
  structure's groups, with γ_g = 1 / (‖g‖ + ε) refreshed every `update_every` steps, so groups
  already small are pushed harder;
- `admm`: ADMM (PatDNN): penalty ρ/2 ‖W - Z + U‖², and every `update_every` steps Z = proj(W + U),
  U += W - Z;
- `slr`: Surrogate Lagrangian Relaxation (Gurevin et al.): multipliers Λ with penalty
  ⟨Λ, W - Z⟩ + ρ/2 ‖W - Z‖², updated with a decreasing step s_k only when the surrogate
  Lagrangian went down (the W-step judged by the mean task loss over the interval, the Z-step
  exactly), s_k = α_k s_{k-1} ‖W_{k-1} - Z_{k-1}‖ / ‖W_k - Z_k‖, α_k = 1 - 1 / (M k^(1 - 1/k^r)).

`prune(sparsity)` may be called again with a higher sparsity (progressive training, RT3's nested
levels): the new mask is taken inside the old one, so each level's kept weights contain the next's.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from gearshift.frontend.structures import Circulant, Mask, Structure, structure_for

METHODS = ("lasso", "admm", "slr")


@dataclass
class Target:
    name: str
    module: nn.Module
    structure: Structure
    state: dict = field(default_factory=dict)  # the method's per-layer state (γ, Z, U, Λ, ...)

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight


class Pruner:
    """Drives the chosen layers of `model` towards their structures with one method (see the module doc).

    config: {regex: spec} or one spec for every layer; method: lasso, admm or slr; lam, eps: lasso's
    λ and ε; rho: ADMM/SLR's ρ; update_every: optimiser steps between γ refreshes or Z/U/Λ updates;
    slr_m, slr_r, slr_s0: SLR's step-size schedule (M, r) and first step (default ρ / 30).
    """

    def __init__(self, model: nn.Module, config: Mapping[str, str] | str, method: str = "admm", *,
                 lam: float = 1e-4, eps: float = 1e-3, rho: float = 1e-3, update_every: int = 50,
                 slr_m: float = 300.0, slr_r: float = 0.1, slr_s0: float | None = None):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method, self.lam, self.eps, self.rho, self.update_every = method, lam, eps, rho, update_every
        # SLR's first step: small against ρ. A first step of ρ made Λ / ρ overshoot Z several-fold
        # (the step grows while ||W - Z|| falls) and stalled progress; ρ / 30 converged fastest of those tried.
        self.slr_m, self.slr_r, self.step_size = slr_m, slr_r, rho / 30 if slr_s0 is None else slr_s0
        rules = [(re.compile(".*"), config)] if isinstance(config, str) else [(re.compile(k), v) for k, v in config.items()]
        self.targets: list[Target] = []
        for name, module in model.named_modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d)):
                continue
            spec = next((s for regex, s in rules if regex.search(name)), None)
            structure = structure_for(spec, module.weight) if spec else None
            if structure is None:
                continue
            problem = structure.check(module.weight)
            if problem:
                raise ValueError(f"layer {name!r} ({spec}): {problem}")
            self.targets.append(Target(name, module, structure))
        if not self.targets:
            raise ValueError(f"no Linear or Conv2d layer matches {config!r}")
        self._steps = self._updates = 0
        self._losses: list[float] = []
        self._last_interval_loss: float | None = None
        self.pruned = False
        self.update()

    # -- phase 1 ---------------------------------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """The term to add to the training loss (zero once pruned)."""
        if self.pruned:
            return torch.zeros(())
        if self.method == "lasso":
            return self.lam * sum((t.state["gamma"] * t.structure.groups(t.weight)).sum() for t in self.targets)
        if self.method == "admm":
            return self.rho / 2 * sum((t.weight - t.state["z"] + t.state["u"]).pow(2).sum() for t in self.targets)
        return sum(self._slr_terms(t.weight, t, t.state["z"]) for t in self.targets)

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """After each optimiser step. `loss`: the task loss of the step (SLR needs it; others ignore it)."""
        if self.method == "slr" and loss is None and not self.pruned:
            raise ValueError("SLR's acceptance test needs the task loss: pruner.step(loss)")
        if loss is not None:
            self._losses.append(float(loss.detach() if isinstance(loss, torch.Tensor) else loss))
        self._steps += 1
        if self._steps % self.update_every == 0 and not self.pruned:
            self.update()

    @torch.no_grad()
    def update(self) -> None:
        """lasso: refresh γ; admm: Z-step and dual update; slr: the surrogate-checked multiplier updates."""
        first = not self.targets[0].state
        if self.method == "lasso":
            for t in self.targets:
                t.state["gamma"] = 1.0 / (t.structure.groups(t.weight) + self.eps)
        elif self.method == "admm":
            for t in self.targets:
                t.state.setdefault("u", torch.zeros_like(t.weight))
                t.state["z"] = t.structure.project(t.weight + t.state["u"])
                t.state["u"] += t.weight - t.state["z"]
        elif first:  # Z = proj(W), Λ = 0; the accepted point (W, Z) is where the tests compare from
            for t in self.targets:
                t.state.update(lam=torch.zeros_like(t.weight), z=t.structure.project(t.weight))
                t.state.update(accepted_w=t.weight.clone(), accepted_z=t.state["z"].clone())
        else:
            self._slr_update()
        self._losses.clear()

    def _slr_terms(self, w: torch.Tensor, t: Target, z: torch.Tensor) -> torch.Tensor:
        return (t.state["lam"] * (w - z)).sum() + self.rho / 2 * (w - z).pow(2).sum()

    def _slr_update(self) -> None:
        """Two multiplier updates per interval, each taken only where the surrogate Lagrangian fell
        since the last accepted point (W_a, Z_a): after the W-step, L(W, Z_a) < L(W_a, Z_a) with the
        interval's mean task loss against the previous interval's; after the Z-step (Z moves every
        time), L(W, Z) < L(W, Z_a), where the task loss cancels."""
        loss = sum(self._losses) / len(self._losses) if self._losses else 0.0
        before, self._last_interval_loss = self._last_interval_loss, loss
        accepted_z = [t.state["accepted_z"] for t in self.targets]
        now = loss + self._penalty_at(None, accepted_z)
        then = (loss if before is None else before) + self._penalty_at([t.state["accepted_w"] for t in self.targets],
                                                                       accepted_z)
        if self._updates == 0 or now < then:
            self._accept(accepted_z)
        for t in self.targets:
            t.state["z"] = t.structure.project(t.weight + t.state["lam"] / self.rho)
        new_z = [t.state["z"] for t in self.targets]
        if self._penalty_at(None, new_z) < self._penalty_at(None, [t.state["accepted_z"] for t in self.targets]):
            self._accept(new_z)

    def _penalty_at(self, ws: list | None, zs: list) -> float:
        ws = ws or [t.weight for t in self.targets]
        return sum(float(self._slr_terms(w, t, z)) for w, t, z in zip(ws, self.targets, zs))

    def _accept(self, zs: list) -> None:
        """Λ += s_k (W - Z), with s_k = α_k s_(k-1) ||W_a - Z_a|| / ||W - Z||; (W, Z) becomes the accepted point."""
        self._updates += 1
        k = self._updates
        alpha = 1 - 1 / (self.slr_m * k ** (1 - 1 / k ** self.slr_r))
        was = math.sqrt(sum(float((t.state["accepted_w"] - t.state["accepted_z"]).pow(2).sum()) for t in self.targets))
        gap = math.sqrt(sum(float((t.weight - z).pow(2).sum()) for t, z in zip(self.targets, zs)))
        if was > 0 and gap > 0:
            self.step_size = alpha * self.step_size * was / gap
        for t, z in zip(self.targets, zs):
            t.state["lam"] += self.step_size * (t.weight - z)
            t.state.update(accepted_w=t.weight.clone(), accepted_z=z.clone())

    # -- phase 2 ---------------------------------------------------------------------------------------
    def prune(self, sparsity: float | None = None) -> None:
        """Project every layer onto its structure and keep it there while fine-tuning. With `sparsity`,
        every zeroing structure takes that sparsity first; a later call prunes inside the earlier mask."""
        for t in self.targets:
            if sparsity is not None and not isinstance(t.structure, Circulant):
                t.structure.sparsity = sparsity
            old = None
            if parametrize.is_parametrized(t.module, "weight"):
                old = t.module.parametrizations.weight[0]
                parametrize.remove_parametrizations(t.module, "weight", leave_parametrized=True)
            with torch.no_grad():  # the constraint first: it freezes a pattern library the projection then uses
                constraint = t.structure.constraint(t.module.weight)
                t.module.weight.copy_(t.structure.project(t.module.weight))
                if isinstance(old, Mask) and isinstance(constraint, Mask):  # nested: inside the earlier mask
                    constraint.mask.mul_(old.mask)
                    t.module.weight.mul_(constraint.mask)
            parametrize.register_parametrization(t.module, "weight", constraint)
        self.pruned = True

    def finalize(self) -> None:
        """Bake the structure into the weights (exact zeros, exact circulant blocks) for export."""
        for t in self.targets:
            if parametrize.is_parametrized(t.module, "weight"):
                parametrize.remove_parametrizations(t.module, "weight", leave_parametrized=True)

    def snapshot(self, model: nn.Module) -> nn.Module:
        """A copy of `model` (the one being pruned) with the structure baked in, training left untouched:
        one level of a progressive run, ready for export."""
        copied = copy.deepcopy(model)
        for module in copied.modules():
            if parametrize.is_parametrized(module, "weight"):
                # Not remove_parametrizations: the copy shares its generated class with the original,
                # and removing deletes the class's `weight` property, breaking the model being trained.
                value = module.weight.detach().clone()
                module.__class__ = module.__class__.__bases__[0]
                del module.parametrizations
                module.weight = nn.Parameter(value)
        return copied

    def masks(self) -> dict[str, torch.Tensor]:
        """The kept entries of every zeroing layer (after `prune`)."""
        return {t.name: t.module.parametrizations.weight[0].mask.clone() for t in self.targets
                if parametrize.is_parametrized(t.module, "weight") and isinstance(t.module.parametrizations.weight[0], Mask)}

    def report(self) -> dict[str, dict]:
        """Per layer: its structure, the fraction of zero weights, and its distance from the structure
        (‖W - proj(W)‖ / ‖W‖: 0 once pruned)."""
        out = {}
        with torch.no_grad():
            for t in self.targets:
                w = t.weight
                distance = float((w - t.structure.project(w)).norm() / w.norm().clamp_min(1e-12))
                out[t.name] = {"structure": str(t.structure), "zeros": float((w == 0).float().mean()),
                               "distance": distance}
        return out
