"""The one training step and the one inference step, shared by the trainer,
the wizard's run-time estimate and the benchmarks (MONAI keeps one iteration
function behind every trainer; so do we)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.common.autocast import autocast


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y, precision: str,
               device: torch.device, scaler: "torch.amp.GradScaler | None" = None, *,
               loss_fn=None) -> tuple[float, torch.Tensor]:
    """Forward (under the precision's autocast), the loss, backward and one
    optimiser step.  Returns (loss, logits in fp32, detached).

    The default loss is binary cross-entropy on the logits (the paper's models).
    ``loss_fn(outputs, y) -> loss`` replaces it and makes the forward pass
    ``model.forward_with_lesion(x)``: ``(logits, lesion logits)`` (model v2:
    cross-entropy over three classes plus the lesion loss, ``training.train.model_v2``)."""
    with autocast(precision, device):
        outputs = model(x) if loss_fn is None else model.forward_with_lesion(x)
    if loss_fn is None:
        logits = outputs
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    else:
        logits = outputs[0]
        loss = loss_fn(outputs, y)
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
