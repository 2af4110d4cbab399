"""Closed-loop evaluation in the sim, sync and async, with the executor the board runs."""
