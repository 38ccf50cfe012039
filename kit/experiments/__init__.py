"""The paper's experiments and the miniature testbed: plans, runs, reports and figures.

``crossscale_kit.experiments.mini`` runs the miniature Tables I-II (``python tools/experiments.py --table mini``),
``crossscale_kit.experiments.mini_report`` writes its tables and intervals, ``crossscale_kit.experiments.mini_figures`` its figures.
"""
