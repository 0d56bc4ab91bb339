"""Conversations in SQLite: a restored session continues exactly as the original would have."""

import os
import pickle
import sqlite3

import pytest
import torch

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.conversations import (ConversationConflict, ConversationStore, ConversationsUnavailable,
                                   default_title, restore_session)
from chatbot.errors import ChatbotError
from chatbot.lm.model import LanguageModel, ModelConfig
from chatbot.chat.sampling import SamplingConfig

MESSAGES = ["hello", "what is an lstm?", "my name is Mina", "what is my name?"]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "data" / "conversations.sqlite3").owned_by("me")


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


def test_a_damaged_database_file_turns_saving_off_with_the_reason_and_is_kept(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = ConversationStore(path)
    assert "is damaged" in store.problem and str(path) in store.problem
    assert "move the damaged file aside and restart" in store.problem
    assert store.damaged_copy.read_bytes() == path.read_bytes() == b"this is not a database" * 100
    with pytest.raises(ConversationsUnavailable, match="is damaged"):
        store.owned_by("me").list()
    assert path.read_bytes() == b"this is not a database" * 100  # nothing lost


def test_a_database_damaged_while_in_use_turns_saving_off_and_keeps_a_copy(ckpt, store, tmp_path):
    """The issue's reproduction: truncate -s0 the file, remove -wal and -shm, use it again."""
    chat = session(ckpt, seed=1)
    talk(chat, store, "c", MESSAGES[:1], ckpt=ckpt)
    path = store.path
    with open(path, "r+b") as f:
        f.truncate(0)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    with pytest.raises(ConversationsUnavailable, match="is damaged") as err:
        store.list()
    assert "no such table" in str(err.value) and store.problem == str(err.value)
    copy = store.store.damaged_copy
    assert copy.parent == path.parent and copy.name.startswith("conversations.sqlite3.damaged-")
    "".join(chat.send(MESSAGES[1]))  # the chat goes on; nothing more is written
    for action in (lambda: store.save("c", chat, "tiny", ckpt.fingerprint, 1), lambda: store.load("c"),
                   lambda: store.rename("c", "x"), lambda: store.delete("c")):
        with pytest.raises(ConversationsUnavailable):
            action()
    assert path.exists() and path.stat().st_size == 0 and copy.exists()  # never deleted
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, copy.name])


def test_each_owner_sees_only_their_own_conversations(ckpt, tmp_path):
    shared = ConversationStore(tmp_path / "conversations.sqlite3")
    mine, theirs = shared.owned_by("alice"), shared.owned_by("bob")
    talk(session(ckpt, seed=1), mine, "secret", ["my secret password is hunter2"], ckpt=ckpt)
    assert [c.id for c in mine.list()] == ["secret"]
    assert theirs.list() == [] and theirs.load("secret") is None  # knowing the id is not enough
    theirs.rename("secret", "pwned")
    theirs.delete("secret")
    chat = session(ckpt, seed=2)
    "".join(chat.send("hello"))
    with pytest.raises(ConversationConflict):  # an id another owner uses is never written
        theirs.save("secret", chat, "tiny", ckpt.fingerprint, 0)
    with pytest.raises(ConversationConflict):
        theirs.save("secret", chat, "tiny", ckpt.fingerprint, 1)
    kept = mine.load("secret")
    assert kept.title == "my secret password is hunter2" and len(kept.turns) == 1
    with sqlite3.connect(shared.path) as db:
        assert db.execute("SELECT owner FROM conversations").fetchall() == [("alice",)]


def test_a_database_from_before_owners_opens_and_its_old_rows_are_shown_to_no_one(ckpt, tmp_path):
    path = tmp_path / "conversations.sqlite3"
    with sqlite3.connect(path) as db:  # the schema before owners and per-reply stats
        db.executescript("""
            CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, model TEXT NOT NULL,
                fingerprint TEXT NOT NULL, sampling TEXT NOT NULL, memory BLOB, version INTEGER NOT NULL,
                created REAL NOT NULL, updated REAL NOT NULL);
            CREATE TABLE turns (conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                position INTEGER NOT NULL, user TEXT NOT NULL, cut_from INTEGER, prompt_ids TEXT NOT NULL,
                reply_ids TEXT NOT NULL, reply_text TEXT NOT NULL, ended INTEGER NOT NULL, fingerprint TEXT,
                snapshots BLOB, PRIMARY KEY (conversation, position));
            INSERT INTO conversations VALUES ('old', 'old chat', 'tiny', 'f', '{}', NULL, 1, 0, 0);""")
    store = ConversationStore(path)
    assert store.problem is None
    mine = store.owned_by("me")
    assert mine.list() == [] and mine.load("old") is None
    chat = session(ckpt, seed=1)
    talk(chat, mine, "new", ["hello"], ckpt=ckpt)
    chat.turns[-1].stats = {"tokens": 3}
    mine.save("new", chat, "tiny", ckpt.fingerprint, 1)
    assert [c.id for c in mine.list()] == ["new"] and mine.load("new").turns[0].stats == {"tokens": 3}


def test_a_replys_numbers_are_saved_with_it(ckpt, store):
    chat = session(ckpt, seed=1)
    talk(chat, store, "c", MESSAGES[:1], ckpt=ckpt)
    chat.turns[-1].stats = {"tokens": 12, "tokens_per_second": 950.5, "first_token_ms": 8.0}
    store.save("c", chat, "tiny", ckpt.fingerprint, 1)
    restored, _ = reopened(ckpt, store, "c", seed=1)
    assert restored.turns[-1].stats == chat.turns[-1].stats


def test_the_saved_generator_state_is_the_sessions(ckpt, store):
    chat = session(ckpt)  # unseeded
    talk(chat, store, "c", MESSAGES[:1], ckpt=ckpt)
    restored, _ = reopened(ckpt, store, "c")
    assert torch.equal(restored.generator.get_state(), chat.generator.get_state())
