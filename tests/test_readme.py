"""The README's commands can be pasted as they are: one convention (``.venv/bin/...``), real files, a clean work tree.

Checked by reading the README, not by running it (training takes minutes): every command of the training sections
starts from ``.venv/bin/`` (or is a plain shell command), every file it reads is in the repository, and every folder
it writes is one git ignores, so following it leaves ``git status`` clean.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
SHELL_COMMANDS = {"mkdir", "cp", "python3"}  # python3 only to make the venv: `python3 -m venv .venv`


def section(title: str, end: str) -> str:
    start = README.index(title)
    return README[start:README.index(end, start)]


def bash_commands(text: str) -> list[list[str]]:
    """The commands of every ```bash block in ``text``: continuation lines and quotes over several lines joined,
    comments dropped, split at ``&&``."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        pending = ""
        for line in joined.splitlines():
            pending += line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # a quote that a later line closes (python -c "...")
                pending += "\n"
                continue
            pending = ""
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return [c for c in commands if c]


TRAINING = section("## Training", "## Layout")


def test_the_test_command_is_the_one_ci_runs_and_says_why_tests_are_skipped():
    readme = re.search(r"Run the tests:\n\n```bash\n(.*?)\n```", README).group(1)
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line
          and not line.lstrip().startswith("#")]
    assert ci == [readme]
    assert readme.endswith("-m pytest -q -rs")  # -rs: each skipped test is listed with its reason


def test_training_commands_use_the_venv_and_files_that_exist():
    commands = bash_commands(TRAINING)
    assert len(commands) >= 10
    for command in commands:
        program = command[0]
        assert program.startswith(".venv/bin/") or program in SHELL_COMMANDS, command
        if program == "python3":
            assert command[1:4] == ["-m", "venv", ".venv"], command
    own_style = bash_commands(section("**Train on your own style**", "### Distillation"))
    mkdir, cp, train, stylize = own_style
    source = REPO_ROOT / cp[1]
    assert source.is_file() and source.parent == REPO_ROOT / "hybridstyle" / "examples" / "styles"
    # The example image is one whose licence lets anyone copy it.
    sources = (REPO_ROOT / "hybridstyle" / "examples" / "SOURCES.csv").read_text(encoding="utf-8")
    row = next(line for line in sources.splitlines() if line.startswith(f"styles/{source.name},"))
    assert "Public domain" in row
    for flag in ("--init_from", "--content_dir"):
        assert (REPO_ROOT / train[train.index(flag) + 1]).is_dir(), flag
    assert train[train.index("--style_dir") + 1] == cp[2].rstrip("/") == mkdir[-1]
    output = train[train.index("--output_dir") + 1]
    assert f"from_pretrained('{output}')" in stylize[-1] and f"'{cp[2]}{source.name}'" in stylize[-1]


def test_following_the_training_sections_leaves_git_status_clean():
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    written = []
    for command in bash_commands(TRAINING):
        if command[0] == "mkdir":
            written += [w for w in command[1:] if not w.startswith("-")]
        if command[0] == "cp":
            written.append(command[-1])
        for flag in ("--output_dir", "--out"):
            if flag in command and "..." not in command[command.index(flag) + 1]:
                written.append(command[command.index(flag) + 1])
        written += re.findall(r"\.save\(\s*'([^']+)'", " ".join(command))
    written = [w for w in written if not w.startswith("/")]  # /shared/runs/...: a multi-node folder, not the checkout
    assert {"runs/my-style", "runs/my-style-images/", "data/train", "runs/my-style/kitten.png"} <= set(written)
    for path in written:
        probe = path.rstrip("/") + "/probe.png"  # a file inside it: what training would write there
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=REPO_ROOT)
        assert ignored.returncode == 0, f"{path} is not ignored by git: following the README leaves it in git status"


def test_the_layout_table_names_every_module_and_only_files_that_exist():
    table = section("## Layout", "## Licences")
    named = set(re.findall(r"`((?:hybridstyle|scripts)/[^`]+|app\.py)`", table))
    for path in named:
        assert (REPO_ROOT / path).exists(), f"the README's layout names {path}, which does not exist"
    modules = {f"hybridstyle/{p.name}" for p in (REPO_ROOT / "hybridstyle").glob("*.py") if p.name != "__init__.py"}
    assert modules <= named, f"modules missing from the README's layout: {sorted(modules - named)}"
