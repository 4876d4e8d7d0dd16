import subprocess
import sys
from pathlib import Path

import pytest

from dap_model.cli import _commands, main

DAP = Path(sys.executable).with_name("dap")


@pytest.mark.slow
def test_console_script_help():
    out = subprocess.run([str(DAP), "--help"], capture_output=True, text=True, check=True)
    assert "usage: dap" in out.stdout


@pytest.mark.parametrize("name", [m.NAME for m in _commands()])
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"usage: dap {name}" in capsys.readouterr().out


def test_config_command_prints_and_writes(tmp_path, capsys):
    assert main(["config", "--profile", "test", "--set", "train.steps=5"]) == 0
    assert "steps: 5" in capsys.readouterr().out
    assert main(["config", "--profile", "test", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "config.resolved.yaml").is_file()


@pytest.mark.slow
def test_bad_knob_is_one_line_error_nonzero_exit():
    out = subprocess.run(
        [str(DAP), "config", "--profile", "test", "--set", "train.steps=abc"],
        capture_output=True, text=True,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.steps" in lines[0], out.stderr
