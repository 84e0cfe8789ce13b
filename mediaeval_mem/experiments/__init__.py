"""Experiment-level work, built from the stages below it: the task map, a run as stages (runner),
grids, results tables, figures, model descriptions."""
