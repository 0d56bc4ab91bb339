"""Inspect page: what the memory of the model you are chatting with follows in the text.

For the last exchange (or any text): the units of a layer whose hidden state follows a
nameable feature of the text (inside quotes, position in the line, whose turn it is, Korean,
... found by correlation, as in Karpathy et al. 2015 and LSTMVis), drawn along the text one
token per column; one unit coloured over the whole text; the gates and cell of those units,
with what their values mean in plain words; and the saturated units, set apart.
The full explanation is docs/inspect.md.
"""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_pages.catalog import list_checkpoints
from app_pages.resources import loaded_model, models_dir, open_model
from chatbot.lm.gates import Trace, half_life, memory_kept, trace
from chatbot.lm.state import RecurrentState
from chatbot.lm.units import (FEATURES, MIN_R, SHORT, correlations, pick_units, pieces, text_features, token_labels,
                              usable)

MAX_TOKENS = 2000
WINDOW = 36  # tokens drawn along the x axis at once, one per column
DEFAULT_TEXT = ('She said "keep the cell state" (and the gates).\nThe forget gate decides what to keep.\n'
                "안녕하세요! 반가워요.\nWhat is an LSTM? A network (with gates) that remembers.")
GATES = {"lstm": ["forget", "input", "output", "cell"], "gru": ["update", "reset", "candidate"], "rnn": []}
KEEP_GATE = {"lstm": "forget", "gru": "update"}
ABOUT = {
    "forget": "forget gate f: 1 keeps the cell's old value, 0 erases it",
    "input": "input gate i: how much of the new candidate is written into the cell",
    "output": "output gate o: how much of the cell is shown as h",
    "cell": "cell state C: the memory itself (unbounded)",
    "update": "update gate z: 1 keeps the old hidden state, 0 replaces it",
    "reset": "reset gate r: how much of the old state the candidate may look at",
    "candidate": "candidate: the new content proposed",
    "hidden": "hidden state h: what the layer passes on (between -1 and 1)",
}
state = st.session_state


@st.cache_data(max_entries=8, show_spinner="Running the explicit cells over the text…",
               hash_funcs={RecurrentState: lambda s: [t.cpu().numpy() for t in s.tensors()]})
def traced(folder: str, mtime: float, ids: tuple[int, ...], start: RecurrentState | None) -> dict:
    """Gate values as numpy arrays (cacheable), for a model folder, token ids and a start state."""
    ckpt, _ = loaded_model(folder, mtime)
    tr: Trace = trace(ckpt.model, list(ids), start)
    layers = [{"hidden": layer.h.numpy(), **{k: v.numpy() for k, v in layer.gates.items()}}
              for layer in tr.layers]
    return {"cell": tr.cell, "layers": layers, "kept": memory_kept(tr)}


def legend(title: str) -> alt.Legend:
    """A colour bar above the chart, its title and labels never cut short."""
    return alt.Legend(title=title, orient="top", direction="horizontal", gradientLength=220,
                      titleLimit=0, labelLimit=0, labelOverlap=True)


def along_text(values: np.ndarray, rows: list[tuple[int, str]], labels: list[str], start: int, name: str):
    """A heatmap with the text along the x axis, one token per column (its characters are
    the axis labels), and one row per (unit, row label)."""
    end = min(len(labels), start + WINDOW)
    shown = labels[start:end]
    data = pd.DataFrame([{"step": t, "row": label, "unit": unit, "token": labels[t], "value": float(values[t, unit])}
                         for t in range(start, end) for unit, label in rows])
    if name in ("forget", "input", "output", "update", "reset"):
        scale = alt.Scale(domain=[0, 1], scheme="viridis")
    elif name in ("hidden", "candidate"):
        scale = alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True)
    else:  # the cell: unbounded, symmetric around 0
        top = float(np.abs(values[start:end][:, [u for u, _ in rows]]).max()) or 1.0
        scale = alt.Scale(domain=[-top, top], scheme="redblue", reverse=True)
    wide = any(len(label) > 2 for label in shown)  # word pieces: stand the labels up
    x_axis = alt.Axis(labelExpr=f"{json.dumps(shown, ensure_ascii=False)}[datum.value - {start}]",
                      labelAngle=-90 if wide else 0, labelFont="monospace", labelFontSize=13,
                      labelAlign="right" if wide else "center", labelBaseline="middle" if wide else "top",
                      labelOverlap=False, labelLimit=0, ticks=False, title=None, orient="bottom")
    return (alt.Chart(data).mark_rect()
            .encode(x=alt.X("step:O", axis=x_axis),
                    y=alt.Y("row:N", sort=[label for _, label in rows], title=None,
                            axis=alt.Axis(labelLimit=0, labelOverlap=False, labelFontSize=12)),
                    color=alt.Color("value:Q", scale=scale, legend=legend(ABOUT[name])),
                    tooltip=["step", "token", "unit", alt.Tooltip("value:Q", format=".3f")])
            .properties(width=alt.Step(14), height=alt.Step(18)))


