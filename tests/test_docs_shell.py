"""The shell commands in the README and docs/ are true: every command line sits in a ```bash
block, and every ```bash block runs as written.

A page's blocks run in order, each with ``bash -euo pipefail``, in one fresh folder laid out
like a checkout of the repository (its files linked in, ``.venv`` linked to the venv running the
tests, ``runs/`` empty), with that venv's ``bin`` first on ``PATH`` (so ``tinygradlm``,
``python`` and ``mpiexec`` are the venv's), one thread per library, and every train and finetune
run shortened by ``TINYGRADLM_OVERRIDES`` (docs/training.md). A page may use the files that its
own earlier blocks made, nothing else. A block preceded by the line ``<!-- not run: REASON -->``
(the quick start's ``make demo``, a benchmark of minutes, a cluster, a file the reader brings)
is not run, but each of its ``tinygradlm`` commands must parse with the command line's parser,
name known settings, and each ``bench/``, ``examples/`` or ``tests/`` path it names must exist.
Where the paragraph after a block says it "prints `X`", the run's output holds X.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinygradlm.cli import build_parser
from tinygradlm.errors import ConfigError
from tinygradlm.train import FinetuneConfig, TrainConfig, load_config, load_finetune_config
from tinygradlm.train.config import DATA_RULES, MODEL_RULES, OVERRIDES_VARIABLE
from tinygradlm.train.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV = Path(sys.executable).parent.parent  # not resolved: a venv's python is often a link
# a step or two of everything a run does: validation, a sample, checkpoints, the progress line
SHORT_RUNS = (
    "max_steps=4 eval_interval=2 eval_batches=1 sample_interval=4 sample_tokens=8 "
    "checkpoint_interval=2 log_interval=1"
)
PAGE_TIMEOUT_S = 240
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
# how a command line begins, in any block: a block with one must be ```bash
COMMAND = re.compile(r"^\s*(tinygradlm |\.venv/bin/|make |mpiexec|mpirun|python |pip |bash |\$ )")
MESSAGE = re.compile(r"^\s*tinygradlm [\w-]+: ")  # a command's message ("tinygradlm train: …")
OTHER_SHELLS = {"sh", "shell", "console", "zsh", "shell-session"}
PATH_WORD = re.compile(r"^(bench|examples|tests)/[\w./-]+$")
PRINTS = re.compile(r"\bprints `([^`]+)`")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    not_run: str | None  # the reason, for a block marked not run
    after: str  # the paragraph that follows the block

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line or ' (prose)'}"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, indented ones (in list items) included, dedented."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        before = NOT_RUN.match(lines[i - 1]) if i else None
        paragraph = []
        for line in lines[end + 1 :]:
            if (paragraph and not line.strip()) or FENCE.match(line):
                break
            paragraph.append(line.strip())
        info = m["info"].strip()
        lang = info.split()[0] if info else ""
        reason = before["reason"].strip() if before else None
        blocks.append(Block(page, i + 1, lang, body, reason, " ".join(paragraph)))
        i = end + 1
    return blocks


BLOCKS = {page: fenced_blocks(page) for page in PAGES}


def command_lines(body: str) -> list[str]:
    """The logical lines of a shell block (continuations joined, heredoc bodies left out)."""
    lines, pending, heredoc = [], "", None
    for raw in body.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = pending + raw
        pending = ""
        m = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if m:
            heredoc = m.group(1)
        lines.append(line)
    return lines


def tinygradlm_words(words: list[str]) -> list[str] | None:
    """The arguments of the ``tinygradlm`` command among a line's ``words`` (called as
    ``tinygradlm``, ``.venv/bin/tinygradlm`` or ``python -m tinygradlm``, perhaps under
    ``mpiexec``), up to the end of that command; None when there is none."""
    for i, word in enumerate(words):
        if word == "tinygradlm" or word.endswith("bin/tinygradlm"):
            rest = words[i + 1 :]
            end = next((n for n, w in enumerate(rest) if w in ("|", "||", "&&", ";", ">")), None)
            return rest[:end]
    return None


def setting_problems(command: str, words: list[str]) -> list[str]:
    """Each ``KEY=VALUE`` word of a train or finetune command whose key is no setting."""
    rules = TrainConfig.RULES if command == "train" else FinetuneConfig.RULES
    problems = []
    for key in (word.split("=", 1)[0] for word in words if "=" in word):
        table, _, field = key.partition(".")
        if field:  # only train has tables
            known = command == "train" and (
                (table == "model" and field in MODEL_RULES)
                or (table == "data" and field in (*DATA_RULES, "mix"))
            )
        else:
            known = key in rules
        if not known:
            problems.append(f"{command}: no setting {key}")
    return problems


def check_commands(block: Block) -> list[str]:
    """What is wrong with the commands of a ```bash block, found without running them."""
    problems = []
    parser = build_parser()
    for line in command_lines(block.body):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:  # unbalanced quotes
            problems.append(f"{line!r}: {e}")
            continue
        for word in words:
            if PATH_WORD.match(word) and "<" not in word and not (ROOT / word).exists():
                problems.append(f"{line!r}: {word} does not exist")
        arguments = tinygradlm_words(words)
        if arguments is None:
            continue
        try:
            args = parser.parse_args(arguments)
        except SystemExit as e:
            if e.code:  # --help and --version exit with 0
                problems.append(f"{line!r}: the command line's parser refuses it")
            continue
        if args.command in ("train", "finetune"):
            problems += [f"{line!r}: {p}" for p in setting_problems(args.command, args.overrides)]
    return problems


def test_every_shell_block_is_bash():
    wrong = []
    for blocks in BLOCKS.values():
        for block in blocks:
            if block.lang in OTHER_SHELLS:
                wrong.append(f"{block.where}: ```{block.lang}: write ```bash")
            elif block.lang != "bash":
                commands = [
                    line
                    for line in block.body.splitlines()
                    if COMMAND.match(line) and not MESSAGE.match(line)
                ]
                if commands:
                    wrong.append(f"{block.where}: ```{block.lang} holds {commands[0].strip()!r}")
            if block.not_run is not None and (block.lang != "bash" or not block.not_run):
                wrong.append(f"{block.where}: 'not run' needs a ```bash block and a reason")
    assert not wrong, "\n".join(wrong)


