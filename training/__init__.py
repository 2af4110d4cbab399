"""edgevla.training."""