def unit_over_text(values: np.ndarray, labels: list[str], unit: int, per_line: int = 40):
    """The whole text as lines of characters, each coloured by the unit's value after the token
    it belongs to (Karpathy's picture); a line break or a full line starts a new line."""
    rows, col, line = [], 0, 0
    for step, label in enumerate(labels):
        for ch in label:
            rows.append({"col": col, "line": line, "char": ch, "token": label, "step": step,
                         "value": float(values[step, unit])})
            col += 1
            if ch == "⏎" or col == per_line:
                col, line = 0, line + 1
    top = float(np.abs(values[:, unit]).max()) or 1.0
    base = alt.Chart(pd.DataFrame(rows)).encode(x=alt.X("col:O", axis=None), y=alt.Y("line:O", axis=None))
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(domain=[-top, top], scheme="redblue", reverse=True),
                        legend=legend(f"unit {unit}")),
        tooltip=["step", "token", alt.Tooltip("value:Q", format=".3f")])
    text = base.mark_text(fontSize=13, font="monospace").encode(
        text="char:N", color=alt.condition(f"abs(datum.value) > {0.6 * top}", alt.value("white"), alt.value("black")))
    return (cells + text).properties(width=alt.Step(15), height=alt.Step(22))


def kept_per_unit(gate: np.ndarray, shown: list[int], name: str):
    """How many units keep how much per step (each unit's mean over the text), the shown ones marked."""
    means = gate.mean(axis=0)
    data = pd.DataFrame({"kept": means, "unit": np.arange(len(means)),
                         "shown": np.where(np.isin(np.arange(len(means)), shown), "units shown above", "other units")})
    return (alt.Chart(data).mark_bar()
            .encode(x=alt.X("kept:Q", bin=alt.Bin(extent=[0, 1], step=0.05),
                            title=f"units by their mean {name} gate over the text (memory kept per step)"),
                    y=alt.Y("count():Q", title=None),
                    color=alt.Color("shown:N", legend=alt.Legend(title=None, orient="top", labelLimit=0)))
            .properties(width=520, height=160))


st.title("Inspect the memory")
infos = {i.name: i for i in list_checkpoints(models_dir()) if i.valid}
if not infos:
    st.error("No usable model in models/. Train one first.")
    st.stop()
chatting = state.get("chat_model", (None,))[0]
names = list(infos)
name = st.selectbox("Model", names, index=names.index(chatting) if chatting in names else 0, key="inspect_model")
info = infos[name]
ckpt, _, mtime = open_model(info)
tokenizer = ckpt.tokenizer

chat = state.get("chat")
has_reply = chat is not None and chatting == name and chat.turns
source = st.radio("What to look at", ["The last reply", "Text I type"], horizontal=True,
                  index=0 if has_reply else 1, key="inspect_source")
start_state = None
if source == "The last reply":
    if not has_reply:
        st.info(f"No reply from {name} yet: chat with it on the Chat page, or type some text.")
        st.stop()
    turn = chat.turns[-1]
    ids = turn.prompt_ids + turn.reply.ids
    start_state = turn.state_before_user
    st.caption("Your last message and the bot's reply, from the state the conversation had before it.")