def inline_commands(page: Path) -> Block:
    """The whole commands quoted in a page's prose (`tinygradlm eval --ckpt runs/x --data d`),
    as one block to check; a command's bare name and synopses (`[--split val]`, `…`) are not
    commands."""
    text = page.read_text(encoding="utf-8")
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.DOTALL | re.MULTILINE)
    spans = re.findall(r"`([^`]+)`", " ".join(prose.split()))
    commands = [
        span
        for span in spans
        if re.match(r"tinygradlm [a-z-]+ \S", span)
        and not MESSAGE.match(span)
        and not any(mark in span for mark in ("[", "…", "...", "|"))
    ]
    return Block(page, 0, "bash", "\n".join(commands) + "\n", "prose", "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_parses(page):
    blocks = [block for block in BLOCKS[page] if block.lang == "bash"]
    problems = [
        f"{block.where}: {problem}"
        for block in [*blocks, inline_commands(page)]
        for problem in check_commands(block)
    ]
    assert not problems, "\n".join(problems)


def checkout(folder: Path) -> None:
    """``folder`` laid out like the repository's root after ``make demo`` without its runs: the
    checkout's files linked in, and ``.venv`` linked to the tests' venv."""
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("runs", "build", "dist"):
            (folder / entry.name).symlink_to(entry)
    (folder / ".venv").symlink_to(VENV)


def shell_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYGRADLM_", "VIRTUAL_"))}
    tmp = folder / ".tmp"
    tmp.mkdir()
    env.update(
        PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),  # this checkout's code, whatever the venv has installed
        TMPDIR=str(tmp),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(tmp),
        **{OVERRIDES_VARIABLE: SHORT_RUNS},
        **dict.fromkeys(THREAD_VARIABLES, "1"),
    )
    return env


def missing_tools(page: Path) -> list[str]:
    """What the runnable blocks of ``page`` use that this machine lacks: the venv's
    ``tinygradlm`` and ``mpiexec``, a C compiler, matplotlib."""
    text = "".join(b.body for b in BLOCKS[page] if b.lang == "bash" and b.not_run is None)
    needs = {
        "the venv's tinygradlm command": (VENV / "bin" / "tinygradlm").exists(),
        "the venv's mpiexec": "mpiexec" not in text or (VENV / "bin" / "mpiexec").exists(),
        "a C compiler": "cc " not in text or shutil.which("cc") is not None,
        "matplotlib": not re.search(r"--plot|tinygradlm plot", text)
        or importlib.util.find_spec("matplotlib") is not None,
    }
    return [tool for tool, present in needs.items() if not present]


