"""``optimizer ven | ven3 | oscp`` reach their adapters' own parsers."""

from __future__ import annotations

import pytest

from optimizer.cli import main


@pytest.mark.parametrize(("command", "flag"), [("ven", "--ven-name"), ("ven3", "--token-file"),
                                               ("oscp", "--group")])
def test_grid_commands_delegate(command: str, flag: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert flag in capsys.readouterr().out


def test_grid_commands_reject_missing_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["oscp"])
    assert exc.value.code == 2
    assert "required: --token-file, --group" in capsys.readouterr().err
