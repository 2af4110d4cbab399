"""Policies (lerobot's ACT and SmolVLA at sizes a CPU trains) and the training loop."""
