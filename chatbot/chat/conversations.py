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

Every conversation has an owner (an opaque id: a hash of the browser's key or of the signed-in
account; see app_pages/resources.py). It is reached through `store.owned_by(owner)`, which
lists, opens, renames and deletes that owner's conversations and no one else's: knowing
another conversation's id is not enough.

A database that turns out to be damaged (not a database, malformed, its tables gone) is
copied aside once, never deleted or written to again by this process, and every later call
raises ConversationsUnavailable with `store.problem`, the reason: chatting goes on unsaved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import threading
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
    updated REAL NOT NULL,
    owner TEXT                    -- whose it is (NULL: saved before owners; shown to no one)
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
    stats TEXT,                   -- JSON: how the reply was made (tokens, tokens/s, first token)
    PRIMARY KEY (conversation, position)
);
"""
ADDED_COLUMNS = {"conversations": {"owner": "TEXT"}, "turns": {"stats": "TEXT"}}  # for older files
INDEX = "CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated)"


class ConversationConflict(ChatbotError):
    """Someone else (another tab) saved or deleted this conversation since we read it."""


class ConversationsUnavailable(ChatbotError):
    """The database cannot be used: damaged for good (ConversationStore.problem says why), or
    busy just now. The chat goes on; what it says is not saved."""


def owner_id(secret: str) -> str:
    """The owner stored with a conversation: a hash of the browser's key (or account), so the
    database never holds the key itself."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:32]


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
    stats: dict = field(default_factory=dict)


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
    writer proceed together. Conversations are read and written through owned_by(owner)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.problem: str | None = None  # why saving is off for good; None while it works
        self.damaged_copy: Path | None = None
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                for table, columns in ADDED_COLUMNS.items():
                    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns.items():
                        if name not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                db.execute(INDEX)
        except (sqlite3.Error, OSError) as exc:
            if _is_damage(exc):
                self._damaged(exc)
            else:
                self.problem = (f"cannot open the conversation database {self.path} ({exc}). If the "
                                f"folder is read-only, set LSTM_CHAT_DATA to a writable folder.")

    def owned_by(self, owner: str) -> "Conversations":
        if not isinstance(owner, str) or not owner:
            raise ValueError("a conversation owner is a non-empty string")
        return Conversations(self, owner)

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _guarded(self):
        """A connection, or ConversationsUnavailable: at once when the database is known to be
        damaged, and when SQLite fails (a damaged file is reported and copied aside here)."""
        if self.problem:
            raise ConversationsUnavailable(self.problem)
        try:
            with self._connect() as db:
                yield db
        except (sqlite3.Error, OSError) as exc:
            if _is_damage(exc):
                self._damaged(exc)
                raise ConversationsUnavailable(self.problem) from None
            raise ConversationsUnavailable(f"the conversation database could not be used just now "
                                           f"({exc}).") from None

    @contextlib.contextmanager
    def _transaction(self):
        with self._guarded() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock now: check-then-write is atomic
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _damaged(self, exc: BaseException) -> None:
        """Turn saving off for good with the reason, after copying the file (and its WAL)
        aside once. The damaged file itself is left exactly as it is."""
        with self._lock:
            if self.problem:
                return
            copy = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            kept = "it is left as it is"
            try:
                if self.path.exists():
                    shutil.copy2(self.path, copy)
                    wal = self.path.with_name(self.path.name + "-wal")
                    if wal.exists():
                        shutil.copy2(wal, copy.with_name(copy.name + "-wal"))
                    self.damaged_copy = copy
                    kept = f"a copy is kept as {copy}, and the file itself is left as it is"
            except OSError as copy_error:
                kept = f"it is left as it is (a copy could not be made: {copy_error.strerror})"
            self.problem = (f"the conversation database {self.path} is damaged ({exc}); {kept}. "
                            f"Chatting goes on without saving. To start a new database, move the "
                            f"damaged file aside and restart the app.")

    def journal_mode(self) -> str:
        with self._guarded() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    def _list(self, owner: str, limit: int) -> list[ConversationSummary]:
        with self._guarded() as db:
            rows = db.execute(
                "SELECT c.id, c.title, c.model, c.updated, COUNT(t.position) FROM conversations c "
                "LEFT JOIN turns t ON t.conversation = c.id WHERE c.owner = ? GROUP BY c.id "
                "ORDER BY c.updated DESC LIMIT ?", (owner, limit)).fetchall()
        return [ConversationSummary(*row) for row in rows]

    def _load(self, owner: str, conversation_id: str) -> StoredConversation | None:
        with self._guarded() as db:
            row = db.execute("SELECT id, title, model, fingerprint, sampling, memory, version "
                             "FROM conversations WHERE id = ? AND owner = ?",
                             (conversation_id, owner)).fetchone()
            if row is None:
                return None
            turns = db.execute("SELECT user, cut_from, prompt_ids, reply_ids, reply_text, ended, "
                               "fingerprint, snapshots, stats FROM turns WHERE conversation = ? "
                               "ORDER BY position", (conversation_id,)).fetchall()
        conv = StoredConversation(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])
        conv.turns = [StoredTurn(u, cut, json.loads(p), json.loads(r), text, bool(e), fp, snap,
                                 _stats(stats))
                      for u, cut, p, r, text, e, fp, snap, stats in turns]
        return conv

    def _save(self, owner: str, conversation_id: str, chat: ChatSession, model: str,
              fingerprint: str, version: int) -> int:
        sampling = chat.sampling.settings()
        record = chat.record()
        memory = encode_memory(record.state, record.generator)
        earlier, total = len(record.earlier), len(record.earlier) + len(record.turns)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT version, owner FROM conversations WHERE id = ?",
                             (conversation_id,)).fetchone()
            if row is not None and row[1] != owner:
                raise ConversationConflict("this conversation id is taken; this one is saved under a new id.")
            if (row[0] if row else 0) != version:
                raise ConversationConflict(
                    "this conversation was changed in another tab or window since this one read it.")
            if row is None:
                first = (record.earlier[0][0] if record.earlier else record.turns[0].user) if total else "New chat"
                db.execute("INSERT INTO conversations (id, title, model, fingerprint, sampling, memory, "
                           "version, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                           (conversation_id, default_title(first), model, fingerprint,
                            json.dumps(sampling), memory, now, now, owner))
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
                    values = (user, None, "[]", "[]", reply, 1, None, None, None)
                else:
                    values = _turn_values(record.turns[position - earlier], fingerprint)
                db.execute("INSERT OR REPLACE INTO turns (conversation, position, user, cut_from, "
                           "prompt_ids, reply_ids, reply_text, ended, fingerprint, snapshots, stats) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (conversation_id, position, *values))
        return version + 1

    def _rename(self, owner: str, conversation_id: str, title: str) -> str:
        title = " ".join(str(title).split())[:MAX_TITLE_CHARS]
        if not title:
            raise ChatbotError("a conversation's name cannot be empty: type a few words.")
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ? AND owner = ?",
                       (title, conversation_id, owner))
        return title

    def _delete(self, owner: str, conversation_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner))


