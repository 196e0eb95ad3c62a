"""The commands (train, eval, cluster, predict): the only layer that knows the recipes."""
