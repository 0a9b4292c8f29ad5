"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE: ``ci`` (the default under CI), ``dev``
(the default elsewhere), ``thorough`` (long property runs) and ``fuzz`` (10,000 examples per
test: the figures in docs/fuzzing.md come from running tests/fuzz under it).

And a private temporary folder: the suite points ``$TMPDIR`` (and so ``tempfile``, pytest's
``tmp_path`` and every subprocess) at a fresh folder inside the user's, fails the run if a test
left anything there but pytest's own ``tmp_path`` folders, and removes the folder when the
process exits, whatever the outcome, so a run leaves the user's ``$TMPDIR`` as it found it. To
keep the ``tmp_path`` folders of failing tests for a look, give pytest ``--basetemp=DIR``.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SESSION_TMPDIR = Path(tempfile.mkdtemp(prefix="tinygradlm-tests-"))
os.environ["TMPDIR"] = str(SESSION_TMPDIR)
tempfile.tempdir = None  # gettempdir() reads $TMPDIR again
# at exit, not at the session's end: also after a usage error, and after pytest's own clean-up
atexit.register(shutil.rmtree, SESSION_TMPDIR, ignore_errors=True)
# torch makes its compile cache's folder (empty) as soon as torch.optim is imported: give it one
# in the session's folder, removed with it
TORCH_CACHE = "torchinductor"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(SESSION_TMPDIR / TORCH_CACHE))


def left_in_tmpdir() -> list[str]:
    """What the session's ``$TMPDIR`` holds besides pytest's folders and torch's cache."""
    return sorted(
        entry.name
        for entry in SESSION_TMPDIR.iterdir()
        if not entry.name.startswith("pytest-of-") and entry.name != TORCH_CACHE
    )


@pytest.hookimpl(trylast=True)  # after session fixtures are torn down
def pytest_sessionfinish(session, exitstatus):
    """Fail the run, naming them, if tests left files or folders in the session's $TMPDIR."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is None:
            print(line)
        else:
            reporter.write_line("\n" + line)

    left = [] if exitstatus == pytest.ExitCode.INTERRUPTED else left_in_tmpdir()
    if left:
        say(f"tests left {len(left)} entries in the session's $TMPDIR: {', '.join(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=30,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    deadline=None,
    max_examples=10_000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
