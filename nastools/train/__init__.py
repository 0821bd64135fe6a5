"""Supernet training (AttentiveNAS): samplers, inplace distillation, the trainer loop,
BN recalibration and evaluation, checkpoints and resume, DDP."""

from nastools.train.evaluate import calibration_batches, evaluate_top1, recalibrate_and_evaluate, recalibrate_bn

__all__ = ["calibration_batches", "evaluate_top1", "recalibrate_and_evaluate", "recalibrate_bn"]
