"""TerraTorch custom-modules folder: importing it registers the kit's ``crossscale_export`` backbone.

Point ``custom_modules_path`` (top level of a ``terratorch fit`` config) or the environment variable
``TERRATORCH_CUSTOM_MODULE_PATH`` at this folder. The kit must be installed (``pip install -e ".[terratorch]"``).
"""
import crossscale_kit.integrations.terratorch  # noqa: F401 - registers the backbone in TerraTorch's registry
