"""Where commands write: an output path that is a file, a symlink loop or under a file is named
with what was expected, before any work; what they write follows the user's umask."""

import os
import stat

import pytest
from test_train import make_data, tiny_config

from tinygradlm.atomic import writable_directory
from tinygradlm.checkpoint import latest_checkpoint
from tinygradlm.cli import main
from tinygradlm.train import Trainer


@pytest.fixture
def places(tmp_path):
    """A file, a path under it, a symlink loop, a path through the loop, a dangling symlink."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to("nowhere")
    return {
        "file": (tmp_path / "file", "is a file"),
        "under a file": (tmp_path / "file" / "out", "is under the file"),
        "symlink loop": (tmp_path / "loop", "symlink loop"),
        "through a loop": (tmp_path / "loop" / "out", "symlink loop"),
        "dangling symlink": (tmp_path / "dangling", "symlink to nothing"),
    }


KINDS = ["file", "under a file", "symlink loop", "through a loop", "dangling symlink"]


@pytest.mark.parametrize("kind", KINDS)
def test_writable_directory_names_the_path_and_the_problem(places, kind):
    path, words = places[kind]
    with pytest.raises(ValueError) as raised:
        writable_directory(path, "out_dir", ValueError)
    message = str(raised.value)
    assert message.startswith(f"out_dir {path}:") and words in message
    assert "expected a directory" in message or "symlink" in message


def test_a_new_or_existing_directory_is_accepted_and_nothing_is_created(tmp_path):
    assert writable_directory(tmp_path, "out") == tmp_path
    assert writable_directory(tmp_path / "a" / "b", "out") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path) == []


def test_an_unwritable_directory_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OSError, match="not writable"):
            writable_directory(tmp_path / "out", "out")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("kind", ["file", "under a file", "symlink loop"])
def test_every_command_names_a_bad_output_path_in_one_line(tmp_path, places, kind, capsys):
    path, words = places[kind]
    data = make_data(tmp_path / "data")
    commands = {
        "out_dir": ["train", "--config", "tiny", f"data_dir='{data}'", f"out_dir='{path}'"],
        "export --out": ["export", "--ckpt", str(tmp_path), "--out", str(path)],
        "plot --out": ["plot", str(tmp_path), "--out", str(path)],
        "prepare --out": ["prepare", "--out", str(path)],
    }
    for what, argv in commands.items():
        assert main(argv) == 1, what
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{what} {path}" in err and words in err, err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_follow_the_umask(tmp_path, umask):
    make_data(tmp_path / "data")
    old = os.umask(umask)
    try:
        Trainer(
            tiny_config(tmp_path, max_steps=2, warmup_steps=1, checkpoint_interval=2), log=print
        ).train()
    finally:
        os.umask(old)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o777 & ~umask
    for path in [*ckpt.iterdir(), tmp_path / "run" / "metrics.jsonl"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
