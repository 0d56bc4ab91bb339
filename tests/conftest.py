"""Shared fixtures: small real corpora and a tiny model really trained on them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONVERSATIONS = [
    [("user", "hello"), ("assistant", "Hi! How are you today?")],
    [("user", "what is an lstm?"), ("assistant", "An LSTM is a recurrent network with gates.")],
    [("user", "안녕하세요"), ("assistant", "안녕하세요! 반가워요.")],
    [("user", "what does the forget gate do?"), ("assistant", "It decides what the cell state keeps.")],
    [("user", "my name is Mina"), ("assistant", "Nice to meet you, Mina!"),
     ("user", "what is my name?"), ("assistant", "Your name is Mina.")],
    [("user", "오늘 날씨 어때요?"), ("assistant", "저는 창밖을 볼 수 없어요. 하지만 좋은 하루 보내세요!")],
    [("user", "show me markup"), ("assistant", "Literal $x$ and **b** and <b>bold</b> # end")],
]


def write_chat_corpus(path: Path, repeats: int = 30) -> Path:
    lines = []
    for n in range(repeats):
        for conv in CONVERSATIONS:
            lines.append(json.dumps({"messages": [{"role": r, "content": c} for r, c in conv]},
                                    ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def chat_corpus(tmp_path_factory) -> Path:
    return write_chat_corpus(tmp_path_factory.mktemp("corpus") / "chat.jsonl")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, chat_corpus) -> Path:
    """A 2-layer LSTM trained for a few seconds on the chat corpus by the real trainer
    (it learns the six conversations well: validation is about 0.2 nats/char)."""
    from chatbot.lm.spec import TrainConfig
    from chatbot.train.loop import train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(run_spec(chat_corpus, TrainConfig(max_steps=600, seq_len=32, batch_size=8, eval_every=300,
                                            lr=1e-2, warmup_steps=10), hidden_size=96, num_layers=2), out)
    return out


def run_spec(corpus, training, tokenizer: str = "char", vocab_size: int | None = None, **model):
    """What train_lm.py builds from its flags: a `tokenizer` and a model with `model` settings,
    trained on `corpus` with `training` (a TrainConfig)."""
    from chatbot.lm.model import ModelConfig
    from chatbot.lm.spec import CorpusInfo, RunSpec, TokenizerSpec

    return RunSpec(TokenizerSpec(tokenizer, vocab_size), ModelConfig(**model), training, CorpusInfo(str(corpus)))



THREADS_TIME_LIMIT_S = 300  # generous: a deadlock fails the test instead of hanging it


def in_threads(work, count: int) -> list:
    """Run work(n) for n < count in as many threads started together; their results.
    Any exception in a thread fails the test, naming the thread."""
    results, errors = [None] * count, []
    start = threading.Barrier(count)

    def person(n):
        try:
            start.wait()
            results[n] = work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append((n, repr(exc)))

    threads = [threading.Thread(target=person, args=(n,), daemon=True) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREADS_TIME_LIMIT_S)
    assert not any(t.is_alive() for t in threads), f"sessions still running after {THREADS_TIME_LIMIT_S} s"
    assert errors == []
    return results


def run_cli(*args: str, input: str | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run one of the project's commands as a user would, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, input=input, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a browser test fails, keep what the page showed: a screenshot in
    test-artifacts/failures/ and the page's text in the report (CI prints it)."""
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "funcargs", {}).get("page")
    if report.when != "call" or not report.failed or page is None or not hasattr(page, "screenshot"):
        return
    try:
        folder = ROOT / "test-artifacts" / "failures"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{item.name}.png"), full_page=True, timeout=20_000)
        report.sections.append(("page at failure", page.inner_text("body", timeout=20_000)[:4000]))
    except Exception as error:  # the page itself may be gone; the failure is reported anyway
        report.sections.append(("page at failure", f"(could not read the page: {error})"))


@pytest.fixture
def app_env(tiny_checkpoint, tmp_path, monkeypatch):
    """The app pointed at a models folder holding the tiny test model (and a data folder of
    its own); returns the models folder."""
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, models / "tiny")
    monkeypatch.setenv("LSTM_CHAT_MODELS", str(models))
    monkeypatch.setenv("LSTM_CHAT_DATA", str(tmp_path / "data"))
    return models
