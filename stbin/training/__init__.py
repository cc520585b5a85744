"""Training: checkpoints (atomic, versioned), and the trainer behind ``stbin train``."""

from stbin.training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, load_model, save_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]
