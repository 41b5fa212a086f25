"""Sweeps: hypotheses verified over a grid of models, checkpoints, seeds and settings, on Ray.

``circuitspec sweep SWEEP.yaml --out DIR`` reads a sweep file
(:mod:`~circuitspec.sweep.spec`), expands it into cells (:mod:`~circuitspec.sweep.grid`),
runs the cells not yet recorded as Ray tasks (:mod:`~circuitspec.sweep.runner`,
:mod:`~circuitspec.sweep.worker`), records each cell and the tables
(:mod:`~circuitspec.sweep.store`) and draws the report
(:mod:`~circuitspec.sweep.pictures`, :mod:`~circuitspec.sweep.report`).
"""
