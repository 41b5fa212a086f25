"""The notebook's exploratory analyses, each a pure function returning labelled numbers.

- :mod:`.grid`: the labelled 2-D result type every analysis returns;
- :mod:`.runs`: clean and corrupted runs per length group, final-norm conventions;
- :mod:`.attribution`: logit lens, direct logit attribution, backup name movers;
- :mod:`.patching`: activation patching (denoising, 0 = corrupted, 1 = clean);
- :mod:`.attention`: attention-pattern signatures of the IOI head classes;
- :mod:`.sweeps`: path-patching sweeps of every sender head into a receiver group.

Plotting lives in :mod:`circuitspec.output.plots`; orchestration in :mod:`circuitspec.analyses.explore`.
"""
