"""Family subcommands come from the `edgegw.cli` entry-point group; the runtime's CLI names no family."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from adapters.modbus import cli as modbus_cli
from gateway import __version__, cli
from tests.support.entry_points import declared_entry_points


def test_the_declared_cli_entry_points_resolve_to_the_families_modules() -> None:
    declared = {ep.name: ep for ep in declared_entry_points(cli.CLI_GROUP)}
    assert {name: ep.value for name, ep in declared.items()} == {
        "modbus": "adapters.modbus.cli:add_parsers",
        "locker": "adapters.locker.cli:add_parsers",
        "scanner": "adapters.scanner.cli:add_parsers",
    }
    assert declared["modbus"].load() is modbus_cli.add_parsers


def test_the_installed_package_has_the_declared_entry_points() -> None:
    # `make venv` reinstalls when pyproject.toml changes (CI always does); a checkout whose venv predates
    # the group is told how to catch up rather than failing on something the code cannot fix
    installed = {(ep.name, ep.value) for ep in entry_points(group=cli.CLI_GROUP)}
    declared = {(ep.name, ep.value) for ep in declared_entry_points(cli.CLI_GROUP)}
    if not installed:
        pytest.skip(
            f"the installed edgegw predates the {cli.CLI_GROUP} entry points; reinstall: make venv "
            "(pip install -e '.[test]')"
        )
    assert installed == declared


def test_edgegw_gets_the_family_commands_from_the_entry_points() -> None:
    parser = cli.build_parser(declared_entry_points(cli.CLI_GROUP))
    args = parser.parse_args(["probe", "modbus", "--port", "/dev/ttyUSB0", "--units", "1-3"])
    assert (args.func, args.units) == (modbus_cli.run_probe, [1, 2, 3])
    args = parser.parse_args(["read", "--profile", "generic/xy-md02", "--port", "/dev/ttyUSB0", "--unit", "1"])
    assert args.func is modbus_cli.run_read
    with pytest.raises(SystemExit):  # without the group, no family commands
        cli.build_parser([]).parse_args(["probe", "modbus", "--port", "/dev/ttyUSB0"])


def test_a_family_whose_commands_cannot_load_costs_only_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    broken = EntryPoint(name="acme", value="adapters.acme_missing.cli:add_parsers", group=cli.CLI_GROUP)
    parser = cli.build_parser([broken, *declared_entry_points(cli.CLI_GROUP)])
    assert parser.parse_args(["version"]).func is cli.cmd_version
    assert parser.parse_args(["probe", "modbus", "--port", "/dev/ttyUSB0"]).func is modbus_cli.run_probe
    assert capsys.readouterr().err == (
        "edgegw: commands of acme (adapters.acme_missing.cli:add_parsers) not available, got ModuleNotFoundError: "
        "No module named 'adapters.acme_missing'; reinstall edgegw\n"
    )


def test_the_runtime_cli_names_no_family() -> None:
    source = Path(cli.__file__).read_text()
    assert "import adapters" not in source and "from adapters" not in source and "modbus" not in source
    assert isinstance(cli.build_parser([]), argparse.ArgumentParser)


def test_version_answers_as_a_flag_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"edgegw {__version__}\n"
