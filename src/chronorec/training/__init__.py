"""Losses, the training loop and run-directory checkpoints."""

from chronorec.training.loop import TrainResult, train, training_windows

__all__ = ["TrainResult", "train", "training_windows"]
