"""Train page: pick or upload a corpus, choose a tokenizer and a size, train in the background.

The run lives in the server's training slot (a worker thread), so it survives reruns, page
reloads and closed tabs; this page only polls it.
"""

from __future__ import annotations

import re
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from app_pages.plain_text import escape_markdown
from app_pages.resources import MAX_UPLOAD_MB, corpora_dir, data_dir, job_slot, models_dir, relative_paths
from app_pages.train_job import JobRequest, JobSnapshot
from app_pages.uploads import save_upload
from chatbot.errors import ChatbotError
from chatbot.text.corpus import CORPUS_SUFFIXES, load_corpus
from chatbot.text.tokenizers import CharTokenizer
from chatbot.train.presets import PRESETS, epoch_seconds, seconds_per_step

NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def corpus_choices() -> list[Path]:
    return [p for p in sorted(corpora_dir().iterdir()) if p.is_dir() or p.suffix in CORPUS_SUFFIXES]


def files_stamp(path: Path) -> tuple:
    """Names, sizes and mtimes of a corpus's files: a new stamp reads the corpus again."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@st.cache_data(max_entries=16, show_spinner="Reading the corpus…")
def corpus_summary(path: str, stamp: tuple) -> dict:
    """What the form shows, read once per version of the files (a large corpus takes seconds
    a pass); a corpus that cannot be trained on gives its error instead."""
    try:
        text = load_corpus(path)
        vocab = CharTokenizer.train(text.texts()).vocab_size
    except ChatbotError as exc:
        return {"error": str(exc)}
    return {"characters": text.characters, "conversations": text.conversations, "is_chat": text.is_chat,
            "char_vocab": vocab}


@st.cache_data(show_spinner="Timing a few training steps on this machine…")
def measured_step_seconds(preset_name: str, vocab_bucket: int) -> float:
    return seconds_per_step(PRESETS[preset_name], vocab_bucket)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def loss_chart(snap: JobSnapshot):
    train = pd.DataFrame(snap.train_points[:: max(1, len(snap.train_points) // 400)],
                         columns=["step", "loss"]).assign(series="train (nats/token)")
    val = pd.DataFrame(snap.val_points, columns=["step", "loss"]).assign(series="validation (nats/char)")
    data = pd.concat([train, val])
    return (alt.Chart(data).mark_line(point=alt.OverlayMarkDef(size=20))
            .encode(x="step:Q", y=alt.Y("loss:Q", title="loss"), color=alt.Color("series:N", title=None))
            .properties(height=260))


@st.fragment(run_every=1.0)
def progress_panel():
    """Polls the worker once a second; never touched by the worker thread itself."""
    job = job_slot().job
    snap = job.snapshot()
    name = job.request.out.name
    if not snap.active:
        st.rerun(scope="app")
    eta = f" · about {duration(snap.eta_seconds)} left" if snap.eta_seconds is not None else ""
    st.progress(snap.progress, text=f"Training {name}: step {snap.step:,} · {duration(snap.seconds)}"
                                    f"{eta} · {snap.tokens_per_second:,.0f} tokens/s")
    if snap.train_points:
        st.altair_chart(loss_chart(snap), width="stretch")
    for step, text in snap.samples[-3:][::-1]:
        st.caption(f"sample at step {step:,}")
        st.text(text or "(empty)")
    if st.button("Cancel (keeps the last checkpoint)", key="cancel"):
        job.cancel()
        st.toast("Stopping after this step and saving…")


def last_result(snap: JobSnapshot, name: str):
    if snap.status == "failed":
        st.error(escape_markdown(relative_paths(f"Training {name} failed: {snap.error}")))
    elif snap.result:
        verb = "stopped" if snap.status == "cancelled" else "finished"
        st.success(f"{name} {verb} at step {snap.result['steps']:,}: validation "
                   f"{snap.result['val_bits_per_char']:.3f} bits/char. It is in the model picker "
                   f"on the Chat page.")
        if snap.train_points:
            st.altair_chart(loss_chart(snap), width="stretch")


def start_training(request: JobRequest) -> None:
    """Train button callback: start the run and clear the name field for the next one."""
    try:
        job_slot().start(request)
    except ChatbotError as exc:
        st.session_state.train_error = str(exc)
    else:
        st.session_state.model_out = ""


st.title("Train a model")
slot = job_slot()
running = slot.job is not None and slot.job.snapshot().active
if running:
    progress_panel()
elif slot.job is not None:
    last_result(slot.job.snapshot(), slot.job.request.out.name)
if "train_error" in st.session_state:
    st.error(escape_markdown(relative_paths(st.session_state.pop("train_error"))))
# The form stays on the page while a run goes on (with Train disabled), so its widgets keep
# their values across the run.

source = st.radio("Corpus", ["Upload a file", "From corpora/"], horizontal=True, key="source")
corpus: Path | None = None
if source == "Upload a file":
    upload = st.file_uploader(f"A .txt file (any text) or .jsonl chat file, UTF-8, up to {MAX_UPLOAD_MB} MB",
                              type=["txt", "jsonl"], key="upload")
    if upload is not None:
        try:
            corpus = save_upload(data_dir() / "uploads", upload.name, upload.getvalue(), MAX_UPLOAD_MB)
        except ChatbotError as exc:
            st.error(escape_markdown(relative_paths(str(exc))))
else:
    options = corpus_choices()
    corpus = st.selectbox("Corpus", options, format_func=lambda p: p.name, key="corpus_choice")

if corpus is None:
    st.stop()
summary = corpus_summary(str(corpus), files_stamp(corpus))
if "error" in summary:
    st.error(escape_markdown(relative_paths(summary["error"].replace(str(corpus.parent) + "/", ""))))
    st.stop()
chars, is_chat = summary["characters"], summary["is_chat"]
st.caption(f"{escape_markdown(corpus.name)}: {chars:,} characters"
           + (f", {summary['conversations']:,} conversations" if is_chat else ""))

left, right = st.columns(2)
kind = left.selectbox("Tokenizer", ["char", "bpe", "unigram"], key="tokenizer",
                      help="char: one token per character. bpe/unigram: SentencePiece subwords.")
vocab = right.number_input("Vocabulary size", 300, 32000, step=100, key="vocab_size",
                           disabled=kind == "char", help="SentencePiece only")
preset_name = left.selectbox("Model size", list(PRESETS), key="preset",
                             format_func=lambda n: f"{n}: {PRESETS[n].num_layers}×{PRESETS[n].hidden_size}")
preset = PRESETS[preset_name]
budget_minutes = right.number_input("Time budget (minutes)", 0.1, 240.0, step=0.5, key="budget")
tokens = chars if kind == "char" else chars // 3
vocab_guess = min(summary["char_vocab"], 4000) if kind == "char" else int(vocab)
per_epoch = epoch_seconds(preset, int(tokens * 0.9), measured_step_seconds(preset_name, vocab_guess))
st.caption(f"{preset.about}. On this machine one epoch of this corpus takes about "
           f"{duration(per_epoch)}; the budget allows about {budget_minutes * 60 / per_epoch:.1f} epochs.")

name = st.text_input("Name of the new model", key="model_out",
                     placeholder="letters, digits, - and _ (it becomes a folder in models/)")
problem = None
if name and not NAME_RULE.match(name):
    problem = "use letters, digits, - and _ only (up to 40), starting with a letter or digit."
elif name and (models_dir() / name).exists():
    problem = f"models/{name} already exists; choose another name."
if problem:
    st.error(escape_markdown(f"Model name: {problem}"))
request = None
if name and problem is None:
    request = JobRequest(corpus=corpus, out=models_dir() / name, tokenizer=kind,
                         vocab_size=None if kind == "char" else int(vocab), preset=preset,
                         time_budget=budget_minutes * 60, chat=is_chat)
st.button("Train", type="primary", key="train", disabled=request is None or running,
          on_click=start_training, args=(request,),
          help="one run at a time on this server" if running else None)
