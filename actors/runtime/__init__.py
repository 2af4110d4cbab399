"""The process runtime: the actor contract, graph files, the actor process loop, the supervisor and its decisions, preflight checks, and the in-process runner used by replay and tests."""
