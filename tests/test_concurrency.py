"""Many people at once: 20 threads, each one person's ChatSession on one shared model (as the
app's sessions are), replying and saving to one SQLite file at the same time. Every reply must
equal what that session produces alone with the same seed."""

import pytest

from conftest import in_threads

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.conversations import ConversationStore, restore_session
from chatbot.chat.sampling import SamplingConfig
from chatbot.lm.stepper import Stepper

SESSIONS = 20


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def conversation(n: int) -> list[str]:
    return [f"hello {n}", "what is an lstm?" if n % 2 else "안녕하세요", f"my name is Mina{n}", "what is my name?"]


def sampling(n: int) -> SamplingConfig:
    """Different seeds and temperatures; every fifth session uses beam search."""
    return SamplingConfig(seed=n, temperature=0.5 + 0.05 * n, max_new_tokens=40,
                          beam_width=2 if n % 5 == 4 else 1)


def talk(session: ChatSession, messages: list[str], store=None, cid=None, fingerprint="") -> list[str]:
    replies, version = [], 0
    for message in messages:
        replies.append("".join(session.send(message)))
        if store is not None:
            version = store.save(cid, session, "tiny", fingerprint, version)
    return replies


def test_twenty_concurrent_sessions_on_one_model_never_cross_talk(ckpt, tmp_path):
    stepper = Stepper(ckpt.model)  # shared, like the app's cached model

    def session(n):
        return ChatSession(ckpt.model, ckpt.tokenizer, sampling(n), stepper)

    alone = [talk(session(n), conversation(n)) for n in range(SESSIONS)]
    # Nearly all differ, so cross-talk would show (two beam searches may agree word for word).
    assert len({tuple(r) for r in alone}) >= SESSIONS - 2

    store = ConversationStore(tmp_path / "conversations.sqlite3").owned_by("me")
    together = in_threads(lambda n: talk(session(n), conversation(n), store, f"c{n}", ckpt.fingerprint),
                          SESSIONS)
    assert together == alone

    for n in range(SESSIONS):  # and each saved conversation is that person's alone
        restored = ChatSession(ckpt.model, ckpt.tokenizer, sampling(n), stepper)
        assert restore_session(restored, store.load(f"c{n}"), ckpt.fingerprint) is None
        assert [m["content"] for m in restored.transcript()[1::2]] == alone[n]
