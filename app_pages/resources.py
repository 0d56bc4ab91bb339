"""What the pages share: where models and uploads live, the model cache, the training slot."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import streamlit as st

from app_pages.catalog import CheckpointInfo
from app_pages.plain_text import escape_markdown
from app_pages.train_job import JobSlot
from chatbot.chat.conversations import DATABASE_FILE, Conversations, ConversationStore, owner_id
from chatbot.chat.engine import GenerationEngine
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import WEIGHTS_FILE, load_checkpoint
from chatbot.lm.spec import CONFIG_FILE
from chatbot.lm.stepper import Stepper

ROOT = Path(__file__).resolve().parent.parent


def corpora_dir() -> Path:
    """The corpora the Train page offers: corpora/, or $LSTM_CHAT_CORPORA."""
    return Path(os.environ.get("LSTM_CHAT_CORPORA", ROOT / "corpora"))


def models_dir() -> Path:
    """models/, or $LSTM_CHAT_MODELS (read on each run, so tests and people with models
    elsewhere can point the app at another folder)."""
    return Path(os.environ.get("LSTM_CHAT_MODELS", ROOT / "models"))


def data_dir() -> Path:
    """Where conversations and uploads are kept: data/, or $LSTM_CHAT_DATA."""
    return Path(os.environ.get("LSTM_CHAT_DATA", ROOT / "data"))


def relative_paths(text: str) -> str:
    """`text` with the server's folders written as the app names them (models/..., data/...,
    corpora/..., and the app's own folder as .), so a message shown in the browser never
    gives away where the server keeps its files."""
    folders = [(models_dir(), "models"), (data_dir(), "data"), (corpora_dir(), "corpora"), (ROOT, ".")]
    spelled = sorted({(str(spelling), name) for folder, name in folders
                      for spelling in (folder, folder.resolve()) if spelling.is_absolute()},
                     key=lambda pair: -len(pair[0]))
    for absolute, name in spelled:
        text = text.replace(absolute, name)
    return text


MAX_UPLOAD_MB = 20  # also server.maxUploadSize in .streamlit/config.toml


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def loaded_model(folder: str, mtime: float):
    """One copy of each model per server process, shared read-only by every session (the
    newest mtime of config and weights in the key reloads a folder that was retrained), with
    its generation engine: every session's reply steps in its batch (chat/engine.py)."""
    ckpt = load_checkpoint(folder)
    return ckpt, GenerationEngine(ckpt.model, Stepper(ckpt.model))


def open_model(info: CheckpointInfo):
    """(checkpoint, generation engine, files mtime) of a listed model; a folder that fails to
    load stops the page with the reason."""
    try:
        mtime = max((info.folder / f).stat().st_mtime for f in (CONFIG_FILE, WEIGHTS_FILE))
        ckpt, engine = loaded_model(str(info.folder), mtime)
    except (ChatbotError, OSError) as exc:
        st.error(escape_markdown(relative_paths(f"Cannot load {info.name}: {exc}")))
        st.stop()
    return ckpt, engine, mtime


@st.cache_resource
def _job_slot(data: str) -> JobSlot:
    return JobSlot(Path(data))


def job_slot() -> JobSlot:
    """The server's single training slot; it outlives reruns, reloads and sessions (and,
    through the data folder, a restart of the server)."""
    return _job_slot(str(data_dir()))


def keep_conversation_in_url() -> None:
    """The open conversation's id in the address bar (?c=...), so a reload finds it."""
    conversation = st.session_state.get("conv_id")
    if conversation and st.query_params.get("c") != conversation:
        st.query_params["c"] = conversation


@st.cache_resource
def _conversation_store(path: str) -> ConversationStore:
    return ConversationStore(path)


def conversation_store() -> ConversationStore:
    """The server's conversation database (data/conversations.sqlite3). When it is damaged or
    cannot be opened, store.problem says why and nothing is saved; chatting still works."""
    return _conversation_store(str(data_dir() / DATABASE_FILE))


# Whose conversations a session may see. Each browser gets an unguessable key (256 random
# bits) in a cookie; the database stores only its hash. A page reload, a second tab and a
# server restart send the same cookie; another browser (or person) has another key and sees
# none of these conversations, whatever ?c= it asks for. When the server has Streamlit's
# login configured ([auth] in .streamlit/secrets.toml) and the person signs in, the account
# is the owner instead, on any browser.
OWNER_COOKIE = "lstm_chat_owner"
OWNER_KEY = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
COOKIE_DAYS = 400  # the longest a browser keeps a cookie


def signed_in_account() -> str | None:
    """The signed-in account (issuer and subject) when st.login is in use, else None."""
    try:
        user = st.user.to_dict()
    except Exception:  # no login configured: st.user has nothing to say
        return None
    if user.get("is_logged_in") is not True:
        return None
    subject = user.get("sub") or user.get("email")
    return f"{user.get('iss', '')}|{subject}" if subject else None


def login_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file
        return False


def conversation_owner() -> str:
    """The owner id of this session's conversations (see above). The browser key is chosen
    once per session: from the cookie the browser sent, or new (then written to the cookie)."""
    account = signed_in_account()
    if account:
        return owner_id("account:" + account)
    key = st.session_state.get("owner_key")
    if not (isinstance(key, str) and OWNER_KEY.match(key)):
        sent = st.context.cookies.get(OWNER_COOKIE)
        key = sent if isinstance(sent, str) and OWNER_KEY.match(sent) else secrets.token_urlsafe(32)
        st.session_state.owner_key = key
    if st.context.cookies.get(OWNER_COOKIE) != key:  # the browser does not have it yet
        st.sidebar.html(
            f"<script>document.cookie = '{OWNER_COOKIE}={key}; path=/; max-age={COOKIE_DAYS * 86400}; "
            f"samesite=strict' + (location.protocol === 'https:' ? '; secure' : '');</script>",
            unsafe_allow_javascript=True, width="content")
    return owner_id("browser:" + key)


def my_conversations() -> Conversations:
    return conversation_store().owned_by(conversation_owner())
