"""Inspect page: the gates and the cell state of the model you are chatting with.

For the last reply (or any text), per token and per layer: heatmaps of the forget, input and
output gates and of the cell state for the most active units, and one unit's activation
coloured over the text, character by character.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_pages.catalog import list_checkpoints
from app_pages.plain_text import escape_markdown
from app_pages.resources import loaded_model, models_dir, open_model
from chatbot.lm.gates import Trace, memory_kept, trace
from chatbot.lm.state import RecurrentState

MAX_TOKENS = 2000
MAX_COLUMNS = 400  # heatmap columns; longer texts are averaged into this many bins
SHOWN = {"lstm": ["forget", "input", "output", "cell"], "gru": ["update", "reset", "candidate"],
         "rnn": []}
ABOUT = {
    "forget": "forget gate f_t: 1 keeps the cell's old value, 0 erases it",
    "input": "input gate i_t: how much of the new candidate is written into the cell",
    "output": "output gate o_t: how much of the cell is shown as the hidden state",
    "cell": "cell state C_t: the long-term memory itself",
    "update": "update gate z_t: 1 keeps the old hidden state, 0 replaces it",
    "reset": "reset gate r_t: how much of the old state the candidate may look at",
    "candidate": "candidate n_t: the new content proposed for the hidden state",
    "hidden": "hidden state h_t: what the layer passes on",
}
state = st.session_state


def token_labels(tokenizer, ids: list[int]) -> list[str]:
    marks = {tokenizer.user_id: "▸", tokenizer.bot_id: "◂", tokenizer.end_id: "¶"}
    return [marks.get(i) or tokenizer.decode([i]).replace("\n", "⏎") or "·" for i in ids]


@st.cache_data(max_entries=8, show_spinner="Running the explicit cells over the text…",
               hash_funcs={RecurrentState: lambda s: [t.cpu().numpy() for t in s.tensors()]})
def traced(folder: str, mtime: float, ids: tuple[int, ...], start: RecurrentState | None) -> dict:
    """Gate values as numpy arrays (cacheable), for a model folder, token ids and a start state."""
    ckpt, _ = loaded_model(folder, mtime)
    tr: Trace = trace(ckpt.model, list(ids), start)
    layers = [{"hidden": layer.h.numpy(), **{k: v.numpy() for k, v in layer.gates.items()}}
              for layer in tr.layers]
    return {"cell": tr.cell, "layers": layers, "kept": memory_kept(tr)}


def binned(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(steps, units) -> at most MAX_COLUMNS columns, averaging neighbouring steps."""
    width = max(1, int(np.ceil(len(values) / MAX_COLUMNS)))
    if width == 1:
        return values, 1
    pad = (-len(values)) % width
    padded = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    return padded.reshape(-1, width, values.shape[1]).mean(axis=1), width


def heatmap(values: np.ndarray, units: list[int], labels: list[str], name: str):
    data, width = binned(values[:, units])
    rows = [{"step": t * width, "unit": str(u), "value": float(data[t, k]),
             "token": labels[t * width] if width == 1 else f"tokens {t * width}-{t * width + width - 1}"}
            for t in range(len(data)) for k, u in enumerate(units)]
    gate = name not in ("cell", "candidate", "hidden")
    scale = (alt.Scale(domain=[0, 1], scheme="viridis") if gate
             else alt.Scale(domainMid=0, scheme="redblue", reverse=True))
    return (alt.Chart(pd.DataFrame(rows)).mark_rect()
            .encode(x=alt.X("step:O", title="token", axis=alt.Axis(labels=False, ticks=False)),
                    y=alt.Y("unit:O", sort=[str(u) for u in units], title="unit"),
                    color=alt.Color("value:Q", scale=scale, title=name),
                    tooltip=["step", "token", "unit", alt.Tooltip("value:Q", format=".3f")])
            .properties(height=max(120, 9 * len(units)), title=ABOUT[name]))


