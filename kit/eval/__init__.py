"""Downstream evaluation: dataset readers, mIoU, frozen-feature linear probe, report tables, cluster maps.

Kept light on purpose: import the sub-modules you need (``crossscale_kit.eval.geobench``, ``crossscale_kit.eval.mados``,
``crossscale_kit.eval.miou``, ``crossscale_kit.eval.crops``, ``crossscale_kit.eval.probe``, ``crossscale_kit.eval.runner``, ``crossscale_kit.eval.tables``,
``crossscale_kit.eval.cluster``).
"""
