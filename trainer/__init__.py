"""The trainer: training loop, augmentation, evaluation and the ``python -m trainer`` CLI."""
