"""The one training step and the one inference step, shared by the trainer,
the wizard's run-time estimate and the benchmarks (MONAI keeps one iteration
function behind every trainer; so do we)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .precision import autocast


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, precision: str,
               device: torch.device, scaler: "torch.amp.GradScaler | None" = None) -> tuple[float, torch.Tensor]:
    """Forward (under the precision's autocast), binary cross-entropy on the
    logits, backward and one optimiser step.  Returns (loss, logits in fp32, detached)."""
    with autocast(precision, device):
        logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss.item(), logits.detach().float()


def infer_logits(model: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> torch.Tensor:
    """Logits (fp32) for a batch already on ``device``, in inference mode."""
    with torch.inference_mode(), autocast(precision, device):
        return model(x).float()


__all__ = ["train_step", "infer_logits"]
