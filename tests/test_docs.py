"""The README stays true: its first two commands, and every command-line option documented."""

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_opens_with_start_and_test_commands_and_ci_runs_the_second():
    start, test = bash_blocks(README)[:2]
    assert start == "pip install -r requirements.txt && streamlit run app.py"
    assert "apt-get install -y chromium" in test
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test.splitlines()[-1] and "pytest" in ci[-1]


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
