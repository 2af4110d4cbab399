"""Actor kinds a graph names: cameras, the model stages, the M7 firmware process, and synthetic kinds for tests and the skeleton graph."""
