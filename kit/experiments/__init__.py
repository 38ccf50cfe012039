"""The paper's experiments and the miniature testbed: plans, runs, reports and figures.

``kit.experiments.mini`` runs the miniature Tables I-II (``python tools/experiments.py --table mini``),
``kit.experiments.mini_report`` writes its tables and intervals, ``kit.experiments.mini_figures`` its figures.
"""
