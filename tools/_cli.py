"""Moved to :mod:`crossscale_kit.cli` (installed with the kit, so console entry points can use it); kept for old imports."""
from crossscale_kit.cli import *  # noqa: F401,F403
from crossscale_kit.cli import DEBUG_FLAGS, USER_ERRORS, configure_logging, main_guard, parser, report  # noqa: F401
