"""Cross-field problems keep one key path each, one line each, wherever they are shown."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import model_validator

from gateway.configbase import ConfigProblems, Section, format_validation_error


class _Window(Section):
    start_s: float = 0
    end_s: float = 1
    step_s: float = 1

    @model_validator(mode="after")
    def _together(self) -> _Window:
        problems = []
        if self.end_s <= self.start_s:
            problems.append(("end_s", f"must be after start_s ({self.start_s:g}), got {self.end_s:g}"))
        if self.step_s > self.end_s - self.start_s:
            problems.append(("step_s", f"must fit between start_s and end_s, got {self.step_s:g}"))
        if problems:
            raise ConfigProblems(problems)
        return self


def test_each_problem_keeps_its_key_path_on_a_line_of_its_own() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        _Window.model_validate({"start_s": 5, "end_s": 2, "step_s": 4})
    assert format_validation_error(info.value, _Window, "adapters[1].window") == [
        "adapters[1].window.end_s: must be after start_s (5), got 2",
        "adapters[1].window.step_s: must fit between start_s and end_s, got 4",
    ]


def test_the_exception_text_is_one_line_per_problem_too() -> None:
    exc = ConfigProblems([("end_s", "must be after start_s (5), got 2"), ("", "needs a window, got none")])
    assert str(exc).splitlines() == ["end_s: must be after start_s (5), got 2", "needs a window, got none"]
