"""Every reference in README.md and the docs/ pages points at something that exists, and the pages
read as a reference: short paragraphs, tables that fit a page, no history (that is CHANGELOG.md).

The pages are read as Markdown: link targets (a file, a folder, a heading anchor), and the code
spans and fenced blocks, where a reference is a repository path, a module or attribute
(``lafam_utils.x.y``, ``lu.x``), a ``make`` target, a ``python`` command (its script or ``-m``
module), a parameter set, a numbered notebook, a benchmark case id (``benchmarks/run.py``'s
registry) or a registered method name. A failure lists each stale reference with its page and line.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from lafam_utils.notebook.paths import REPO_ROOT

READERS_OWN_FILES = {
    "my_methods.py": "docs/adding-a-method.md",
    "notebooks/params/mine.yaml": "docs/adding-a-method.md",
}
"""Files a page has the reader write (they do not exist in the repository), with that page."""

PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}|\*|\.\.\.|\bNN\b|XXXX")
LINK_OR_CODE = re.compile(
    r"(?P<label>!?\[(?:[^\[\]]|\[[^\]]*\])*\])\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)|(?P<ticks>`+)(?P<code>.+?)(?P=ticks)",
    re.S,
)
FENCE = re.compile(r"^(?P<fence>```|~~~)(?P<lang>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
INDENTED_BLOCK = re.compile(r"(?:(?<=\n\n)|\A)((?:(?: {4}|\t)[^\n]*\n|[ \t]*\n)+)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
PATH_TOKEN = re.compile(r"[\w.@~$<>{}*+-]*(?:/[\w.@~$<>{}*+,-]*)+")
MODULE = re.compile(r"\blafam_utils(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(lafam_utils(?:\.\w+)*)[ \t]+import[ \t]+\(?([\w \t,]+)", re.M)
LU_ATTRIBUTE = re.compile(r"(?<![\w.])lu((?:\.[A-Za-z_]\w*)+)")
MAKE = re.compile(r"(?<![\w-])make\s+(?P<target>[a-z][\w-]*)(?P<args>(?:\s+[A-Z_]+=(?:\"[^\"]*\"|'[^']*'|\S+))*)")
PYTHON = re.compile(r"(?<![\w-])(?:\S*/)?python3?\s+(?:-m\s+(?P<module>[\w.]+)|(?P<script>[\w./-]+\.py))")
CASES_ARGUMENT = re.compile(r"--cases((?:\s+[a-z0-9][\w-]*)+)")
PARAMETER_SET = re.compile(r"(?<![\w/.-])([\w-]+\.yaml)\b")
NOTEBOOK = re.compile(r"(?<![\w/])(\d\d_[a-z]+(?:_[a-z]+)*)(?:\.ipynb)?\b")
EXPLAINER_CALL = re.compile(r"\b(?:explainer|explainer_class|method_title)\(\s*[\"']([^\"']+)[\"']")
METHODS_LIST = re.compile(r"\bmethods\s*[:=]\s*\[([^\]]*)\]")
PAIR = re.compile(r"\(\s*\"([\w-]+)\"\s*,\s*\"([\w-]+)\"\s*\)")
DEFINED_METHOD = re.compile(r"^\s*name\s*=\s*\"([\w-]+)\"", re.M)
MAX_PARAGRAPH_WORDS = 120
MAX_TABLE_ROW = 200  # characters of a table row as it reads (link targets left out)
HISTORY = re.compile(r"previous release|previously|earlier version|\b20\d\d-\d\d-\d\d\b", re.I)
HYPHENATED = re.compile(r"(?<![\w./-])[a-z0-9]+(?:-(?:[a-z0-9]+|\{[a-z0-9,]+\}))+(?![\w/.-])")


@dataclass(frozen=True)
class Stale:
    """A reference that points at nothing: where it is, what it names and why it fails."""

    page: str
    line: int
    reference: str
    reason: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.reference!r}: {self.reason}"


@dataclass(frozen=True)
class Code:
    """A code span or block of a page: its text, the line it starts on, and whether it is Python."""

    text: str
    line: int
    python: bool = False


def pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parts(text: str) -> tuple[list[tuple[str, int]], list[Code]]:
    """The link targets (with their lines) and the code (spans and blocks) of a Markdown page."""
    links, code, prose = [], [], []
    last = 0
    for fence in FENCE.finditer(text):
        prose.append((last, text[last : fence.start()]))
        lang = fence.group("lang").strip().lower()
        code.append(Code(fence.group("body"), line_at(text, fence.start("body")), python=lang in ("python", "py")))
        last = fence.end()
    prose.append((last, text[last:]))
    for start, chunk in prose:
        for block in INDENTED_BLOCK.finditer(chunk):
            if block.group(1).strip():
                code.append(Code(block.group(1), line_at(text, start + block.start(1))))
        for match in LINK_OR_CODE.finditer(chunk):
            line = line_at(text, start + match.start())
            if match.group("label") is not None:
                links.append((match.group("target"), line))
            else:
                code.append(Code(match.group("code"), line))
    return links, code


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = FENCE.sub("", page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(text):
        anchor = github_anchor(match.group(2))
        found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return frozenset(found)


@cache
def tracked_top_level() -> frozenset[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return frozenset(name.split("/")[0] for name in files.splitlines())


@cache
def ignored(path: str) -> bool:
    """Whether .gitignore leaves ``path`` out (generated outputs, the datasets under data/)."""
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT, check=False)
    return done.returncode == 0


@cache
def output_folders() -> tuple[str, ...]:
    """The folders the parameter sets write figures and results to (a run creates them)."""
    import yaml

    sets = [yaml.safe_load(path.read_text()) or {} for path in (REPO_ROOT / "notebooks" / "params").glob("*.yaml")]
    folders = {str(params[key]) for params in sets for key in ("figures_dir", "results_dir") if key in params}
    return tuple(sorted(folders))


@cache
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


@cache
def case_ids() -> frozenset[str]:
    """Every benchmark case id, on the CPU and on CUDA, at every size."""
    from benchmarks.cases import Settings
    from benchmarks.run import all_cases

    settings = [Settings(), Settings(device="cuda"), Settings(large=True), Settings(tiny=True)]
    return frozenset(case.id for each in settings for case in all_cases(each))


def expand_braces(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    return [word for choice in match.group(1).split(",") for word in expand_braces(head + choice + tail)]


def resolves(dotted: str) -> str | None:
    """None if ``dotted`` names a module, or an attribute reached from one; else why not."""
    names = dotted.split(".")
    for split in range(len(names), 0, -1):
        module_name = ".".join(names[:split])
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            continue
        obj = importlib.import_module(module_name)
        for name in names[split:]:
            if not hasattr(obj, name):
                return f"{'.'.join(names[: names.index(name)])} has no attribute {name!r}"
            obj = getattr(obj, name)
        return None
    return "no such module"


def method_problem(name: str, defined_here: set[str]) -> str | None:
    from lafam_utils.explainers import explainer_class
    from lafam_utils.explainers.registry import method_key

    if method_key(name) in {method_key(x) for x in defined_here}:
        return None
    try:
        explainer_class(name)
    except ValueError as err:
        return f"not a registered method ({err})"
    return None


def path_problem(path: str) -> str | None:
    """None if a repository path exists, or is one that a run writes or the reader provides; else why not."""
    path = path.rstrip(".,:;")
    if PLACEHOLDER.search(path):
        path = PLACEHOLDER.split(path)[0].rsplit("/", 1)[0]
    if not path or path.split("/")[0] not in tracked_top_level() or path in READERS_OWN_FILES:
        return None
    if (REPO_ROOT / path).exists() or any(path == out or path.startswith(f"{out}/") for out in output_folders()):
        return None
    return None if ignored(path) else "no such file or folder in the repository"


def link_problems(target: str, page: Path, folder: Path) -> Iterator[str]:
    """Why a link of ``page`` (relative paths from ``folder``) points at nothing, if it does."""
    if re.match(r"^[a-z]+:", target):
        return
    path, _, anchor = target.partition("#")
    file = (folder / path).resolve() if path else page
    if not file.exists():
        yield "the link's target does not exist"
    elif anchor and file.suffix == ".md" and anchor not in anchors(file):
        yield f"{file.name} has no heading with the anchor #{anchor}"


Finding = tuple[int, str, str]
"""A stale reference inside a piece of code: its offset there, the reference and the reason."""


def path_findings(text: str) -> Iterator[Finding]:
    urls = [url.span() for url in re.finditer(r"\S+://\S+", text)]
    for token in PATH_TOKEN.finditer(text):
        inside_url = any(start <= token.start() < end for start, end in urls)
        if inside_url or token.group().startswith(("/", "~", "$", ".../")):
            continue
        problem = path_problem(token.group())
        if problem:
            yield token.start(), token.group(), problem


def module_findings(text: str) -> Iterator[Finding]:
    for dotted in MODULE.finditer(text):
        problem = resolves(dotted.group())
        if problem:
            yield dotted.start(), dotted.group(), problem
    for imported in FROM_IMPORT.finditer(text):
        for name in (x.strip() for x in imported.group(2).split(",")):
            problem = resolves(f"{imported.group(1)}.{name}") if name else None
            if problem:
                yield imported.start(), f"{imported.group(1)}.{name}", problem
    for attribute in LU_ATTRIBUTE.finditer(text):
        problem = resolves(f"lafam_utils{attribute.group(1)}")
        if problem:
            yield attribute.start(), attribute.group(), problem


def command_findings(text: str) -> Iterator[Finding]:
    for make in MAKE.finditer(text):
        if make.group("target") not in make_targets():
            known = ", ".join(sorted(make_targets()))
            yield make.start(), f"make {make.group('target')}", f"not a target of the Makefile ({known})"
        for value in re.findall(r"PARAMS=(\S+)", make.group("args")):
            problem = path_problem(value)
            if problem:
                yield make.start(), value, problem
    for python in PYTHON.finditer(text):
        module, script = python.group("module", "script")
        if module and (importlib.util.find_spec(module.split(".")[0]) is None or resolves(module)):
            yield python.start(), f"python -m {module}", "no such module"
        if script and not (REPO_ROOT / script).is_file():
            yield python.start(), f"python {script}", "no such script in the repository"
    for arguments in CASES_ARGUMENT.finditer(text):
        for prefix in arguments.group(1).split():
            if not any(case.startswith(prefix) for case in case_ids()):
                yield arguments.start(), f"--cases {prefix}", "no benchmark case id starts so"


def file_name_findings(text: str) -> Iterator[Finding]:
    for name in PARAMETER_SET.finditer(text):
        if f"notebooks/params/{name.group(1)}" in READERS_OWN_FILES:
            continue
        if not (REPO_ROOT / "notebooks" / "params" / name.group(1)).is_file():
            yield name.start(), name.group(1), "no such parameter set in notebooks/params/"
    for name in NOTEBOOK.finditer(text):
        if not (REPO_ROOT / "notebooks" / f"{name.group(1)}.ipynb").is_file():
            yield name.start(), name.group(1), "no such notebook in notebooks/"


def name_findings(code: Code, defined_methods: set[str]) -> Iterator[Finding]:
    """Benchmark case ids and method names."""
    families = {case.split("-")[0] for case in case_ids() if "-" in case}
    for word in HYPHENATED.finditer(code.text):
        if word.group().split("-")[0] not in families:
            continue
        for name in expand_braces(word.group()):
            if name not in case_ids() and method_problem(name, defined_methods):
                yield word.start(), name, "neither a benchmark case id (benchmarks/run.py) nor a registered method"
    methods = [(call.start(), call.group(1)) for call in EXPLAINER_CALL.finditer(code.text)]
    for listed in METHODS_LIST.finditer(code.text):
        methods += [(listed.start(), x.strip().strip("\"'")) for x in listed.group(1).split(",") if x.strip()]
    if code.python:
        methods += [(pair.start(), pair.group(2)) for pair in PAIR.finditer(code.text)]
    for offset, method in methods:
        problem = method_problem(method, defined_methods)
        if problem:
            yield offset, method, problem


def stale_references(page: Path, name: str | None = None, folder: Path | None = None) -> list[Stale]:
    """The stale references of a page, reported as ``name`` (default: its path in the repository), its
    links taken from ``folder`` (default: its own)."""
    text = page.read_text()
    links, code = parts(text)
    defined_methods = {name for block in code if block.python for name in DEFINED_METHOD.findall(block.text)}
    name = name or relative(page)
    folder = folder or page.parent
    found = [
        Stale(name, line, target, reason) for target, line in links for reason in link_problems(target, page, folder)
    ]
    for piece in code:
        findings = [
            *path_findings(piece.text), *module_findings(piece.text), *command_findings(piece.text),
            *file_name_findings(piece.text), *name_findings(piece, defined_methods),
        ]
        for offset, reference, reason in findings:
            found.append(Stale(name, piece.line + piece.text.count("\n", 0, offset), reference, reason))
    return sorted(set(found), key=lambda stale: (stale.line, stale.reference))


@pytest.mark.parametrize("page", pages(), ids=relative)
def test_every_reference_of_the_page_exists(page):
    stale = stale_references(page)
    assert not stale, f"{len(stale)} stale reference(s):\n" + "\n".join(map(str, stale))


def diary_findings(page: Path, name: str | None = None) -> list[Stale]:
    """Paragraphs (and list items) over ``MAX_PARAGRAPH_WORDS``, wider tables, and history."""
    name = name or relative(page)
    text = page.read_text()
    prose = FENCE.sub(lambda fence: re.sub(r"[^\n]", " ", fence.group()), text)  # offsets kept
    found = []
    for block in re.finditer(r"(?:[^\n]+\n?)+", prose):
        line = line_at(text, block.start())
        if block.group().startswith(("|", "    ", "\t", "#")):
            for offset, row in enumerate(block.group().splitlines()):
                width = len(re.sub(r"\]\([^)]*\)", "]", row))
                if row.startswith("|") and width > MAX_TABLE_ROW:
                    found.append(Stale(name, line + offset, row[:40], f"a table row of {width} characters"))
            continue
        for item in re.finditer(r"(?:^|\n)(?=[-*] |\d+\. )|\A", block.group()):
            rest = block.group()[item.end() :]
            words = len(re.sub(r"^(?:[-*]|\d+\.) ", "", re.split(r"\n(?=[-*] |\d+\. )", rest)[0]).split())
            if words > MAX_PARAGRAPH_WORDS:
                start = line + block.group().count("\n", 0, item.end())
                found.append(Stale(name, start, rest[:40], f"a paragraph of {words} words"))
    for match in HISTORY.finditer(prose):
        found.append(Stale(name, line_at(text, match.start()), match.group(), "history: CHANGELOG.md"))
    return found


@pytest.mark.parametrize("page", pages(), ids=relative)
def test_the_page_is_a_reference_not_a_diary(page):
    found = diary_findings(page)
    assert not found, f"{len(found)} finding(s):\n" + "\n".join(map(str, found))


def test_the_readers_files_are_named_on_their_page_and_absent_from_the_repository():
    for file, page in READERS_OWN_FILES.items():
        assert file in (REPO_ROOT / page).read_text() and not (REPO_ROOT / file).exists()


BROKEN = """# A page