RUN_PAGES = [p for p in PAGES if any(b.lang == "bash" and b.not_run is None for b in BLOCKS[p])]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: p.name)
def test_page_commands_run(page, tmp_path):
    missing = missing_tools(page)
    if missing:
        pytest.skip(f"{page.name} needs {', '.join(missing)} (the dev extra: make test)")
    checkout(tmp_path)
    env = shell_env(tmp_path)
    for block in BLOCKS[page]:
        if block.lang != "bash" or block.not_run is not None:
            continue
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.body],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=PAGE_TIMEOUT_S,
        )
        output = result.stdout
        assert result.returncode == 0, f"{block.where} exited {result.returncode}:\n{output}"
        flat = " ".join(output.split())
        for stated in PRINTS.findall(block.after):
            stated = " ".join(stated.split())
            assert stated in flat, f"{block.where}: the page says it prints {stated!r}:\n{output}"


# -- the settings table of docs/training.md against the code ----------------------------------

TABLE_ROW = re.compile(r"^\| (?P<keys>`[\w.]+`(?:, `[\w.]+`)*) \| (?P<cli>.*?) \| (?P<cls>.*?) \|")


def documented_value(text: str):
    """A table cell's value: a number, a bool, a string ("" or `word`)."""
    text = text.strip().strip("`")
    if text in ("true", "false"):
        return text == "true"
    if text == '""':
        return ""
    try:
        return float(text)
    except ValueError:
        return text


def test_training_settings_table_matches_the_code(monkeypatch):
    """Each plain setting's two defaults in docs/training.md: the `tiny` preset's (what
    `tinygradlm train` uses) and TrainConfig()'s, and the schedule's derived values."""
    monkeypatch.delenv(OVERRIDES_VARIABLE, raising=False)
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    cli = load_config("tiny")  # the command's default --config
    bare = TrainConfig()
    checked = 0
    for line in text.splitlines():
        m = TABLE_ROW.match(line)
        if not m:
            continue
        keys = re.findall(r"`([\w.]+)`", m["keys"])
        for key in keys:
            assert key in TrainConfig.RULES, f"training.md's table names no setting: {key}"
        if keys == ["out_dir"]:
            assert m["cli"].startswith("`runs/tiny`") and m["cls"].startswith(f"`{bare.out_dir}`")
            continue
        if keys in (["min_lr"], ["warmup_steps"]):  # `lr` / 10 (3e-4): the number in brackets
            for cell, config in ((m["cli"], cli), (m["cls"], bare)):
                stated = float(re.search(r"\(([\d.e-]+)\)", cell).group(1))
                assert stated == getattr(config, keys[0]), f"{keys[0]}: {cell}"
            continue
        cli_values, cls_values = m["cli"].split(", "), m["cls"].split(", ")
        if len(cli_values) != len(keys):
            continue  # a table ([model]) or prose
        for key, shown_cli, shown_cls in zip(keys, cli_values, cls_values, strict=True):
            assert documented_value(shown_cli) == getattr(cli, key), f"{key}: {shown_cli}"
            assert documented_value(shown_cls) == getattr(bare, key), f"{key}: {shown_cls}"
            checked += 1
    assert checked >= 20
    model_row = next(line for line in text.splitlines() if line.startswith("| `[model]` |"))
    _, cli_cell, cls_cell, _ = model_row.split(" | ", 3)
    for cell, table in ((cli_cell, PRESETS["tiny"]["model"]), (cls_cell, bare.model)):
        pairs = dict(re.findall(r"`(\w+) = ([^`]+)`", cell))
        assert {k: documented_value(v.strip('"')) for k, v in pairs.items()} == table, cell


