"""Render a benchmark result (the dict written to bench.json) as Markdown tables, and write a study's record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def command_line(script: str, argv: list[str] | None) -> str:
    """How a benchmark script was called: ``python benchmarks/<script's name>`` and ``argv`` (None: the process's)."""
    return " ".join(["python", f"benchmarks/{Path(script).name}", *(argv if argv is not None else sys.argv[1:])])


def write_record(folder: Path, stem: str, result: dict[str, Any], text: str) -> str:
    """Write ``<stem>.json`` (the record) and ``<stem>.md`` (``text``) into ``folder``; return ``text``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (folder / f"{stem}.md").write_text(text)
    return text


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def _ratio(comparison: dict[str, Any]) -> str:
    low, high = comparison["ratio_range"]
    return f"{comparison['ratio']:.2f}x ({low:.2f}-{high:.2f})"


def _target(comparison: dict[str, Any]) -> str:
    return "—" if comparison["target"] is None else f"{comparison['op']} {comparison['target']:g}"


def _met(comparison: dict[str, Any]) -> str:
    return {True: "yes", False: "**no**", None: "—"}[comparison["met"]]


def _memory(case: dict[str, Any], name: str) -> str:
    memory = case.get("memory", {}).get(name)
    if not memory:
        return "—"
    text = f"{memory['peak_rss_mib']:.0f} (+{memory['rss_increase_mib']:.0f})"
    if "gpu_peak_mib" in memory:
        text += f"; GPU {memory['gpu_peak_mib']:.0f}"
    return text


def _flags(flags: dict[str, Any] | None) -> str:
    if not flags:
        return ""
    yes = {True: "yes", False: "no"}
    return (
        f" CPU flags: AMX (amx_bf16) {yes[flags['amx_bf16']]}, AVX512-BF16 {yes[flags['avx512_bf16']]}; "
        f"`precision=\"auto\"` on the CPU: {flags['auto_on_cpu']}."
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _projections(case: dict[str, Any]) -> dict[str, str]:
    """One note per projected dataset: each contender's projected wall time."""
    labels = next(iter(case["projected_s"].values()), {})
    return {
        f"projected {label}": ", ".join(f"{name} {_minutes(p[label])}" for name, p in case["projected_s"].items())
        for label in labels
    }


def markdown(result: dict[str, Any]) -> str:
    """The ratio table (case, comparison, ratio, target, met?) and the absolute times and memory."""
    m = result["machine"]
    load = result["load_average_1min"]
    gpu = f", {m['gpu']}" if "gpu" in m else ""
    partial = "" if result["complete"] else " **(interrupted: not all cases ran)**"
    lines = [
        f"Command: `{result['command']}` ({result['started']}, {result['seconds']:.0f} s in all){partial}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads: {m['torch_threads']}{gpu}; "
        f"torch {m['torch']}, device `{m['device']}`; 1-minute load average {load['start']:.1f} at the start, "
        f"{load['end']:.1f} at the end.{_flags(result.get('cpu_flags'))}",
        "",
        "| case | compared | ratio (range over rounds) | target | met? | median time per call |",
        "|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        if case.get("error"):
            lines.append(f"| {case['title']} | not run: {case['error']} | — | — | — | — |")
            continue
        for c in case["comparisons"]:
            times = f"{_seconds(case['median_s'][c['numerator']])} vs {_seconds(case['median_s'][c['denominator']])}"
            lines.append(
                f"| {case['title']} | {c['label']} | {_ratio(c)} | {_target(c)} | {_met(c)} | {times} |"
            )
    lines += [
        "",
        "| case | contender | median per call | per image | images/s | peak RSS MiB (+ during the call) |",
        "|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        for name, seconds in case.get("median_s", {}).items():
            lines.append(
                f"| {case['title']} | {name} | {_seconds(seconds)} | {_seconds(seconds / case['items'])} "
                f"| {case['items'] / seconds:.1f} | {_memory(case, name)} |"
            )
    extras = [(case["title"], case["notes"]) for case in result["cases"] if case.get("notes")]
    extras += [(case["title"], _projections(case)) for case in result["cases"] if case.get("projected_s")]
    extras += [(case["title"], {"what bounds the ratio": case["targets_note"]})
               for case in result["cases"] if case.get("targets_note")]
    if extras:
        lines += ["", "Notes:", ""]
        lines += [
            f"- {title}: " + "; ".join(f"{key} = {value}" for key, value in notes.items()) for title, notes in extras
        ]
    return "\n".join(lines) + "\n"
