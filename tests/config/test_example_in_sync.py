"""config/gateway.example.toml carries every family's sample.toml verbatim: the samples are the one source."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "gateway.example.toml"
SAMPLES = sorted([*ROOT.glob("adapters/*/sample.toml"), *ROOT.glob("gateway/uplinks/**/sample.toml")])


def out_of_sync(sample: str, example: str, name: str) -> str | None:
    """Why `example` does not hold `sample` as one block, with the lines that differ; None if it does."""
    block = sample.strip("\n")
    if block in example:
        return None
    lines = example.splitlines()
    first = block.splitlines()[0]
    fix = (
        f"copy {name} into config/gateway.example.toml in place of its section (the samples are the source: "
        "edit the sample, then copy)"
    )
    if first not in lines:
        return f"{name}: missing from config/gateway.example.toml, got no line {first!r}; {fix}"
    start = lines.index(first)
    theirs = lines[start : start + len(block.splitlines())]
    diff = "\n".join(
        difflib.unified_diff(block.splitlines(), theirs, name, "config/gateway.example.toml", lineterm="", n=0)
    )
    return f"{name}: differs in config/gateway.example.toml (its section from line {start + 1}), got\n{diff}\n{fix}"


def test_there_are_samples_to_compare() -> None:
    assert {p.parent.name for p in SAMPLES} >= {"http_poll", "modbus", "mqtt"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_example_config_holds_each_family_sample_verbatim(sample: Path) -> None:
    problem = out_of_sync(
        sample.read_text(encoding="utf-8"), EXAMPLE.read_text(encoding="utf-8"), str(sample.relative_to(ROOT))
    )
    assert problem is None, problem


def test_a_changed_sample_is_reported_with_its_section_and_the_fix() -> None:
    sample = '# Polls a URL.\n[[adapters]]\nname = "river"\ninterval_s = 600\n'
    example = '[gateway]\nid = "x"\n\n# Polls a URL.\n[[adapters]]\nname = "river"\ninterval_s = 60\n'
    assert out_of_sync(sample, example, "adapters/http_poll/sample.toml") == (
        "adapters/http_poll/sample.toml: differs in config/gateway.example.toml (its section from line 4), got\n"
        "--- adapters/http_poll/sample.toml\n"
        "+++ config/gateway.example.toml\n"
        "@@ -4 +4 @@\n"
        "-interval_s = 600\n"
        "+interval_s = 60\n"
        "copy adapters/http_poll/sample.toml into config/gateway.example.toml in place of its section (the samples "
        "are the source: edit the sample, then copy)"
    )
    assert out_of_sync(sample, "[gateway]\n", "adapters/http_poll/sample.toml") == (
        "adapters/http_poll/sample.toml: missing from config/gateway.example.toml, got no line '# Polls a URL.'; "
        "copy adapters/http_poll/sample.toml into config/gateway.example.toml in place of its section (the samples "
        "are the source: edit the sample, then copy)"
    )
    assert out_of_sync(sample, example.replace("60\n", "600\n"), "x") is None
