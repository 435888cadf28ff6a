"""MkDocs hook: the pages keep the links that work in the repository, the site gets links that work there.

The guides link to the front page (``../README.md``), to the committed figures and to source files
outside ``docs/``. In the site the front page is the home page (``index.md``, generated from the
repository's ``README.md``), the figures (``figures/`` and the benchmark figures in
``benchmarks/results/``) are copied to the same paths, and a link to any other
repository file points to ``repo_url`` when ``mkdocs.yml`` sets one (else its text stays, unlinked).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

LINK = r"(?P<label>!?\[(?:[^\[\]]|\[[^\]]*\])*\])\((?P<target>[^)\s]+)\)"
CODE_SPAN = r"(?P<ticks>`+).+?(?P=ticks)"
LINK_OR_CODE = re.compile(f"{LINK}|{CODE_SPAN}", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
FIGURE_TYPES = ("png", "svg", "jpg")
FIGURE_FOLDERS = ("figures", "benchmarks/results")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the front page as ``index.md`` and the committed figures under their repository paths."""
    root = Path(config.config_file_path).resolve().parent
    files.append(File.generated(config, "index.md", abs_src_path=str(root / "README.md")))
    for suffix in FIGURE_TYPES:
        for figure in sorted(path for folder in FIGURE_FOLDERS for path in (root / folder).rglob(f"*.{suffix}")):
            files.append(File.generated(config, figure.relative_to(root).as_posix(), abs_src_path=str(figure)))
    return files


def site_path(repo_path: str, files: Files) -> str | None:
    """The site's file for a repository path, or None where the site has no copy of it."""
    if repo_path in ("README.md", "docs", "docs/README.md"):
        return "index.md"
    candidates = [repo_path, f"{repo_path}/index.md"]
    if repo_path.startswith("docs/"):
        candidates = [path.removeprefix("docs/") for path in candidates]
    return next((path for path in candidates if files.get_file_from_path(path) is not None), None)


def rewrite_links(markdown: str, page_dir: str, src_uri: str, files: Files, repo_url: str | None) -> str:
    """The links of ``markdown`` (a page in the repository folder ``page_dir``, ``src_uri`` in the site)."""

    def replace(match: re.Match[str]) -> str:
        label, target = match.group("label", "target")
        if label is None:  # a code span: its text is not a link
            return match.group(0)
        path, hash_sign, anchor = target.partition("#")
        if not path or re.match(r"^[a-z]+:", path):
            return match.group(0)
        repo_path = posixpath.normpath(posixpath.join(page_dir, path))
        in_site = site_path(repo_path, files)
        if in_site is not None:
            return f"{label}({posixpath.relpath(in_site, posixpath.dirname(src_uri) or '.')}{hash_sign}{anchor})"
        if repo_url:
            return f"{label}({repo_url.rstrip('/')}/blob/main/{repo_path}{hash_sign}{anchor})"
        return match.group(0) if label.startswith("!") else label[1:-1]

    pieces, last = [], 0
    for fence in FENCE.finditer(markdown):
        pieces += [LINK_OR_CODE.sub(replace, markdown[last : fence.start()]), fence.group(0)]
        last = fence.end()
    pieces.append(LINK_OR_CODE.sub(replace, markdown[last:]))
    return "".join(pieces)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """The guides' and the front page's links, as the site lays the files out."""
    src_uri = page.file.src_uri
    page_dir = "" if src_uri == "index.md" else posixpath.dirname(f"docs/{src_uri}")
    return rewrite_links(markdown, page_dir, src_uri, files, config.repo_url)
