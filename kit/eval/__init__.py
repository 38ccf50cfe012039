"""Downstream evaluation: dataset readers, mIoU, frozen-feature linear probe, report tables, cluster maps.

Kept light on purpose: import the sub-modules you need (``kit.eval.geobench``, ``kit.eval.mados``,
``kit.eval.miou``, ``kit.eval.crops``, ``kit.eval.probe``, ``kit.eval.runner``, ``kit.eval.tables``,
``kit.eval.cluster``).
"""
