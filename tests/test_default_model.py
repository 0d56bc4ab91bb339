"""The shipped default model: present, small, reproducible from the README, and able to chat."""

import re
import shlex
import sys

import pytest

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.text.corpus import load_corpus
from chatbot.chat.sampling import SamplingConfig
from conftest import ROOT

DEFAULT = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint(DEFAULT)


def test_it_is_small_enough_to_ship():
    files = [p for p in DEFAULT.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "model.safetensors"} <= names
    assert names & {"tokenizer.json", "tokenizer.model"}  # char or SentencePiece
    assert sum(p.stat().st_size for p in files) <= 25 * 1024 * 1024  # the issue-15 limit for git


def test_config_records_how_it_was_made(ckpt):
    spec = ckpt.spec
    assert set(ckpt.metrics) >= {"val_nats_per_char", "val_bits_per_char", "steps", "tokens_seen",
                                 "train_seconds"}
    assert spec.corpus.sha256 == load_corpus(ROOT / spec.corpus.path).sha256  # trained on what ships
    command = spec.command
    assert shlex.split(command)[:2] == ["python", "train_lm.py"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert command in readme
    nats = f"{ckpt.metrics['val_nats_per_char']:.3f}"
    assert re.search(rf"\b{re.escape(nats)}\b", readme), f"README should quote {nats} nats/char"


@pytest.mark.parametrize("message", ["hello!", "What does the forget gate do?", "안녕하세요!",
                                     "LSTM이 뭐예요?"])
def test_it_chats_in_english_and_korean_and_ends_its_turns(ckpt, message):
    korean = any("\uac00" <= ch <= "\ud7a3" for ch in message)
    ended = in_language = 0
    for seed in range(6):
        s = ChatSession(ckpt.model, ckpt.tokenizer,
                        SamplingConfig(temperature=0.5, seed=seed, max_new_tokens=300))
        reply = "".join(s.send(message))
        ended += s.turns[-1].reply.ended  # it closed its turn by itself
        hangul = sum("\uac00" <= ch <= "\ud7a3" for ch in reply)
        letters = sum(ch.isalpha() for ch in reply)
        assert reply.strip()
        # answers Korean in Korean (command names like /reset may be in Latin letters)
        in_language += (hangul > 0 and hangul >= 0.3 * letters) if korean else hangul == 0
    # The model trained on the 2.9 M-character corpus answered "LSTM이 뭐예요?" in English
    # once in these six draws (the Latin "LSTM" pulls it over); five of six must hold.
    assert in_language >= 5, f"only {in_language} of 6 replies to {message!r} were in its language"
    assert ended >= 4, f"only {ended} of 6 replies to {message!r} ended by themselves"


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_its_copy_head_gives_back_made_up_names_the_lstm_alone_never_does(ckpt, lang):
    """The memory the app promises, on the shipped model, with names that occur nowhere in its
    corpus: told, one turn of small talk, asked for (greedy), as bench/memory_recall.py asks
    (which measures it at scale: 96% in both languages at k = 1, on names made like the
    drill's). Measured here: English 7 of these 10, Korean 9; the misses come back cut short
    ("Zorvik", "Melvor", "Pillar", "다노"). The release before, 7 and 8; before that, 5 and 7;
    before the recall drill, 4 and 1. The same LSTM without its head: 0 in both."""
    sys.path.insert(0, str(ROOT / "bench"))
    from memory_recall import trial, without_copy

    names = {"en": ["Zorvika", "Tamblequ", "Hurnesto", "Vilpadra", "Quenzol", "Brastik", "Melvorin",
                    "Osquela", "Dravenko", "Pillarut"],
             "ko": ["뱌쿠리", "퉁모래", "후모키", "쟈비노", "큥다리", "보나키", "미루소", "다노레", "하쿠미", "소리마"]}[lang]
    corpus = "\n".join(str(piece) for _, piece in load_corpus(ROOT / "corpora").pieces())
    assert not [name for name in names if name in corpus]

    def hits(model) -> int:
        return sum(name in trial(model, lang, "name", name, 1, 60)[1] for name in names)

    with_head, alone = hits(ckpt), hits(without_copy(ckpt))
    assert alone == 0 and with_head >= 5, (with_head, alone)
