"""Conversations in SQLite: a restored session continues exactly as the original would have."""

import os
import pickle
import sqlite3

import pytest
import torch

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.conversations import (ConversationConflict, ConversationStore, default_title,
                                   restore_session)
from chatbot.errors import ChatbotError
from chatbot.lm.model import LanguageModel, ModelConfig
from chatbot.chat.sampling import SamplingConfig

MESSAGES = ["hello", "what is an lstm?", "my name is Mina", "what is my name?"]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "data" / "conversations.sqlite3")


def session(ckpt, **sampling):
    return ChatSession(ckpt.model, ckpt.tokenizer,
                       SamplingConfig(**{"temperature": 1.0, "max_new_tokens": 30, **sampling}))


def talk(chat, store, cid, messages, version=0, fingerprint=None, ckpt=None):
    replies = []
    for message in messages:
        replies.append("".join(chat.send(message)))
        version = store.save(cid, chat, "tiny", fingerprint or ckpt.fingerprint, version)
    return replies, version


def reopened(ckpt, store, cid, **sampling):
    chat = session(ckpt, **sampling)
    notice = restore_session(chat, store.load(cid), ckpt.fingerprint)
    return chat, notice


@pytest.mark.parametrize("seed", [7, None])
def test_a_restored_conversation_continues_exactly(ckpt, store, seed):
    """With a seed, and without one (the generator's position is saved too)."""
    original = session(ckpt, seed=seed)
    talk(original, store, "c1", MESSAGES[:3], ckpt=ckpt)
    restored, notice = reopened(ckpt, store, "c1", seed=seed)
    assert notice is None
    assert restored.transcript() == original.transcript() and restored.earlier == []
    assert restored.state.equals(original.state)
    assert "".join(restored.send(MESSAGES[3])) == "".join(original.send(MESSAGES[3]))
    assert "".join(restored.regenerate()) == "".join(original.regenerate())
    assert restored.rewind() == original.rewind() == MESSAGES[3]
    assert restored.state.equals(original.state)


def test_a_reply_cut_short_is_continued_exactly_after_a_restore(ckpt, store):
    original = session(ckpt, seed=3, max_new_tokens=4)
    talk(original, store, "c", ["what is an lstm?"], ckpt=ckpt)
    assert not original.turns[-1].reply.ended
    restored, _ = reopened(ckpt, store, "c", seed=3, max_new_tokens=4)
    assert "".join(restored.continue_reply()) == "".join(original.continue_reply())
    assert restored.turns[-1].reply.ids == original.turns[-1].reply.ids


def test_the_database_is_sqlite_in_wal_mode_with_one_row_per_turn(ckpt, store):
    chat = session(ckpt, seed=1)
    talk(chat, store, "c", MESSAGES[:2], ckpt=ckpt)
    assert store.journal_mode() == "wal"
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT position, user, fingerprint FROM turns ORDER BY position").fetchall()
    assert rows == [(0, MESSAGES[0], ckpt.fingerprint), (1, MESSAGES[1], ckpt.fingerprint)]
    chat.rewind()
    store.save("c", chat, "tiny", ckpt.fingerprint, 2)
    assert [t.user for t in store.load("c").turns] == [MESSAGES[0]]


def test_a_memory_from_other_weights_is_never_applied(ckpt, store):
    chat = session(ckpt, seed=1)
    talk(chat, store, "c", MESSAGES[:2], fingerprint="0123456789abcdef")
    other = LanguageModel(ModelConfig(vocab_size=ckpt.tokenizer.vocab_size, hidden_size=40, num_layers=3))
    for model in (ckpt.model, other):  # the same shapes, or not
        fresh = ChatSession(model, ckpt.tokenizer, SamplingConfig(seed=1, max_new_tokens=5))
        notice = restore_session(fresh, store.load("c"), ckpt.fingerprint)
        assert "another model" in notice and "0123456789abcdef" in notice
        assert fresh.turns == [] and [u for u, _ in fresh.earlier] == MESSAGES[:2]
        assert fresh.transcript() == chat.transcript()
        assert all((t == 0).all() for t in fresh.state.tensors())
        "".join(fresh.send("hello"))  # and it chats on


