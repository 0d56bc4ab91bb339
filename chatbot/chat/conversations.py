"""Conversations on disk: SQLite (standard library, WAL mode), one row per turn.

Each turn keeps its words, its token ids and the memory snapshots taken before the message
and before the reply (snapshots.py); the conversation keeps the memory after its
last token and the sampling generator's position. Restoring them gives back a ChatSession
whose next reply is exactly the one it would have produced without the reload or restart.

A memory belongs to the weights that made it (the checkpoint's fingerprint): under any other
model the transcript is kept and the memory starts fresh, with a notice saying so.

Every write checks the conversation's version, so two tabs continuing the same conversation
never interleave their turns: the second writer gets ConversationConflict and saves its
version as a new conversation.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChatbotError
from .sampling import Reply
from .session import ChatSession, SessionRecord, Turn
from .snapshots import decode_memory, decode_turn, encode_memory, encode_turn

DATABASE_FILE = "conversations.sqlite3"
MAX_TITLE_CHARS = 80

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    model TEXT NOT NULL,          -- the model folder's name, to pick it again on resume
    fingerprint TEXT NOT NULL,    -- the weights the memory below belongs to
    sampling TEXT NOT NULL,       -- JSON: the sampling settings in use
    memory BLOB,                  -- safetensors: state after the last token + generator
    version INTEGER NOT NULL,     -- bumped by every save; a stale writer is refused
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    user TEXT NOT NULL,
    cut_from INTEGER,             -- the message's length before it was cut, if it was
    prompt_ids TEXT NOT NULL,     -- JSON list: exactly what was fed for the message
    reply_ids TEXT NOT NULL,      -- JSON list
    reply_text TEXT NOT NULL,
    ended INTEGER NOT NULL,
    fingerprint TEXT,             -- the weights its snapshots belong to (NULL: words only)
    snapshots BLOB,               -- safetensors: states before message and reply, logits
    PRIMARY KEY (conversation, position)
);
"""


class ConversationConflict(ChatbotError):
    """Someone else (another tab) saved or deleted this conversation since we read it."""


@dataclass
class ConversationSummary:
    id: str
    title: str
    model: str
    updated: float
    turns: int


@dataclass
class StoredTurn:
    user: str
    cut_from: int | None
    prompt_ids: list[int]
    reply_ids: list[int]
    reply_text: str
    ended: bool
    fingerprint: str | None
    snapshots: bytes | None


@dataclass
class StoredConversation:
    id: str
    title: str
    model: str
    fingerprint: str
    sampling: dict
    memory: bytes | None
    version: int
    turns: list[StoredTurn] = field(default_factory=list)


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:16]


def default_title(message: str) -> str:
    words = " ".join(message.split())
    return words if len(words) <= 40 else words[:39] + "…"