def test_finetuning_settings_table_matches_the_code(monkeypatch):
    """docs/finetuning.md's defaults: FinetuneConfig's, for every literal value in the table."""
    monkeypatch.delenv(OVERRIDES_VARIABLE, raising=False)
    config = FinetuneConfig(init_from="ckpt", data="sft.jsonl")
    text = (ROOT / "docs" / "finetuning.md").read_text(encoding="utf-8")
    checked = 0
    for line in text.splitlines():
        m = re.match(r"^\| (?P<keys>`\w+`(?:, `\w+`)*) \| (?P<values>.*?) \|", line)
        if not m:
            continue
        keys, values = re.findall(r"`(\w+)`", m["keys"]), m["values"].split(", ")
        for key, shown in zip(keys, values, strict=False) if len(keys) == len(values) else ():
            if " " in shown.strip() or not (shown[:1].isdigit() or shown[:1] in '`"ft['):
                continue  # prose: `lr` / 10, all four
            value = [] if shown == "`[]`" else documented_value(shown)
            assert value == getattr(config, key), f"finetuning.md: {key}: {shown}"
            checked += 1
    assert checked >= 25


def test_every_file_named_exists():
    """Every repository path a page names (tinygradlm/…, bench/…, examples/…, tests/…) exists;
    a module path relative to the package (`train/config.py`) too."""
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(
            r"(?<![\w./-])((?:tinygradlm|bench|examples|tests)/[\w./-]*\w)(?![<{\w])", text
        ):
            path = ROOT / m.group(1)
            if not (path.exists() or path.with_name(path.name + ".py").exists()):
                missing.append(f"{page.name}: {m.group(1)}")
        for m in re.finditer(r"`((?:train|data|model|checkpoint|dist|monitor)/\w+\.py)`", text):
            if not (ROOT / "tinygradlm" / m.group(1)).exists():
                missing.append(f"{page.name}: {m.group(1)}")
    assert not missing, "\n".join(missing)


def test_every_setting_is_documented():
    """Every setting of a train or finetune config is named on the page of its subject."""
    names = ("training", "finetuning", "distributed", "precision", "monitoring")
    text = "".join((ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8") for name in names)
    keys = {*TrainConfig.RULES, *FinetuneConfig.RULES} - {"model", "data"}
    missing = sorted(k for k in keys if not re.search(rf"`{k}[` =]", text))
    assert not missing, f"settings no page names: {missing}"


# -- TINYGRADLM_OVERRIDES ---------------------------------------------------------------------


def test_environment_overrides_come_last_and_are_named(monkeypatch):
    monkeypatch.setenv(OVERRIDES_VARIABLE, "max_steps=4 'sample_prompt=\"Once upon\"'")
    config = load_config("tiny", ["max_steps=50", "lr=1e-3"])
    assert (config.max_steps, config.sample_prompt, config.lr) == (4, "Once upon", 1e-3)
    assert config.warmup_steps == round(0.06 * 4)  # the schedule follows the final max_steps
    tuned = load_finetune_config(None, ["max_steps=50"], init_from="ckpt", data="sft.jsonl")
    assert tuned.max_steps == 4 and tuned.init_from == "ckpt"
    monkeypatch.setenv(OVERRIDES_VARIABLE, "max_steps=0")
    with pytest.raises(ConfigError, match=f"{OVERRIDES_VARIABLE} max_steps=0: max_steps must"):
        load_config("tiny")
    monkeypatch.setenv(OVERRIDES_VARIABLE, "max_steps='4")
    with pytest.raises(ConfigError, match=OVERRIDES_VARIABLE):
        load_config("tiny")
    monkeypatch.setenv(OVERRIDES_VARIABLE, "")
    assert load_config("tiny").max_steps == PRESETS["tiny"]["max_steps"]


def test_the_checker_finds_drift(tmp_path):
    """The checks fail on the drift they exist for: a hidden command, an unknown flag or
    setting, a missing file, a not-run block without a reason."""
    page = tmp_path / "page.md"
    page.write_text(
        "```text\ntinygradlm train --config tiny\n```\n\n"
        "<!-- not run: -->\n```bash\nmake demo\n```\n\n"
        "```bash\ntinygradlm train --confg tiny\ntinygradlm train max_step=3\n"
        "python bench/nothing.py\n"
        ".venv/bin/python -m tinygradlm finetune --from x n_layer=2\n```\n",
        encoding="utf-8",
    )
    hidden, unreasoned, wrong = fenced_blocks(page)
    assert COMMAND.match(hidden.body) and hidden.lang == "text"
    assert unreasoned.not_run == ""
    problems = check_commands(wrong)
    assert len(problems) == 4, problems
    assert "parser refuses" in problems[0] and "no setting max_step" in problems[1]
    assert "bench/nothing.py does not exist" in problems[2] and "n_layer" in problems[3]
