"""The shape of ``kernels/``: small files, imports only torch/triton (never ``crossscale_kit``), and every pointer
into docs/KERNELS.md lands on a section that exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "kernels").rglob("*.py"))
DOC = ROOT / "docs" / "KERNELS.md"


def test_no_kernels_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in FILES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_kernels_imports_only_torch_triton_and_itself():
    allowed = {"torch", "triton", "crossscale_kernels", "__future__", "os", "warnings"}
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.relative_to(ROOT)} imports {name}"


def test_docstring_pointers_to_the_kernels_doc_name_real_sections():
    headings = {re.sub(r"\s*\(.*", "", h).strip() for h in re.findall(r"^#+ (.+)$", DOC.read_text(), flags=re.M)}
    found = 0
    for path in FILES:
        for section in re.findall(r'docs/KERNELS\.md\s+\("([^"]+)"\)', path.read_text()):
            assert section in headings, f"{path.relative_to(ROOT)} points at a missing section {section!r}"
            found += 1
    assert found >= 3  # the kernels, the memory plan and the torch form point at their sections
