"""What the pages share: where models and uploads live, the model cache, the training slot."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from chatbot.catalog import CheckpointInfo
from chatbot.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from chatbot.conversations import DATABASE_FILE, ConversationStore
from chatbot.errors import ChatbotError
from chatbot.plain_text import escape_markdown
from chatbot.stepper import Stepper
from chatbot.train_job import JobSlot

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
        st.error(escape_markdown(relative_paths(f"Cannot load {info.name}: {exc}")))
        st.stop()
    return ckpt, stepper, mtime


@st.cache_resource
def job_slot() -> JobSlot:
    """The server's single training slot; it outlives reruns, reloads and sessions."""
    return JobSlot()


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
        st.sidebar.error(escape_markdown(relative_paths(f"Conversations are not being saved: {exc}")))
        return None
