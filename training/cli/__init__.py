"""The dataset, train, eval and train-default subcommands."""