[a missing page](missing.md), [a missing heading](#no-such-heading)

`lafam_utils/nope.py` `lafam_utils.nope` `lafam_utils.hooks.nope` `lu.nope` `make nope`
`python -m lafam_utils.nope` `python benchmarks/nope.py` `nope.yaml` `09_nope` `gpu-nope`

    make bench BENCH_ARGS="--cases nope"

```python
lu.explainer("no-such-method", model)
lu.evaluate(data, [("shapes-supervised", "no-such-pair")])
```

```yaml
methods: [lafam, no-such-listed]
```
"""

SOUND = """# A page

[the front page](../README.md#quick-start), [this page](#a-page)

`lafam_utils/hooks.py` `lafam_utils.hooks.capture` `lu.load_model` `lu.datasets.VOC2012.download` `make test`
`python -m lafam_utils.notebook.runner` `python benchmarks/run.py` `demo.yaml` `05_metrics` `gpu-forward`
`gpu-explainers-{fp32,tf32}` `lafam-magnitude` `figures/<name>_synthetic.png` `data/voc/VOCdevkit/`
`figures/ssl/fig1.png` `my_methods.py` `https://example.org/lafam_utils/nope.py`

    make run PARAMS=notebooks/params/smoke.yaml
    make bench BENCH_ARGS="--cases gpu bf16-relax"

```python
from lafam_utils.report.summary import to_markdown, paper_table
lu.explainer("channel-max", model)
name = "channel-max"
```

```yaml
methods: [lafam, fem, channel-max]
```
"""


def test_the_check_finds_each_kind_of_stale_reference(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(BROKEN)
    (tmp_path / "README.md").write_text("# Front page")
    found = {(stale.line, stale.reference) for stale in stale_references(page, "page.md")}
    assert found == {
        (3, "missing.md"), (3, "#no-such-heading"),
        (5, "lafam_utils/nope.py"), (5, "lafam_utils.nope"), (5, "lafam_utils.hooks.nope"), (5, "lu.nope"),
        (5, "make nope"), (6, "python -m lafam_utils.nope"), (6, "lafam_utils.nope"),
        (6, "python benchmarks/nope.py"), (6, "benchmarks/nope.py"), (6, "nope.yaml"), (6, "09_nope"), (6, "gpu-nope"),
        (8, "--cases nope"),
        (11, "no-such-method"), (12, "no-such-pair"), (16, "no-such-listed"),
    }


def test_the_check_accepts_sound_references(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(SOUND)
    assert stale_references(page, "docs/page.md", folder=REPO_ROOT / "docs") == []


def test_the_diary_check_finds_long_paragraphs_wide_tables_and_history(tmp_path):
    page = tmp_path / "page.md"
    long_item = "- " + "word " * 121
    short_item = "- " + "word " * 120
    row = "| " + "x" * 200 + " |"
    code = "```\n" + "code " * 200 + "\n```"
    page.write_text(f"# A page\n\n{long_item}\n{short_item}\n\n{row}\n\n{code}\n\nAs the previous release did.\n")
    found = {(stale.line, stale.reason) for stale in diary_findings(page, "page.md")}
    assert found == {
        (3, "a paragraph of 121 words"), (6, "a table row of 204 characters"), (12, "history: CHANGELOG.md"),
    }
