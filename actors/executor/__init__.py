"""The executor: the pure chunk-to-command core, blending, when to ask for the next chunk, the rate governor, and the actor that drives the M7 link."""
