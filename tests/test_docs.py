"""The docs stay true: the README opens with the two commands, stays short enough to read, its
commands use only options that exist, and every link in it (and in ARCHITECTURE.md and
bench/README.md) resolves. `--help` is the full option reference."""

import re

import pytest

from conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ["README.md", "ARCHITECTURE.md", "bench/README.md"]


def bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def help_options(*command):
    r = run_cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", r.stdout))


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


def test_readme_is_for_users_and_at_most_20_kb():
    assert len(README.encode()) <= 20 * 1024
    assert "python train_lm.py --help" in README  # the full option reference


def test_training_commands_use_existing_options_and_the_common_ones_are_named():
    options = help_options("train_lm.py")
    assert {"--corpus", "--out", "--resume", "--tokenizer", "--cell", "--device"} <= options
    commands = [line.split("train_lm.py", 1)[1] for block in bash_blocks(README)
                for line in block.replace("\\\n", " ").splitlines() if "train_lm.py" in line]
    used = {flag for command in commands for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command)}
    assert used and used <= options, used - options
    common = {"--corpus", "--out", "--resume", "--tokenizer", "--vocab-size", "--preset", "--time-budget",
              "--max-steps", "--batch-size"}
    assert common <= options and not [n for n in common if f"`{n}" not in README]


@pytest.mark.parametrize("command", ["chat", "generate"])
def test_every_chat_and_generate_option_is_documented(command):
    names = help_options("-m", "chatbot", command) - {"--help"}
    assert {"--temperature", "--top-k", "--top-p", "--seed"} <= names
    assert command == "chat" or {"--prompt", "--chat"} <= names
    missing = [n for n in names if f"`{n}" not in README]
    assert not missing, missing


def slug(heading):
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_resolves(doc):
    path = ROOT / doc
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{doc}: {link} names a missing file"
        if anchor:
            assert anchor in anchors(file), f"{doc}: {link} names a missing heading"
