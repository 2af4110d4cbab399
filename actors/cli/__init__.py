"""The `edgevla` console script (`main`) and the runtime, recording and demo subcommands."""
