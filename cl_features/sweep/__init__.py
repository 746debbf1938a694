"""Sweeps of the synthetic experiment: many runs as one compiled program per group, and their phase diagrams.

grid.py     the sweep.* fields: runs (arm, objective, swept values, seed) and their compiled groups
batched.py  one group: the synthetic driver's step vmapped over its runs, sharded over devices
run.py      validate(config), run(config, workdir): groups trained (resumable) and measured, sweep.json, figures
"""
