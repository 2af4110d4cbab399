"""Recording and replay: the MCAP recorder actor, offline replay with swapped actors, and inspection of recordings."""