def unit_over_text(values: np.ndarray, labels: list[str], unit: int, per_line: int = 60):
    """The text as a grid of tokens, each coloured by the unit's activation there."""
    rows = [{"col": i % per_line, "line": i // per_line, "token": labels[i], "value": float(values[i, unit]),
             "step": i} for i in range(len(labels))]
    base = alt.Chart(pd.DataFrame(rows)).encode(
        x=alt.X("col:O", axis=None), y=alt.Y("line:O", axis=None))
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(domainMid=0, scheme="redblue", reverse=True),
                        title=f"unit {unit}"),
        tooltip=["step", "token", alt.Tooltip("value:Q", format=".3f")])
    text = base.mark_text(fontSize=12, font="monospace").encode(text="token:N")
    return (cells + text).properties(height=22 * (len(labels) // per_line + 1))


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
start = None
if source == "The last reply":
    if not has_reply:
        st.info(f"No reply from {name} yet: chat with it on the Chat page, or type some text.")
        st.stop()
    turn = chat.turns[-1]
    ids = turn.prompt_ids + turn.reply.ids
    start = turn.state_before_user
    st.caption("Your last message and the bot's reply, from the state the conversation had before it.")
else:
    text = st.text_area("Text", "The forget gate decides what the cell state keeps. \"Quotes\" open and close.",
                        key="inspect_text", max_chars=20_000)
    ids = tokenizer.encode(text)
if not ids:
    st.stop()
if len(ids) > MAX_TOKENS:
    st.warning(f"Showing the first {MAX_TOKENS:,} of {len(ids):,} tokens.")
    ids = ids[:MAX_TOKENS]

result = traced(str(info.folder), mtime, tuple(ids), start)
labels = token_labels(tokenizer, ids)
layers = result["layers"]
cfg = ckpt.model.config
left, mid, right = st.columns(3)
layer = left.selectbox("Layer", range(len(layers)), index=len(layers) - 1, key="inspect_layer",
                       format_func=lambda i: f"layer {i + 1} of {len(layers)}")
count = mid.slider("Units shown", 4, min(64, cfg.hidden_size), min(24, cfg.hidden_size), key="inspect_units")
if result["kept"] is not None:
    right.metric("Memory kept per step", f"{result['kept']:.3f}",
                 help="mean forget gate (LSTM) or update gate (GRU) over these tokens, units and layers")

values = layers[layer]
activity = values["cell" if "cell" in values else "hidden"]
ranking = np.argsort(-activity.std(axis=0))  # the units that change the most over the text
units = [int(u) for u in ranking[:count]]
st.caption(f"{len(ids):,} tokens · {cfg.cell.upper()} layer {layer + 1} · the {count} units whose "
           f"{'cell state' if 'cell' in values else 'hidden state'} varies most over this text"
           + ("" if len(ids) <= MAX_COLUMNS else f" · columns average {int(np.ceil(len(ids) / MAX_COLUMNS))} tokens"))
for gate in SHOWN[cfg.cell] + (["hidden"] if cfg.cell == "rnn" else []):
    st.altair_chart(heatmap(values[gate], units, labels, gate), width="stretch")

st.subheader("One unit over the text")
unit = st.selectbox("Unit", units + [u for u in range(cfg.hidden_size) if u not in units],
                    key="inspect_unit", help="ordered by activity")
kind = st.radio("Show", [k for k in ("cell", "hidden") if k in values], horizontal=True, key="inspect_kind")
st.altair_chart(unit_over_text(values[kind], labels, int(unit)), width="stretch")
st.caption(escape_markdown("▸ starts your message, ◂ starts the bot's reply, ¶ ends a turn, ⏎ is a line break. "
                           "Hover a token for its value."))

ranked = pd.DataFrame({"unit": units, "std over text": activity.std(axis=0)[units],
                       "mean |value|": np.abs(activity).mean(axis=0)[units]})
with st.expander("Most active units"):
    st.dataframe(ranked, hide_index=True)
