"""Accuracy suite: measured PyTorch memory for training and inference steps."""
