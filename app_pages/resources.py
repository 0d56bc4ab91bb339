"""What the pages share: where models and uploads live, the model cache, the training slot."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from chatbot.checkpoint import load_checkpoint
from chatbot.stepper import Stepper
from chatbot.train_job import JobSlot

ROOT = Path(__file__).resolve().parent.parent
CORPORA_DIR = ROOT / "corpora"


def models_dir() -> Path:
    """models/, or $LSTM_CHAT_MODELS (read on each run, so tests and people with models
    elsewhere can point the app at another folder)."""
    return Path(os.environ.get("LSTM_CHAT_MODELS", ROOT / "models"))


def data_dir() -> Path:
    """Where uploads are kept: data/, or $LSTM_CHAT_DATA."""
    return Path(os.environ.get("LSTM_CHAT_DATA", ROOT / "data"))
MAX_UPLOAD_MB = 20  # also server.maxUploadSize in .streamlit/config.toml


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def loaded_model(folder: str, config_mtime: float):
    """One copy of each model per server process, shared read-only by every session (the
    mtime in the key reloads a folder that was retrained)."""
    ckpt = load_checkpoint(folder)
    return ckpt, Stepper(ckpt.model)


@st.cache_resource
def job_slot() -> JobSlot:
    """The server's single training slot; it outlives reruns, reloads and sessions."""
    return JobSlot()