class ConversationStore:
    """One SQLite file shared by every session of the server. Each call opens its own
    connection (Streamlit runs sessions on different threads); WAL lets readers and the
    writer proceed together."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ChatbotError(
                f"cannot open the conversation database {self.path} ({exc}). If the file is "
                f"damaged, move it aside (nothing in it is deleted) and a new one is started; "
                f"if the folder is read-only, set LSTM_CHAT_DATA to a writable folder.") from None

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self):
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock now: check-then-write is atomic
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def journal_mode(self) -> str:
        with self._connect() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    def list(self, limit: int = 50) -> list[ConversationSummary]:
        """The most recently updated first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT c.id, c.title, c.model, c.updated, COUNT(t.position) FROM conversations c "
                "LEFT JOIN turns t ON t.conversation = c.id GROUP BY c.id "
                "ORDER BY c.updated DESC LIMIT ?", (limit,)).fetchall()
        return [ConversationSummary(*row) for row in rows]

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._connect() as db:
            row = db.execute("SELECT id, title, model, fingerprint, sampling, memory, version "
                             "FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                return None
            turns = db.execute("SELECT user, cut_from, prompt_ids, reply_ids, reply_text, ended, "
                               "fingerprint, snapshots FROM turns WHERE conversation = ? "
                               "ORDER BY position", (conversation_id,)).fetchall()
        conv = StoredConversation(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])
        conv.turns = [StoredTurn(u, cut, json.loads(p), json.loads(r), text, bool(e), fp, snap)
                      for u, cut, p, r, text, e, fp, snap in turns]
        return conv

    def save(self, conversation_id: str, chat: ChatSession, model: str, fingerprint: str,
             version: int) -> int:
        """Write what changed since `version` (the version this session last read or wrote;
        0 for a new conversation) and return the new version. Only the last turn can change
        between saves (a reply, a regenerate, a continue), so it and any turns after what the
        database holds are written; turns the session no longer has are deleted."""
        sampling = chat.sampling.settings()
        record = chat.record()
        memory = encode_memory(record.state, record.generator)
        earlier, total = len(record.earlier), len(record.earlier) + len(record.turns)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT version FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if (row[0] if row else 0) != version:
                raise ConversationConflict(
                    "this conversation was changed in another tab or window since this one read it.")
            if row is None:
                first = (record.earlier[0][0] if record.earlier else record.turns[0].user) if total else "New chat"
                db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                           (conversation_id, default_title(first), model, fingerprint,
                            json.dumps(sampling), memory, now, now))
            else:
                db.execute("UPDATE conversations SET model = ?, fingerprint = ?, sampling = ?, "
                           "memory = ?, version = version + 1, updated = ? WHERE id = ?",
                           (model, fingerprint, json.dumps(sampling), memory, now, conversation_id))
            stored = db.execute("SELECT COUNT(*) FROM turns WHERE conversation = ?",
                                (conversation_id,)).fetchone()[0]
            db.execute("DELETE FROM turns WHERE conversation = ? AND position >= ?", (conversation_id, total))
            for position in range(max(min(stored, total) - 1, 0), total):
                if position < earlier:
                    if position < stored:
                        continue  # words-only turns never change once written
                    user, reply = record.earlier[position]
                    values = (user, None, "[]", "[]", reply, 1, None, None)
                else:
                    values = _turn_values(record.turns[position - earlier], fingerprint)
                db.execute("INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (conversation_id, position, *values))
        return version + 1

    def rename(self, conversation_id: str, title: str) -> str:
        title = " ".join(str(title).split())[:MAX_TITLE_CHARS]
        if not title:
            raise ChatbotError("a conversation's name cannot be empty: type a few words.")
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        return title

    def delete(self, conversation_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))


def _turn_values(turn: Turn, fingerprint: str) -> tuple:
    reply = turn.reply
    return (turn.user, turn.cut_from, json.dumps(turn.prompt_ids), json.dumps(reply.ids), reply.text,
            int(reply.ended), fingerprint,
            encode_turn(turn.state_before_user, turn.state_before_reply, turn.logits_before_reply,
                        reply.next_logits))


def restore_session(chat: ChatSession, stored: StoredConversation, fingerprint: str) -> str | None:
    """Put a stored conversation into `chat` (which is reset first). Returns a notice for the
    person when the memory could not be restored (another model, or unreadable), else None.

    The memory after the last token is restored only if it was made by these weights; the
    turns then come back whole from the last one as far back as they were made by these
    weights too. Any turns before that are kept as words only (`chat.earlier`)."""
    chat.reset()
    words = [(t.user, t.reply_text) for t in stored.turns]
    if not stored.turns:
        return None
    if stored.fingerprint != fingerprint or stored.memory is None:
        chat.restore(SessionRecord(words))
        return (f"This conversation's memory was made by another model (saved under "
                f"“{stored.model}”, weights {stored.fingerprint}; this one is {fingerprint}). "
                f"The transcript is kept; the bot's memory starts fresh from here.")
    whole = len(stored.turns)
    while whole > 0 and stored.turns[whole - 1].fingerprint == fingerprint \
            and stored.turns[whole - 1].snapshots is not None:
        whole -= 1
    try:
        state, generator = decode_memory(stored.memory, chat.model)
        turns = [_turn_from(t, chat) for t in stored.turns[whole:]]
        chat.restore(SessionRecord(words[:whole], turns, state, generator))
    except (ChatbotError, RuntimeError) as exc:
        chat.restore(SessionRecord(words))
        return (f"This conversation's memory could not be read ({exc}). The transcript is kept; "
                f"the bot's memory starts fresh from here.")
    return None


def _turn_from(stored: StoredTurn, chat: ChatSession) -> Turn:
    before_user, before_reply, logits, next_logits = decode_turn(stored.snapshots, chat.model)
    vocab = chat.model.config.vocab_size
    if any(not 0 <= i < vocab for i in stored.prompt_ids + stored.reply_ids):
        raise ChatbotError(f"a saved token id is outside this model's {vocab} tokens.")
    reply = Reply(ids=list(stored.reply_ids), text=stored.reply_text, ended=stored.ended,
                  next_logits=next_logits)
    return Turn(stored.user, list(stored.prompt_ids), before_user, before_reply, logits, reply,
                stored.cut_from)
