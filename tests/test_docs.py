"""The documentation: the MkDocs site builds without a warning, and the front-page README stays short and linked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "index.html").is_file()
    reference = site / "reference" / "config" / "index.html"
    assert reference.is_file(), "no API reference page for facefoundry.config"
    # mkdocstrings rendered the module's objects, not just the page title
    assert 'id="facefoundry.config' in reference.read_text(encoding="utf-8")


def _relative_links(markdown: str) -> list[str]:
    """Targets of markdown links and images that are not web addresses or in-page anchors."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)  # fenced code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, flags=re.I)]


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.count("\n") + (0 if readme.endswith("\n") else 1)
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move text to docs/"
    links = _relative_links(readme)
    assert links, "README.md links no file (expected at least the docs pages and images)"
    missing = [t for t in links if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
