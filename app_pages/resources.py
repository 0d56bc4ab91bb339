"""What the pages share: where models and uploads live, the model cache, the training slot."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app_pages.catalog import CheckpointInfo
from chatbot.lm.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from chatbot.chat.conversations import DATABASE_FILE, ConversationStore
from chatbot.errors import ChatbotError
from app_pages.plain_text import escape_markdown
from chatbot.lm.stepper import Stepper
from app_pages.train_job import JobSlot

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


MAX_UPLOAD_MB = 20  # also server.maxUploadSize in .streamlit/config.toml


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def loaded_model(folder: str, mtime: float):
    """One copy of each model per server process, shared read-only by every session (the
    newest mtime of config and weights in the key reloads a folder that was retrained)."""
    ckpt = load_checkpoint(folder)
    return ckpt, Stepper(ckpt.model)


def open_model(info: CheckpointInfo):
    """(checkpoint, stepper, files mtime) of a listed model; a folder that fails to load
    stops the page with the reason."""
    try:
        mtime = max((info.folder / f).stat().st_mtime for f in (CONFIG_FILE, WEIGHTS_FILE))
        ckpt, stepper = loaded_model(str(info.folder), mtime)
    except (ChatbotError, OSError) as exc:
        st.error(escape_markdown(f"Cannot load {info.name}: {exc}"))
        st.stop()
    return ckpt, stepper, mtime


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


def conversation_store() -> ConversationStore | None:
    """The server's conversation database (data/conversations.sqlite3); None, with the reason
    shown, when it cannot be opened: chatting still works, nothing is saved."""
    try:
        return _conversation_store(str(data_dir() / DATABASE_FILE))
    except ChatbotError as exc:
        st.sidebar.error(escape_markdown(f"Conversations are not being saved: {exc}"))
        return None