class Conversations:
    """One owner's conversations in a ConversationStore. Each method raises
    ConversationsUnavailable when the database cannot be used."""

    def __init__(self, store: ConversationStore, owner: str):
        self.store, self.owner = store, owner

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def problem(self) -> str | None:
        return self.store.problem

    def journal_mode(self) -> str:
        return self.store.journal_mode()

    def list(self, limit: int = 50) -> list[ConversationSummary]:
        """The most recently updated first."""
        return self.store._list(self.owner, limit)

    def load(self, conversation_id: str) -> StoredConversation | None:
        """The conversation, or None when this owner has none by that id (another owner's
        conversation is None too: its existence is not revealed)."""
        return self.store._load(self.owner, conversation_id)

    def save(self, conversation_id: str, chat: ChatSession, model: str, fingerprint: str,
             version: int) -> int:
        """Write what changed since `version` (the version this session last read or wrote;
        0 for a new conversation) and return the new version. Only the last turn can change
        between saves (a reply, a regenerate, a continue), so it and any turns after what the
        database holds are written; turns the session no longer has are deleted. An id that
        another owner uses is a ConversationConflict, like a stale version."""
        return self.store._save(self.owner, conversation_id, chat, model, fingerprint, version)

    def rename(self, conversation_id: str, title: str) -> str:
        return self.store._rename(self.owner, conversation_id, title)

    def delete(self, conversation_id: str) -> None:
        self.store._delete(self.owner, conversation_id)


def _is_damage(exc: BaseException) -> bool:
    """A file that is not a usable conversation database, as opposed to a busy or read-only one."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed"
    message = str(exc).lower()
    return any(sign in message for sign in ("no such table", "no such column", "malformed",
                                            "not a database"))


def _stats(text: str | None) -> dict:
    try:
        stats = json.loads(text) if text else {}
    except ValueError:
        return {}
    return stats if isinstance(stats, dict) else {}


def _turn_values(turn: Turn, fingerprint: str) -> tuple:
    reply = turn.reply
    return (turn.user, turn.cut_from, json.dumps(turn.prompt_ids), json.dumps(reply.ids), reply.text,
            int(reply.ended), fingerprint,
            encode_turn(turn.state_before_user, turn.state_before_reply, turn.logits_before_reply,
                        reply.next_logits), json.dumps(turn.stats))


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
                stored.cut_from, dict(stored.stats))
