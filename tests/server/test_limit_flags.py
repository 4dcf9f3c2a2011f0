"""``morphnas serve``'s ceiling flags: their help quotes the dataclass defaults, and each one
reaches the field it names."""

from __future__ import annotations

import pytest

from morphnas.cli import build_parser
from morphnas.options import UsageError
from morphnas.server.limit_flags import FLAGS, limit_options


def field(options: dict[str, object], target: str) -> object:
    head, *path = target.split(".")
    value = options[head]
    for name in path:
        value = getattr(value, name)
    return value


@pytest.mark.parametrize("flag", FLAGS, ids=lambda f: f.flag)
def test_a_flag_left_out_keeps_the_documented_default(flag) -> None:  # type: ignore[no-untyped-def]
    options = limit_options(build_parser().parse_args(["serve"]), 100_000)
    assert field(options, flag.target) == flag.default * flag.unit


@pytest.mark.parametrize("flag", FLAGS, ids=lambda f: f.flag)
def test_a_flag_sets_its_field(flag) -> None:  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(["serve", flag.flag, "3"])
    assert field(limit_options(args, 100_000), flag.target) == 3 * flag.unit


def test_a_ceiling_must_be_positive() -> None:
    args = build_parser().parse_args(["serve", "--max-params", "0"])
    with pytest.raises(UsageError, match="--max-params"):
        limit_options(args, 100_000)
