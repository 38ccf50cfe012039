"""The command-line tools, installed as ``crossscale_tools`` (console entry points ``crossscale-*``, see setup.py)."""
