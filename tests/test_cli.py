from __future__ import annotations

import pytest

from chronorec.cli import COMMAND_MODULES, build_parser, main


def test_every_subcommand_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = list(sub.choices)  # type: ignore[union-attr]
    assert len(names) == len(COMMAND_MODULES)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: chronorec " + name in capsys.readouterr().out
