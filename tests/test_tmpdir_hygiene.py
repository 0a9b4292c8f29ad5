"""The suite leaves the user's $TMPDIR as it found it: conftest.py runs every session in a
private folder there, fails the run if a test left anything in it, and removes it at exit.
Checked on a small suite of its own, run in a subprocess with a $TMPDIR of the test's."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY = """
import tempfile

def test_uses_tmp_path(tmp_path):
    (tmp_path / "kept by pytest").write_text("x")

def test_leaves_a_folder():
    tempfile.mkdtemp(prefix="forgotten-")
"""


def run_suite(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a suite of one test file under our conftest; what it printed, and what it left in
    a $TMPDIR that starts empty."""
    suite, user_tmpdir = tmp_path / "suite", tmp_path / "tmpdir"
    suite.mkdir()
    user_tmpdir.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_it.py").write_text(source)
    env = {**os.environ, "TMPDIR": str(user_tmpdir)}
    env.pop("TORCHINDUCTOR_CACHE_DIR")  # the outer session's, set by its conftest
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, sorted(entry.name for entry in user_tmpdir.iterdir())


def test_a_clean_suite_passes_and_leaves_tmpdir_empty(tmp_path):
    cleaned_up = LEAKY.replace('mkdtemp(prefix="forgotten-")', "TemporaryDirectory().cleanup()")
    result, left = run_suite(tmp_path, cleaned_up)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert left == []


def test_a_test_that_leaves_a_folder_fails_the_run_which_names_it(tmp_path):
    result, left = run_suite(tmp_path, LEAKY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "tests left 1 entries in the session's $TMPDIR: forgotten-" in result.stdout
    assert left == []  # the session's folder is removed all the same
