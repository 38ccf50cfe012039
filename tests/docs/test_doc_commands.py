"""Every ``python tools/...`` / ``python benchmarks/...`` command in the README and docs/*.md names a script that exists
and only flags that script accepts; the short ones (no training) run as written."""
import re
import shlex
import subprocess
import sys

import pytest

from tests.data.fixtures import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _commands():
    found = []
    for page in PAGES:
        text = page.read_text()
        chunks = re.findall(r"```bash\n(.*?)```", text, re.S) + re.findall(r"`(python [^`]+)`", text)
        for chunk in chunks:
            for line in chunk.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].split(" # ")[0].strip()
                for part in line.split("&&"):
                    part = part.strip()
                    m = re.match(r"(?:torchrun .*?)?python ((?:tools|benchmarks)/\w+\.py)(.*)", part) or \
                        re.match(r"torchrun [^\n]*?((?:tools|benchmarks)/\w+\.py)(.*)", part)
                    if m and "RUN" not in part:
                        found.append((page.name, m.group(1), m.group(2)))
    return found


COMMANDS = _commands()
_HELP: dict[str, str] = {}


def _help(script: str) -> str:
    if script not in _HELP:
        args = ["geotiff", "--help"] if script.endswith("make_shards.py") else ["--help"]
        r = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        _HELP[script] = r.stdout + r.stderr
        if script.endswith("make_shards.py"):
            r = subprocess.run([sys.executable, script, "sen2venus", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=300)
            _HELP[script] += r.stdout
    return _HELP[script]


def test_the_docs_have_commands():
    scripts = {s for _, s, _ in COMMANDS}
    assert {"tools/train.py", "tools/probe.py", "tools/make_shards.py", "tools/experiments.py"} <= scripts


@pytest.mark.parametrize("page, script, rest", COMMANDS, ids=[f"{p}:{s}{r[:30]}" for p, s, r in COMMANDS])
def test_command_names_a_script_and_flags_it_accepts(page, script, rest):
    assert (REPO / script).is_file(), f"{page}: {script} does not exist"
    flags = {t.split("=")[0] for t in shlex.split(rest, posix=True) if t.startswith("--")}
    helptext = _help(script)
    missing = sorted(f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", helptext))
    assert not missing, f"{page}: {script} does not accept {missing}"


@pytest.mark.parametrize("cmd", [
    "python tools/train.py --gin gin/latentmim_sa.gin --print_config",
    "python tools/train.py --list_configurables",
])
def test_short_commands_run_as_written(cmd):
    texts = "\n".join(p.read_text() for p in PAGES)
    assert cmd in texts
    r = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
