"""Settings, resume files and inputs that must be refused with an error naming the problem:
training options that cannot work, damaged resume points, and a device as a corpus."""

import json
import shutil

import pytest

from chatbot.errors import ChatbotError
from chatbot.lm.spec import RunSpec, TrainConfig
from chatbot.text.corpus import load_corpus
from chatbot.train.loop import LOG_FILE, train
from chatbot.train.run_state import LATEST, RESUME_DIR
from conftest import run_spec, write_chat_corpus

SMALL = {"hidden_size": 16, "num_layers": 1}


def small_cfg(**changes):
    return TrainConfig(**{"max_steps": 20, "seq_len": 16, "batch_size": 4, "eval_every": 10,
                          "warmup_steps": 2, **changes})


@pytest.mark.parametrize("setting, value, message", [
    ("grad_clip", -1.0, "--grad-clip must be a positive gradient norm"),
    ("grad_clip", 0.0, "--grad-clip must be a positive gradient norm"),
    ("grad_clip", float("nan"), "--grad-clip must be a positive gradient norm"),
    ("warmup_steps", -10, "--warmup-steps must be 0"),
    ("lr", float("inf"), "--lr must be a positive finite number"),
    ("weight_decay", -0.1, "--weight-decay must be 0 or a positive"),
])
def test_options_that_cannot_train_are_refused(setting, value, message):
    with pytest.raises(ChatbotError, match=message):
        TrainConfig(**{setting: value})
    assert TrainConfig(grad_clip=float("inf"), warmup_steps=0).grad_clip == float("inf")  # off, allowed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_chat_corpus(tmp_path_factory.mktemp("refusals") / "chat.jsonl", repeats=10)


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory):
    """A real 20-step run (evaluated at 10 and 20) with its resume point."""
    out = tmp_path_factory.mktemp("run") / "r"
    train(run_spec(corpus, small_cfg(), **SMALL), out)
    return out


def test_a_loss_diverging_before_any_checkpoint_does_not_claim_one_is_kept(corpus, tmp_path):
    with pytest.raises(ChatbotError, match=r"the loss became (nan|inf) at step \d+; stopping. No checkpoint "
                                           r"was saved .* Lower --lr and start again") as caught:
        train(run_spec(corpus, small_cfg(max_steps=200, eval_every=1000, lr=1e30, grad_clip=1e30,
                                         warmup_steps=0), **SMALL), tmp_path / "nan")
    assert "kept" not in str(caught.value)
    assert not (tmp_path / "nan" / "model.safetensors").exists()


@pytest.mark.parametrize("max_steps, word", [(10, "past"), (20, "at")])
def test_resume_below_or_at_a_finished_runs_step_says_so(finished_run, tmp_path, max_steps, word):
    out = shutil.copytree(finished_run, tmp_path / "r")
    log = (out / LOG_FILE).read_text()
    with pytest.raises(ChatbotError, match=rf"the run in .* is already at step 20, {word} --max-steps "
                                           rf"{max_steps}: there is nothing to train"):
        train(RunSpec(), out, resume=True, resume_overrides={"max_steps": max_steps})
    assert (out / LOG_FILE).read_text() == log  # no duplicate evaluation appended


def test_dev_null_as_a_corpus_is_not_called_missing():
    with pytest.raises(ChatbotError, match=r"/dev/null: not a regular file \(a device, pipe or socket\)"):
        load_corpus("/dev/null")


def state_json(out):
    return out / RESUME_DIR / (out / RESUME_DIR / LATEST).read_text().strip() / "state.json"


def nested(out):
    state_json(out).write_text("[" * 200_000 + "]" * 200_000)


def no_step(out):
    state = json.loads(state_json(out).read_text())
    del state["step"]
    state_json(out).write_text(json.dumps(state))


def step_as_text(out):
    state = json.loads(state_json(out).read_text())
    state["step"] = "20"
    state_json(out).write_text(json.dumps(state))


def latin1_latest(out):
    (out / RESUME_DIR / LATEST).write_bytes(b"step-\xe9\xff")


def not_utf8_state(out):
    state_json(out).write_bytes(b'{"step": "\xe9"}')


@pytest.mark.parametrize("damage, file, problem", [
    (nested, "state.json", "nested too deeply"),
    (no_step, "state.json", '"step" is missing'),
    (step_as_text, "state.json", '"step" has the wrong type'),
    (latin1_latest, LATEST, "is damaged"),
    (not_utf8_state, "state.json", "unreadable"),
])
def test_a_damaged_resume_file_is_named(finished_run, tmp_path, damage, file, problem):
    out = shutil.copytree(finished_run, tmp_path / "r")
    damage(out)
    with pytest.raises(ChatbotError, match=rf"{file}.*{problem}.*resume"):
        train(RunSpec(), out, resume=True, resume_overrides={"max_steps": 40})
