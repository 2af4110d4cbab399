"""edgevla.deploy."""
