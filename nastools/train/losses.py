"""Losses of supernet training: label-smoothed CE for the max subnet, inplace KD for the rest."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy with label smoothing (the max subnet's loss; AttentiveNAS uses 0.1)."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Inplace distillation: cross-entropy of the student against the teacher's soft labels.

    ``-sum softmax(t / T) * log_softmax(s / T)``, averaged over the batch. The teacher's logits
    are detached here, so no gradient reaches the teacher through this loss. Its gradient in
    the student's logits is ``(softmax(s) - softmax(t)) / batch`` (at T=1), the same as KL
    divergence, which differs only by the teacher's entropy (a constant).
    """
    t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return -(t * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()


__all__ = ["kd_loss", "smoothed_ce"]