else:
    text = st.text_area("Text", DEFAULT_TEXT, key="inspect_text", max_chars=20_000)
    ids = tokenizer.encode(text)
if not ids:
    st.stop()
if len(ids) > MAX_TOKENS:
    st.warning(f"Showing the first {MAX_TOKENS:,} of {len(ids):,} tokens.")
    ids = ids[:MAX_TOKENS]

result = traced(str(info.folder), mtime, tuple(ids), start_state)
texts = pieces(tokenizer, ids)
axis_labels, grid_labels = token_labels(texts, ids, "␣"), token_labels(texts, ids)
layers = result["layers"]
cfg = ckpt.model.config
left, right = st.columns(2)
layer = left.selectbox("Layer", range(len(layers)), index=len(layers) - 1, key="inspect_layer",
                       format_func=lambda i: f"layer {i + 1} of {len(layers)}")
count = right.slider("Units shown", 2, min(24, cfg.hidden_size), min(8, cfg.hidden_size), key="inspect_units")
values = layers[layer]
hidden = values["hidden"]

# 1. Units that follow something nameable in the text.
st.subheader("Units that follow something in the text")
features = usable(text_features(texts, ids))
r = correlations(hidden, features)
trackers = pick_units(r, list(features), count)
st.markdown("Each unit's hidden state *h* (what the layer passes on, between −1 and 1) is compared with "
            "simple features of the text by their correlation *r*: +1 means the unit rises and falls "
            "exactly with the feature, −1 exactly against it, 0 not at all. These are the units of this "
            "layer that follow a feature best, the idea of Karpathy et al. 2015, [*Visualizing and "
            "Understanding Recurrent Networks*](https://arxiv.org/abs/1506.02078), and of "
            "[LSTMVis](https://arxiv.org/abs/1606.07461) (Strobelt et al.).")
if not trackers:
    st.info("This text is too uniform to compare with: it needs quotes, brackets, line breaks, turns or "
            "two scripts. Type some, or chat first.")
    st.stop()
st.dataframe(pd.DataFrame({"unit": [t.unit for t in trackers], "follows": [FEATURES[t.feature] for t in trackers],
                           "r": [round(t.r, 2) for t in trackers], "how strongly": [t.strength for t in trackers]}),
             hide_index=True)
best = {f: float(np.abs(r[k]).max()) for k, f in enumerate(features)}
unfollowed = [f"{FEATURES[f]} (best |r| {v:.2f})" for f, v in best.items() if v < MIN_R]
absent = [FEATURES[f] for f in FEATURES if f not in features]
st.caption("; ".join(part for part in (
    f"No unit of this layer follows: {', '.join(unfollowed)}" if unfollowed else "",
    f"not in this text: {', '.join(absent)}" if absent else "") if part) or "Every feature is in this text.")
rows = [(t.unit, f"{t.unit} {SHORT[t.feature]} {t.r:+.2f}") for t in trackers]
first = 0
if len(ids) > WINDOW:
    last = len(ids) - WINDOW
    if state.get("inspect_from", 0) > last:
        state.inspect_from = last
    first = st.slider("Tokens shown from", 0, last, key="inspect_from",
                      help=f"the charts show {WINDOW} tokens at a time, one per column")
st.altair_chart(along_text(hidden, rows, axis_labels, first, "hidden"), width="content")
st.caption("▸ starts your message, ◂ starts the bot's reply, ¶ ends a turn, ⏎ is a line break, ␣ a space. "
           "Hover a square for its value.")

# 2. One unit over the whole text.
st.subheader("One unit over the text")
units = [t.unit for t in trackers]
unit = st.selectbox("Unit", units + [u for u in range(cfg.hidden_size) if u not in units], key="inspect_unit",
                    format_func=lambda u: next((f"{u}: {FEATURES[t.feature]} (r {t.r:+.2f})" for t in trackers
                                                if t.unit == u), str(u)))
kind = st.radio("Show", [k for k in ("hidden", "cell") if k in values], horizontal=True, key="inspect_kind",
                format_func={"hidden": "hidden state h", "cell": "cell state C"}.get)
