"""Gin parsing with errors a user can act on.

Every gin file and ``--gin_param`` binding is parsed with unknown names as errors. A typo in a
configurable or parameter name stops the run with the file, the offending name and the closest valid
names. Include paths are resolved against the repository root, so recipes can ``include
'gin/base/....gin'`` from any working directory.

Recipes are code, like Python configs: a gin ``import`` line imports (runs) that Python module, so a gin
file is trusted as much as a script. The kit's own recipes need no ``import``; ``parse(...,
allow_imports=False)`` (``tools/train.py --no-gin-imports``) refuses any gin file, or file it includes,
that has one: use it for ``.gin`` files that come with a checkpoint or from someone else.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import re
import tokenize
from pathlib import Path

import gin

REPO_ROOT = Path(__file__).resolve().parents[2]


class GinConfigError(ValueError):
    """A gin file or binding names something that does not exist."""


# packages that hold no gin components (heavy optional imports): not walked
_NOT_COMPONENTS = ("crossscale_kit.eval",)
_CONFIGURABLES: list[str] | None = None


def register_all() -> list[str]:
    """Import every module under ``crossscale_kit`` so each component registers itself where it is defined.

    A component needs nothing but ``@gin.register`` (or ``@gin.configurable``) in its own module: no
    ``__init__`` or central list to edit. Returns the names of the registered configurables (gin's
    public :func:`gin.get_configurable` decides what counts), which the error messages suggest from.
    """
    global _CONFIGURABLES
    if _CONFIGURABLES is None:
        import crossscale_kit

        names = set()
        for mod_info in pkgutil.walk_packages(crossscale_kit.__path__, "crossscale_kit.", onerror=lambda name: None):
            if mod_info.name.startswith(_NOT_COMPONENTS):
                continue
            module = importlib.import_module(mod_info.name)
            names.update(_configurables_of(module))
        _CONFIGURABLES = sorted(names)
    return _CONFIGURABLES


def _configurables_of(module) -> list[str]:
    """Names defined in ``module`` that gin knows as configurables."""
    found = []
    for attr, obj in vars(module).items():
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        try:
            gin.get_configurable(f"{module.__name__}.{attr}")
        except ValueError:
            continue
        found.append(attr)
    return found


def _parameters_of(selector: str) -> list[str]:
    """Parameter names of a configurable (empty when gin does not know it)."""
    try:
        target = gin.get_configurable(selector.split("/")[-1])
    except ValueError:
        return []
    target = target.__init__ if inspect.isclass(target) else target
    try:
        return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []


def _suggest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def _explain(exc: Exception, source: str) -> GinConfigError:
    msg = str(exc)
    if isinstance(exc, tokenize.TokenError) or isinstance(exc, SyntaxError):
        where = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], tuple) else None
        if isinstance(exc, SyntaxError) and exc.lineno:  # gin's: (message, (file, line, column, text))
            line = f" (line {exc.lineno}: {exc.text.strip()!r})" if exc.text and exc.text.strip() else f" (line {exc.lineno})"
        elif where and isinstance(where[0], int):  # tokenize's: (message, (line, column))
            line = f" (line {where[0]})"
        else:
            line = ""
        return GinConfigError(f"{source}: gin syntax error{line}: {str(exc.args[0] if exc.args else msg).rstrip('.')}. Fix the "
                              "binding there (e.g. an unclosed bracket or quote).")
    m = re.search(r"No configurable matching '([^']+)'", msg)
    if m:
        name = m.group(1).split("/")[-1].split(".")[-1]
        return GinConfigError(
            f"{source}: unknown configurable {m.group(1)!r}.{_suggest(name, register_all())} "
            "Fix the name in the gin file or binding."
        )
    m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
    if m:
        params = _parameters_of(m.group(1))
        return GinConfigError(
            f"{source}: {m.group(1)!r} has no parameter {m.group(2)!r}.{_suggest(m.group(2), params)} "
            f"Valid parameters: {', '.join(params) if params else 'see its docstring'}."
        )
    m = re.search(r"Unable to open file: (\S+?)\.? Searched config paths", msg)
    if m:
        return GinConfigError(f"{source}: it includes {m.group(1)!r}, which is not found (looked in the working "
                              f"directory and {REPO_ROOT}); fix the include path (e.g. include 'gin/base/...gin').")
    return GinConfigError(f"{source}: {msg}")


_IMPORT = re.compile(r"^\s*(import|from)\s+\S")
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]")


def refuse_imports(path: Path, seen: set | None = None) -> None:
    """Raise GinConfigError when ``path`` or a file it includes has a gin ``import`` line."""
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return
    seen.add(path)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if _IMPORT.match(line):
            raise GinConfigError(f"{path}:{n}: '{line.strip()}' would import Python code, and gin imports are "
                                 "refused (--no-gin-imports); remove the line, or drop --no-gin-imports if you trust "
                                 "the file.")
        m = _INCLUDE.match(line)
        if m:
            inc = Path(m.group(1))
            refuse_imports(inc if inc.is_file() else REPO_ROOT / inc, seen)


def parse(gin_files: list[str], bindings: list[str] | None = None, *, allow_imports: bool = True) -> None:
    """Parse recipes and overrides into gin's global config (clearing it first).

    Args:
        allow_imports: False refuses gin files with ``import`` lines (see the module docstring).
    """
    register_all()
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_ROOT))
    for f in gin_files:
        p = Path(f)
        if p.is_dir() or (not p.exists() and (REPO_ROOT / f).is_dir()):
            raise IsADirectoryError(f"gin file {f!r} is a folder; pass a recipe file, e.g. --gin {f.rstrip('/')}"
                                    f"/<name>.gin (the recipes are in gin/).")
        if not p.is_file() and not (REPO_ROOT / f).is_file():
            raise FileNotFoundError(f"gin file {f!r} not found (looked in the working directory and {REPO_ROOT}).")
        path = str(p if p.is_file() else REPO_ROOT / f)
        if not allow_imports:
            refuse_imports(Path(path))
        try:
            gin.parse_config_file(path, skip_unknown=False)
        except (ValueError, KeyError, SyntaxError, IOError, tokenize.TokenError) as exc:
            raise _explain(exc, f) from None
    for b in bindings or []:
        try:
            gin.parse_config(b, skip_unknown=False)
        except (ValueError, KeyError, SyntaxError, tokenize.TokenError) as exc:
            raise _explain(exc, f"--gin_param {b!r}") from None
    gin.finalize()


def require_bindings(configurable: str, params: tuple[str, ...], files: list[str]) -> None:
    """Stop with a clear message when the parsed config leaves a required parameter unbound.

    A preset (``gin/presets/*.gin``) given without a recipe is the usual cause.
    """
    missing = []
    for p in params:
        try:
            gin.query_parameter(f"{configurable}.{p}")
        except ValueError:
            missing.append(f"{configurable}.{p}")
    if missing:
        raise GinConfigError(
            f"{', '.join(files)}: {', '.join(missing)} not bound. Pass a recipe first (e.g. --gin gin/latentmim_sa.gin), "
            "then presets or overrides (--gin gin/presets/cpu_quick.gin); presets only adjust a recipe."
        )
