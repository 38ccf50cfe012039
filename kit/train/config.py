"""Gin parsing with errors a user can act on.

Every gin file and ``--gin_param`` binding is parsed with unknown names as errors. A typo in a
configurable or parameter name stops the run with the file, the offending name and the closest valid
names. Include paths are resolved against the repository root, so recipes can ``include
'gin/base/....gin'`` from any working directory.
"""
from __future__ import annotations

import difflib
import inspect
import re
from pathlib import Path

import gin

REPO_ROOT = Path(__file__).resolve().parents[2]


class GinConfigError(ValueError):
    """A gin file or binding names something that does not exist."""


def register_all() -> None:
    """Import every module that registers configurables."""
    import kit.data  # noqa: F401
    import kit.downsamplers  # noqa: F401
    import kit.ema  # noqa: F401
    import kit.encoders  # noqa: F401
    import kit.frameworks  # noqa: F401
    import kit.losses  # noqa: F401
    import kit.predictors  # noqa: F401
    import kit.samplers  # noqa: F401
    import kit.train.loop  # noqa: F401


def _registered_names() -> list[str]:
    from gin import config as gc

    names = set()
    for key, _ in gc._REGISTRY.items():  # selectors like "kit.frameworks.SpatialAffinity"
        sel = key if isinstance(key, str) else ".".join(k for k in key if k)
        names.add(sel.split(".")[-1])
    return sorted(names)


def _suggest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def _explain(exc: Exception, source: str) -> GinConfigError:
    msg = str(exc)
    m = re.search(r"No configurable matching '([^']+)'", msg)
    if m:
        name = m.group(1).split("/")[-1].split(".")[-1]
        return GinConfigError(
            f"{source}: unknown configurable {m.group(1)!r}.{_suggest(name, _registered_names())} "
            "Fix the name in the gin file or binding."
        )
    m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
    if m:
        from gin import config as gc

        params: list[str] = []
        try:
            fn = gc._REGISTRY.get_match(m.group(1)).wrapped
            target = fn.__init__ if inspect.isclass(fn) else fn
            params = [p for p in inspect.signature(target).parameters if p != "self"]
        except Exception:
            pass
        return GinConfigError(
            f"{source}: {m.group(1)!r} has no parameter {m.group(2)!r}.{_suggest(m.group(2), params)} "
            f"Valid parameters: {', '.join(params) if params else 'see its docstring'}."
        )
    return GinConfigError(f"{source}: {msg}")


def parse(gin_files: list[str], bindings: list[str] | None = None) -> None:
    """Parse recipes and overrides into gin's global config (clearing it first)."""
    register_all()
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_ROOT))
    for f in gin_files:
        p = Path(f)
        if not p.is_file() and not (REPO_ROOT / f).is_file():
            raise FileNotFoundError(f"gin file {f!r} not found (looked in the working directory and {REPO_ROOT}).")
        path = str(p if p.is_file() else REPO_ROOT / f)
        try:
            gin.parse_config_file(path, skip_unknown=False)
        except (ValueError, KeyError, SyntaxError, IOError) as exc:
            raise _explain(exc, f) from None
    for b in bindings or []:
        try:
            gin.parse_config(b, skip_unknown=False)
        except (ValueError, KeyError, SyntaxError) as exc:
            raise _explain(exc, f"--gin_param {b!r}") from None
    gin.finalize()
