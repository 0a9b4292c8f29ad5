"""The command line a newcomer expects: ``--help`` describes every command with its defaults and
an example that parses, ``--version`` prints the package's version, a misspelled command, flag or
setting names the closest known one (with the command's own usage, on stderr, status 2), and
``--ckpt`` takes a run directory's newest complete checkpoint."""

import argparse
import shlex
from pathlib import Path

import pytest

import tinygradlm
from tinygradlm.checkpoint import MANIFEST_FILE, CheckpointError
from tinygradlm.checkpoint.load import checkpoint_in
from tinygradlm.cli import COMMANDS, build_parser, main
from tinygradlm.schema import Rule, check_table
from tinygradlm.train import load_config, load_finetune_config


def parse_error(capsys, argv):
    """stderr of a command line that argparse refuses (it exits with status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    # pyproject.toml and tinygradlm.__version__ carry the same version
    assert capsys.readouterr().out.strip() == f"tinygradlm {tinygradlm.__version__}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_a_description_defaults_and_an_example(capsys, name):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    command = COMMANDS[name]
    assert command.description and command.example.startswith(f"tinygradlm {name}")
    assert " ".join(command.description.split()) in " ".join(text.split())
    assert f"example:\n  {command.example}" in text
    # every option with a value to show shows it: seed 0, temperature 1.0, batch size 8, ...
    parser = _subparser(name)
    shown = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            continue  # nothing to show: the help says what absence means, or a switch
        assert f"(default: {default})" in shown or "default" in action.help, action.dest


def _subparser(name):
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices[name]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_example_parses_with_known_settings(name):
    argv = shlex.split(COMMANDS[name].example)[1:]
    args = build_parser().parse_args(argv)
    assert args.command == name
    if name == "train":  # its KEY=VALUE settings are known keys with valid values
        config = load_config(args.config, args.overrides)
        assert config.max_steps == 200 and str(config.out_dir) == "runs/demo/train"
    if name == "finetune":
        config = load_finetune_config(
            args.config, args.overrides, init_from=args.init_from, data=args.data
        )
        assert config.lora_rank == 8 and str(config.out_dir) == "runs/sft"


def test_a_misspelled_setting_names_the_closest_key():
    rules = {"max_steps": Rule("int"), "warmup_steps": Rule("int"), "lr": Rule("number")}
    (problem,) = check_table({"max_step": 10}, rules)
    assert problem.text.endswith("; did you mean max_steps?")
    (problem,) = check_table({"model": 1}, {"n_layer": Rule("int")}, "model.")
    assert "did you mean" not in problem.text  # nothing close: no guess
    (problem,) = check_table({"n_layr": 2}, {"n_layer": Rule("int")}, "model.")
    assert problem.text.endswith("did you mean model.n_layer?")


def test_a_misspelled_override_on_the_command_line_says_did_you_mean(capsys):
    assert main(["train", "max_step=10"]) == 1
    err = capsys.readouterr().err
    assert "unknown key max_step " in err and err.rstrip().endswith("did you mean max_steps?")


def test_a_settings_file_gets_the_same_did_you_mean(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('preset = "tiny"\nwarmup_step = 3\n', encoding="utf-8")
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(config) in err and "did you mean warmup_steps?" in err


def test_a_misspelled_flag_prints_the_command_usage_and_the_closest_flag(capsys):
    err = parse_error(capsys, ["sample", "--ckpt", "x", "--max-new-token", "3"])
    assert err.startswith("usage: tinygradlm sample ") and "--max-new-tokens MAX_NEW_TOKENS" in err
    assert err.rstrip().endswith(
        "tinygradlm sample: error: unrecognized arguments: --max-new-token 3; "
        "did you mean --max-new-tokens?"
    )


def test_two_misspelled_flags_are_each_named(capsys):
    err = parse_error(capsys, ["eval", "--ckpt", "x", "--data", "y", "--bathces=2", "--seqlen=4"])
    assert "--bathces=2: did you mean --batches?" in err
    assert "--seqlen=4: did you mean --seq-len?" in err
    err = parse_error(capsys, ["sample", "--ckpt", "x", "--topk", "3", "--sed", "1"])
    assert "--topk: did you mean --top-k?" in err and "--sed: did you mean --seed?" in err


def test_an_abbreviated_flag_is_refused_not_guessed(capsys):
    # argparse's default would take --max-new as --max-new-tokens
    err = parse_error(capsys, ["sample", "--ckpt", "x", "--max-new", "3"])
    assert "did you mean --max-new-tokens?" in err


def test_a_setting_given_as_a_flag_names_the_key_value_form(capsys):
    err = parse_error(capsys, ["train", "--max-steps", "10"])
    assert err.startswith("usage: tinygradlm train ")
    assert "did you mean the setting max_steps=VALUE?" in err


def test_a_misspelled_command_names_the_closest(capsys):
    err = parse_error(capsys, ["trian", "max_steps=3"])
    assert "unknown command 'trian'; did you mean train?" in err
    err = parse_error(capsys, ["frobnicate"])
    assert "unknown command 'frobnicate' (commands: check-demo, prepare" in err
    assert "did you mean" not in err


def fake_checkpoint(run_dir, step, complete=True):
    """A directory named as the saver names a checkpoint, with a manifest if complete."""
    path = run_dir / f"ckpt_{step:08d}"
    path.mkdir(parents=True)
    if complete:
        (path / MANIFEST_FILE).write_text("{}", encoding="utf-8")
    return path


def test_a_run_directory_gives_its_newest_complete_checkpoint(tmp_path):
    fake_checkpoint(tmp_path, 9)
    newest = fake_checkpoint(tmp_path, 10**8)  # ckpt_100000000: first by name, last by step
    fake_checkpoint(tmp_path, 99_999_999)
    fake_checkpoint(tmp_path, 10**8 + 1, complete=False)  # a save stopped before its manifest
    (tmp_path / ".tmp-ckpt_100000002-123").mkdir()
    path, taken = checkpoint_in(tmp_path)
    assert path == newest
    assert taken == (
        f"{tmp_path}: taking its newest complete checkpoint, ckpt_100000000 (step 100000000)"
    )


def test_a_checkpoint_or_model_directory_is_taken_as_given(tmp_path):
    checkpoint = fake_checkpoint(tmp_path, 5)
    assert checkpoint_in(checkpoint) == (checkpoint, None)
    model = tmp_path / "hf"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    assert checkpoint_in(model) == (model, None)
    missing = tmp_path / "missing"
    assert checkpoint_in(missing) == (missing, None)  # the loader says it is missing


def test_a_directory_without_checkpoints_says_what_it_skipped_and_where_runs_are(tmp_path):
    run = tmp_path / "demo"
    fake_checkpoint(run, 7, complete=False)
    fake_checkpoint(run / "train", 10)
    with pytest.raises(CheckpointError) as error:
        checkpoint_in(run)
    message = str(error.value)
    assert message.startswith(f"{run}: no checkpoint here")
    assert "incomplete, skipped: ckpt_00000007" in message
    assert f"run directories inside it: {run / 'train'}" in message


def test_ckpt_takes_a_run_directory_on_the_command_line(tmp_path, capsys):
    # the newest checkpoint is taken (and named), then loaded: its empty manifest is refused
    fake_checkpoint(tmp_path, 1)
    newest = fake_checkpoint(tmp_path, 2)
    assert main(["sample", "--ckpt", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"taking its newest complete checkpoint, {newest.name} (step 2)" in err
    assert f"tinygradlm sample: {Path(newest) / MANIFEST_FILE}: malformed" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--ckpt", str(empty), "--data", str(tmp_path)]) == 1
    assert f"tinygradlm eval: {empty}: no checkpoint here" in capsys.readouterr().err


def test_finetune_from_takes_a_run_directory_too(tmp_path, capsys):
    empty = tmp_path / "run"
    empty.mkdir()
    assert main(["finetune", "--from", str(empty), "--data", str(tmp_path / "x.jsonl")]) == 1
    assert f"tinygradlm finetune: {empty}: no checkpoint here" in capsys.readouterr().err


def test_the_readme_command_lines_use_real_commands_flags_and_settings():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The command line", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    commands = [words[1:] for words in lines if words and words[0] == "tinygradlm"]
    assert {argv[0] for argv in commands} == set(COMMANDS)  # every command is shown
    for argv in commands:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            load_config(args.config, args.overrides)
        if args.command == "finetune":
            load_finetune_config(
                args.config, args.overrides, init_from=args.init_from, data=args.data
            )
