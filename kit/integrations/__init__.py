"""Adapters that put an exported encoder into the field's fine-tuning tools (PANGAEA, TerraTorch).

Each adapter imports without its tool installed; see ``docs/pangaea.md`` and ``docs/terratorch.md``.
"""
