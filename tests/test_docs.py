"""The README stays true: its first two commands, and every command-line option documented."""

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_opens_with_start_and_test_commands_and_ci_runs_the_second():
    start, test = bash_blocks(README)[:2]
    assert start == "pip install -r requirements.txt && streamlit run app.py"
    assert "apt-get install -y -q chromium" in test
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test.splitlines()[-1] and "pytest" in ci[-1]


def test_readme_installs_the_browser_as_ci_does_updating_the_package_lists_when_needed():
    """On a fresh machine the package lists are empty and a bare `apt-get install` fails:
    the README's line must be .ci/run's (which retries after `apt-get update`), with sudo."""
    readme_apt = bash_blocks(README)[1].splitlines()[0]
    ci_apt = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
              if "apt-get install" in line]
    assert ci_apt and readme_apt == ci_apt[0].replace("$SUDO ", "sudo ")
    install, _, retry = readme_apt.partition("||")
    assert "apt-get update" not in install and retry.index("apt-get update") < retry.index("apt-get install")


def test_every_training_option_is_documented():
    names = set(re.findall(r'add_argument\("(--[a-z-]+)"', (ROOT / "train_lm.py").read_text()))
    assert {"--corpus", "--out", "--resume", "--tokenizer", "--cell", "--device"} <= names
    missing = [n for n in names if f"`{n}" not in README]
    assert not missing, missing


def test_every_chat_and_generate_option_is_documented():
    source = (ROOT / "chatbot" / "__main__.py").read_text()
    names = set(re.findall(r'add_argument\("(--[a-z-]+)"', source))
    assert {"--temperature", "--top-k", "--top-p", "--seed", "--prompt", "--chat"} <= names
    missing = [n for n in names if f"`{n}" not in README]
    assert not missing, missing
