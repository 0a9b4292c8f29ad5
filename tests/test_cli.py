"""The command line: every command is a row of one table, and one wrapper turns the errors a
user can fix into ``tinygradlm COMMAND: message`` and exit status 1."""

import pytest

from tinygradlm.cli import COMMANDS, build_parser, main


def test_every_command_of_the_table_is_on_the_command_line():
    parser = build_parser()
    for name in COMMANDS:
        assert parser.parse_args(_minimal_args(name)).command == name


def _minimal_args(name):
    required = {
        "prepare": ["--out", "x"],
        "report": ["x"],
        "export": ["--ckpt", "x", "--out", "y"],
        "eval": ["--ckpt", "x", "--data", "y"],
        "sample": ["--ckpt", "x"],
        "plot": ["x"],
        "golden": ["--out", "x"],
    }
    return [name, *required.get(name, [])]


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--ckpt", "{missing}", "--data", "{missing}"],
        ["export", "--ckpt", "{missing}", "--out", "{tmp}/out"],
        ["sample", "--ckpt", "{missing}"],
        ["plot", "{missing}"],
        ["train", "--config", "{missing}.toml"],
        ["train", "max_step=3"],
        ["prepare", "--config", "{missing}.toml", "--out", "{tmp}/out"],
    ],
)
def test_a_user_error_is_one_line_and_status_1(tmp_path, capsys, argv):
    values = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    code = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"tinygradlm {argv[0]}: ") and "Traceback" not in err, err
