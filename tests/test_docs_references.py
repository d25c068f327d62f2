"""The repository stands alone (issue 17, item 1): no reference to files outside it (the design card
and paper notes the project started from), and every cited section of docs/method.md (``method.md, "The spiking core"`` and the like) in code,
recipes or docs names a heading that docs/method.md has."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("DESIGN" + ".md", "PAPER" + ".md")          # spelled apart so this file does not match itself
CITE = re.compile(r'method\.md[^a-zA-Z"\n]{0,4}"([A-Z][^"\n]*)"')


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        path = ROOT / name
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".yml", ".c", ".toml", ".sh", ".txt", ""}:
            try:
                yield name, path.read_text()
            except UnicodeDecodeError:
                continue


def test_no_reference_to_files_outside_the_repository():
    found = [f"{name}:{i + 1}" for name, text in _tracked_text_files()
             for i, line in enumerate(text.splitlines()) if any(o in line for o in OUTSIDE)]
    assert not found, f"references to files that are not in the repository: {found}"


def test_cited_method_sections_exist():
    headings = {line.lstrip("#").strip() for line in (ROOT / "docs/method.md").read_text().splitlines()
                if line.startswith("#")}
    cited = {(name, m.group(1)) for name, text in _tracked_text_files() for m in CITE.finditer(text)}
    assert len(cited) > 10                                  # the docstrings do point at the method
    missing = sorted((n, s) for n, s in cited if s not in headings and s != "<section>" and not s.endswith("_") and n != "tests/test_docs_references.py")
    assert not missing, f"docs/method.md has no such section: {missing}"
