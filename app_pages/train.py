"""Train page: pick or upload a corpus, choose a tokenizer, a size (or let the budget pick it)
and a time budget; train in the background and watch validation and sample replies come in.

The run is a `train_lm.py` child process (app_pages/train_job.py), so it trains at the command
line's speed, survives reruns, page reloads and closed tabs; this page only reads its folder.
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
from chatbot.chat.quality import ready
from chatbot.errors import ChatbotError
from chatbot.text.corpus import CORPUS_SUFFIXES, load_corpus
from chatbot.train.budget import EVALUATIONS, RECIPE, Plan, plan_for_budget, too_few_steps_warning
from chatbot.text.tokenizers import SENTENCEPIECE_FIXED, CharTokenizer, fitted_vocab_size
from chatbot.train.presets import PRESETS

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
        chars = CharTokenizer.train(text.texts())  # one pass: its size and its characters
        vocab, distinct = chars.vocab_size, len(chars.chars)
    except ChatbotError as exc:
        return {"error": str(exc)}
    return {"characters": text.characters, "conversations": text.conversations, "is_chat": text.is_chat,
            "char_vocab": vocab, "distinct": distinct}


@st.cache_data(ttl=60, max_entries=32, show_spinner="Timing a few training steps on this machine…")
def budget_plan(size: tuple[int, int] | None, batch_size: int, seq_len: int, precision: str, vocab: int,
                train_tokens: int, budget: float) -> Plan:
    """What the budget buys here and now (timed again after a minute: the load changes)."""
    return plan_for_budget(budget, vocab, train_tokens, batch_size, seq_len, precision, size=size)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def loss_chart(snap: JobSnapshot):
    """Training loss and validation against seconds of training: the evaluations fall at equal
    shares of the budget; each has its sample in the list below the chart."""
    train = pd.DataFrame([(sec, loss) for _, sec, loss in snap.train_points[:: max(1, len(snap.train_points) // 400)]],
                         columns=["seconds", "loss"]).assign(series="train (nats/token)")
    replies = {r["step"]: f"{r['prompt'].strip()} → {r['reply']}"[:120] for r in snap.samples}
    val = pd.DataFrame([(sec, loss, replies.get(step, "")) for step, sec, loss in snap.val_points],
                       columns=["seconds", "loss", "sample"]).assign(series="validation (nats/char)")
    data = pd.concat([train, val.drop(columns="sample")])
    lines = (alt.Chart(data).mark_line()
             .encode(x=alt.X("seconds:Q", title="seconds of training"), y=alt.Y("loss:Q", title="loss"),
                     color=alt.Color("series:N", title=None)))
    points = alt.Chart(val).mark_point(size=60, filled=True).encode(  # each with its sample
        x="seconds:Q", y="loss:Q", color=alt.Color("series:N", title=None), tooltip=["seconds", "loss", "sample"])
    return (lines + points).properties(height=260)


def share_text(share) -> str:
    return "no words yet" if share is None else f"{share:.0%} words of the corpus"


def evaluations(snap: JobSnapshot, limit: int | None = None):
    """Every evaluation, newest first: validation, the corpus-word share and the sample reply."""
    records = snap.samples[::-1][:limit]
    with st.container(key="evaluations"):
        for r in records:
            st.caption(f"at {duration(r['seconds'])}, step {r['step']:,}: validation "
                       f"{r['val_nats_per_char']:.3f} nats/char · {share_text(r['corpus_words'])}")
            st.text(f"{r['prompt'].strip()} → {r['reply'] or '(empty)'}")


@st.fragment(run_every=1.0)
def progress_panel():
    """Reads the run folder once a second (the training is another process)."""
    job = job_slot().job
    snap = job.snapshot()
    name = job.out.name
    if not snap.active:
        st.rerun(scope="app")
    if snap.status == "starting":
        st.progress(0.0, text=f"Starting {name}: reading the corpus and timing this machine…")
    else:
        st.progress(snap.progress, text=f"Training {name} ({snap.size}): step {snap.step:,} · "
                                        f"{duration(snap.seconds)} · about {duration(snap.eta_seconds or 0)} "
                                        f"left · {snap.tokens_per_second:,.0f} tokens/s")
    if snap.plan:
        st.caption(escape_markdown(f"Fitted to the budget: {snap.plan}."))
    if snap.train_points:
        st.altair_chart(loss_chart(snap), width="stretch")
    evaluations(snap)
    if st.button("Cancel (keeps the model trained so far)", key="cancel"):
        job.cancel()
        st.toast("Stopping after this step and saving…")


def last_result(snap: JobSnapshot, name: str):
    if snap.status == "failed":
        st.error(escape_markdown(relative_paths(f"Training {name} failed: {snap.error}")))
        return
    if not snap.result:
        return
    q = snap.quality or {}
    verb = {"cancelled": "stopped", "interrupted": "was interrupted"}.get(snap.status, "finished")
    summary = (f"{name} {verb} at step {snap.result['steps']:,}: validation "
               f"{snap.result['val_nats_per_char']:.3f} nats/char "
               f"({snap.result['val_bits_per_char']:.3f} bits/char)")
    if q:
        summary += f", {share_text(q.get('corpus_words'))} in its sample replies"
    with st.container(key="verdict"):
        if q:
            (st.success if ready(q["verdict"]) else st.warning)(escape_markdown(f"Verdict: {q['verdict']}."))
        st.info(escape_markdown(summary + ". It is in the model picker on the Chat page."))
    if snap.status == "interrupted":
        st.caption(escape_markdown(relative_paths(f"The run ended early ({snap.error}); the model "
                                                  f"of its last evaluation is kept.")))
    if snap.train_points:
        st.altair_chart(loss_chart(snap), width="stretch")
    for s in q.get("samples", [])[:4]:
        st.text(f"{s['prompt'].strip()} → {s['reply'] or '(empty)'}")
    with st.expander("Every evaluation during training"):
        evaluations(snap)


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
    last_result(slot.job.snapshot(), slot.job.out.name)
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
kind = left.selectbox("Tokenizer", ["bpe", "unigram", "char"], key="tokenizer",
                      help="bpe/unigram: SentencePiece subwords (whole words learn faster). char: one "
                           "token per character.")
fitted, needed = fitted_vocab_size(summary["distinct"], chars), SENTENCEPIECE_FIXED + summary["distinct"]
vocab = right.number_input("Vocabulary size (0 = fitted)", 0, 32000, step=100, key="vocab_size",
                           disabled=kind == "char",
                           help=f"SentencePiece only. 0 fits it to the corpus: {fitted:,} for this one.")
if kind != "char" and 0 < vocab < needed:
    st.warning(f"A vocabulary of {vocab:,} is too small for this corpus's {summary['distinct']:,} distinct "
               f"characters: use 0 (fitted: {fitted:,}) or at least {needed:,}.")
preset_name = left.selectbox("Model size", ["auto", *PRESETS], key="preset",
                             format_func=lambda n: "auto: the largest that learns in the budget" if n == "auto"
                             else f"{n}: {PRESETS[n].num_layers}×{PRESETS[n].hidden_size}")
preset = PRESETS.get(preset_name)
budget_minutes = right.number_input("Time budget (minutes)", 0.1, 240.0, step=0.5, key="budget")
tokens = chars if kind == "char" else chars // 3
vocab_guess = min(summary["char_vocab"] + 3, 4000) if kind == "char" else int(vocab or fitted)
train_tokens = int(tokens * 0.9)
if running:
    st.caption("The size a budget buys is timed once this run is over.")  # timing now would slow it
else:
    shape = RECIPE if preset is None else preset.train_settings()
    plan = budget_plan(None if preset is None else (preset.num_layers, preset.hidden_size), shape["batch_size"],
                       shape["seq_len"], shape["precision"], vocab_guess, train_tokens, budget_minutes * 60)
    epochs = plan.expected_steps * plan.batch_size * plan.seq_len / max(1, train_tokens)
    about = "" if preset is None else f"{preset.about}. "
    st.caption(escape_markdown(
        f"{about}On this machine now, {plan.size} gets about {plan.expected_steps:,} steps in "
        f"{budget_minutes:g} minutes (about {epochs:.1f} epochs of this corpus); the run times "
        f"itself again as it starts and validates {EVALUATIONS} times along the way."))
    if preset is not None and (warning := too_few_steps_warning(plan, budget_minutes * 60)):
        st.warning(escape_markdown(warning))

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
                         vocab_size=None if kind == "char" or not vocab else int(vocab), preset=preset,
                         time_budget=budget_minutes * 60)
st.button("Train", type="primary", key="train", disabled=request is None or running,
          on_click=start_training, args=(request,),
          help="one run at a time on this server" if running else None)