def test_turns_under_a_new_model_come_back_whole_after_the_old_ones_as_words(ckpt, store):
    first = session(ckpt, seed=5)
    talk(first, store, "c", MESSAGES[:2], fingerprint="old-weights")
    second, notice = reopened(ckpt, store, "c", seed=5)
    assert notice and len(second.earlier) == 2
    _, version = talk(second, store, "c", MESSAGES[2:3], version=store.load("c").version, ckpt=ckpt)
    third, notice = reopened(ckpt, store, "c", seed=5)
    assert notice is None and len(third.earlier) == 2 and len(third.turns) == 1
    assert third.transcript() == second.transcript()
    assert "".join(third.send(MESSAGES[3])) == "".join(second.send(MESSAGES[3]))


def test_an_unreadable_memory_keeps_the_transcript(ckpt, store, tmp_path):
    chat = session(ckpt, seed=1)
    talk(chat, store, "c", MESSAGES[:2], ckpt=ckpt)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for blob in (b"garbage", pickle.dumps(Payload())):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE conversations SET memory = ?", (blob,))
        fresh, notice = reopened(ckpt, store, "c", seed=1)
        assert "could not be read" in notice and fresh.transcript() == chat.transcript()
    assert not marker.exists()


def test_two_writers_of_one_conversation_never_interleave(ckpt, store):
    a = session(ckpt, seed=1)
    _, version = talk(a, store, "c", MESSAGES[:1], ckpt=ckpt)
    b, _ = reopened(ckpt, store, "c", seed=1)
    talk(a, store, "c", MESSAGES[1:2], version=version, ckpt=ckpt)
    "".join(b.send("a different second message"))
    with pytest.raises(ConversationConflict, match="another tab"):
        store.save("c", b, "tiny", ckpt.fingerprint, version)
    store.save("c-fork", b, "tiny", ckpt.fingerprint, 0)
    assert [t.user for t in store.load("c").turns] == MESSAGES[:2]
    assert [t.user for t in store.load("c-fork").turns] == [MESSAGES[0], "a different second message"]
    store.delete("c")
    with pytest.raises(ConversationConflict):
        store.save("c", a, "tiny", ckpt.fingerprint, version + 1)


def test_list_rename_delete(ckpt, store):
    for cid, message in [("a", "hello"), ("b", "what is an lstm?")]:
        talk(session(ckpt, seed=1), store, cid, [message], ckpt=ckpt)
    listed = store.list()
    assert [(c.id, c.title, c.turns) for c in listed] == [("b", "what is an lstm?", 1), ("a", "hello", 1)]
    assert store.rename("a", "  my   first\nchat ") == "my first chat"
    assert store.load("a").title == "my first chat"
    with pytest.raises(ChatbotError, match="cannot be empty"):
        store.rename("a", " \n")
    store.delete("b")
    assert [c.id for c in store.list()] == ["a"] and store.load("b") is None
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM turns WHERE conversation = 'b'").fetchone()[0] == 0
    assert default_title("x" * 100).endswith("…") and len(default_title("x" * 100)) == 40


def test_a_damaged_database_file_is_named_with_the_fix(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ChatbotError, match="move it aside") as err:
        ConversationStore(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"this is not a database" * 100  # nothing lost


def test_the_saved_generator_state_is_the_sessions(ckpt, store):
    chat = session(ckpt)  # unseeded
    talk(chat, store, "c", MESSAGES[:1], ckpt=ckpt)
    restored, _ = reopened(ckpt, store, "c")
    assert torch.equal(restored.generator.get_state(), chat.generator.get_state())