st.altair_chart(unit_over_text(values[kind], grid_labels, int(unit)), width="content")

# 3. The gates of those units, and what their values mean.
if cfg.cell in KEEP_GATE:
    st.subheader("The gates of these units")
    keep = KEEP_GATE[cfg.cell]
    if cfg.cell == "lstm":
        top = float(np.abs(values["cell"]).max())
        st.markdown(
            f"**The cell state C is not bounded.** Each step adds to it (C = f·C + i·C̃), so a unit that "
            f"keeps adding in one direction can reach large values: in this layer, up to {top:,.0f}. What "
            f"the layer passes on is h = o·tanh(C), and tanh is already ±0.96 at C = ±2: past that, a "
            f"larger C changes nothing downstream. A cell of 300 just means this unit is **firmly on** "
            f"(−300: firmly off), and it would take many steps of forgetting to turn it around.")
    st.markdown(
        f"**Why the {keep} gate sits near 1.** Keeping memory is the default: a value of 1 keeps all of "
        f"it, and anything less erases a little at every step, which adds up. At 0.99 per step half the "
        f"memory is gone after {half_life(0.99):.0f} steps; at 0.9, after {half_life(0.9):.1f}; at 0.5, "
        f"after one. So a unit meant to remember across a sentence needs 0.99 or more, and the picture "
        f"for it is a flat bright block.")
    gate = values[keep]
    shown_kept, layer_kept = float(gate[:, units].mean()), float(gate.mean())
    a, b, c = st.columns(3)
    a.metric("Memory kept per step", f"{result['kept']:.3f}",
             help=f"mean {keep} gate over these tokens and every unit of every layer")
    b.metric(f"Layer {layer + 1}, all units", f"{layer_kept:.3f}")
    c.metric("The units shown", f"{shown_kept:.3f}")
    per_unit = gate.mean(axis=0)
    st.caption(
        f"“Memory kept per step” averages the {keep} gate over every unit of all {len(layers)} layers "
        f"(a reply's caption on the Chat page averages over the reply's tokens only). Units differ "
        f"widely, so the average says little about any one of them: in layer {layer + 1}, "
        f"{int((per_unit >= 0.95).sum())} of {len(per_unit)} units keep 0.95 or more per step (a memory "
        f"that lasts {half_life(0.95):.0f}+ steps) and {int((per_unit < 0.5).sum())} keep less than half "
        f"(gone after one step). At {result['kept']:.3f} a memory halves in "
        f"{half_life(result['kept']):.1f} steps; at the shown units' {shown_kept:.3f}, in "
        f"{half_life(shown_kept):.1f}"
        + (": units that follow the text must also let go of it." if shown_kept < layer_kept - 0.02 else "."))
    st.altair_chart(kept_per_unit(gate, units, keep), width="content", height=220)
    for name_ in GATES[cfg.cell]:
        st.altair_chart(along_text(values[name_], rows, axis_labels, first, name_), width="content")

    if cfg.cell == "lstm":
        cell = values["cell"]
        heavy = [int(u) for u in np.argsort(-np.abs(cell).mean(axis=0))[:8]]
        with st.expander("The saturated units (integrators), and why they are not shown first"):
            st.markdown("These units' cells are the largest in size. Their h = o·tanh(C) sits at its limit "
                        "for most of the text, so they change little and follow none of the features: "
                        "they are slow counters or switches set long ago. Earlier versions of this page "
                        "led with them.")
            st.dataframe(pd.DataFrame({
                "unit": heavy, "mean |C|": np.abs(cell[:, heavy]).mean(axis=0).round(1),
                "largest |C|": np.abs(cell[:, heavy]).max(axis=0).round(1),
                "share of steps with |tanh C| > 0.99": (np.abs(np.tanh(cell[:, heavy])) > 0.99).mean(axis=0).round(2),
                f"mean {keep} gate": gate[:, heavy].mean(axis=0).round(3),
                "best |r| with a feature": np.abs(r[:, heavy]).max(axis=0).round(2) if len(r) else 0.0}),
                hide_index=True)
st.caption("What every value means, and how the units are chosen: docs/inspect.md in the project.")
