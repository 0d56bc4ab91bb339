"""The token view of a reply (a toggle under each reply on the Chat page): each token shaded
by the probability it was sampled with; hovering a token lists the model's 10 likeliest
tokens at that step, clicking it (or choosing its number) shows them in a table with their
probability after each filter (temperature, repetition penalty, top-k, top-p, min-p,
typical-p) and the filter that removed each; then the reply's mean surprise and its entropy
along the reply as a chart. The numbers are the reply's TokenSteps (chatbot/chat/sampling.py),
recorded as it was sampled.

The model's text is drawn only as Altair text marks, tooltips and dataframe cells: plain
text, never Markdown or HTML."""

from __future__ import annotations

import unicodedata

import altair as alt
import pandas as pd
import streamlit as st

from chatbot.chat.sampling import TokenStep
from chatbot.text.tokenizers import Tokenizer

LINE_COLUMNS = 56  # character cells per line of the token chart
CELL_PX, LINE_PX = 11, 26
MAX_SHOWN = 1500  # tokens drawn in the token chart (the numbers below cover the whole reply)


def labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token's text as the reply shows it, decoded in order so a character split over
    several tokens belongs to the token that completes it (the others show "…"). A line
    break shows as ⏎, a tab as →, the end of the turn as ¶."""
    decoder, out = tokenizer.stream_decoder(), []
    for token in ids:
        if token == tokenizer.end_id:
            out.append("¶")
            continue
        text = decoder.push(token)
        out.append(text.replace("\n", "⏎").replace("\t", "→") if text else "…")
    return out


def width(text: str) -> int:
    """Character cells `text` takes in a monospaced font (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text) or 1


def stage_label(step: TokenStep, j: int) -> str:
    name = step.stages[j]
    if name == "temperature" and step.stages[-1] == name and step.probability == 1.0 \
            and sum(1 for row in step.probs if row[j] > 0) == 1:
        name = "temperature 0 (greedy)"
    return name + (" · sampled from" if j == len(step.stages) - 1 and j > 0 else "")


def candidates_table(step: TokenStep, texts: list[str]) -> pd.DataFrame:
    """One row per candidate, one column per stage (its probability after it), and which
    filter removed it."""
    data = {"token": texts, "sampled": ["✓" if t == step.token else "" for t in step.candidates]}
    for j in range(len(step.stages)):
        data[stage_label(step, j)] = [row[j] for row in step.probs]
    data["removed by"] = [step.removed_by(i) or "" for i in range(len(step.candidates))]
    return pd.DataFrame(data)


def candidate_texts(tokenizer: Tokenizer, step: TokenStep) -> list[str]:
    """Each candidate token on its own, in quotes so a space shows (a lone byte as <0x..>)."""
    special = {tokenizer.end_id: "¶ (end of turn)", tokenizer.user_id: "<|user|>", tokenizer.bot_id: "<|bot|>",
               tokenizer.unk_id: "<|unk|>"}
    out = []
    for token in step.candidates:
        raw = tokenizer.token_bytes(token)
        if token in special:
            out.append(special[token])
            continue
        try:
            out.append(f"“{repr(raw.decode('utf-8'))[1:-1]}”")
        except UnicodeDecodeError:
            out.append(" ".join(f"<0x{b:02X}>" for b in raw))
    return out


def token_frame(tokenizer: Tokenizer, steps: list[TokenStep]) -> pd.DataFrame:
    """Where each token goes on the chart (lines of LINE_COLUMNS cells) and its tooltip."""
    rows, column, line = [], 0, 0
    for n, (step, text) in enumerate(zip(steps, labels(tokenizer, [s.token for s in steps]))):
        w = min(width(text), LINE_COLUMNS)
        if column + w > LINE_COLUMNS:
            column, line = 0, line + 1
        texts = candidate_texts(tokenizer, step)
        row = {"step": n + 1, "token": text, "x0": column, "x1": column + w, "xm": column + w / 2, "line": line,
               "probability": step.probability, "surprise (nats)": step.surprise,
               "entropy (nats)": step.entropy}
        for i, (t, p) in enumerate(zip(texts[:10], step.probs)):
            row[f"#{i + 1}"] = f"{t}  model {p[0]:.3f} → {p[-1]:.3f}" + (
                f" (removed by {step.removed_by(i)})" if step.removed_by(i) else "")
        rows.append(row)
        column += w
        if text == "⏎":
            column, line = 0, line + 1
    return pd.DataFrame(rows)


def token_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """The tokens in lines, each on a box shaded by the probability it was sampled with. On top
    lies a clear copy of the boxes that takes the pointer (a letter would otherwise catch a
    click meant for its token): hovering shows the tooltip, a click picks the token."""
    pick = alt.selection_point(name="pick", fields=["step"], on="click", clear=False)
    x = alt.X("x0:Q", scale=alt.Scale(domain=[0, LINE_COLUMNS], nice=False, zero=True), axis=None)
    y = alt.Y("line:O", axis=None)
    tooltip = ["step:Q", "token:N", alt.Tooltip("probability:Q", title="sampled with p", format=".3f"),
               alt.Tooltip("surprise (nats):Q", format=".2f")] + [
        f"{c}:N" for c in frame.columns if c.startswith("#")]
    base = alt.Chart(frame)
    boxes = base.mark_rect().encode(
        x=x, x2="x1:Q", y=y,
        color=alt.Color("probability:Q", title="sampled with p", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=alt.Legend(orient="top", gradientLength=160)),
        strokeWidth=alt.condition(pick, alt.value(3), alt.value(1), empty=False),
        stroke=alt.condition(pick, alt.value("#d62728"), alt.value("white"), empty=False))
    words = base.mark_text(font="monospace", fontSize=15, align="center").encode(
        x=alt.X("xm:Q", scale=alt.Scale(domain=[0, LINE_COLUMNS], nice=False, zero=True), axis=None),
        y=y, text="token:N",
        color=alt.condition("datum.probability > 0.6", alt.value("white"), alt.value("black")))
    hits = base.mark_rect(fill="white", fillOpacity=0.001, cursor="pointer").encode(
        x=x, x2="x1:Q", y=y, tooltip=tooltip).add_params(pick)
    return alt.layer(boxes.properties(name="boxes"), words.properties(name="letters"), hits.properties(name="hits")).properties(width=LINE_COLUMNS * CELL_PX, height=alt.Step(LINE_PX))


def along_chart(steps: list[TokenStep]) -> alt.Chart:
    """Entropy of the model's distribution at each step (a line), and the surprise of the
    token sampled there (points)."""
    long = pd.DataFrame([{"step": n + 1, "nats": v, "measure": m} for n, s in enumerate(steps)
                         for m, v in (("entropy", s.entropy), ("surprise of the sampled token", s.surprise))
                         if v != float("inf")])
    return alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=14), strokeWidth=1.5).encode(
        x=alt.X("step:Q", title="token"), y=alt.Y("nats:Q", title="nats"),
        color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="top", labelLimit=400)),
        tooltip=["step:Q", "measure:N", alt.Tooltip("nats:Q", format=".2f")]).properties(width=560, height=300)


def show_token_view(tokenizer: Tokenizer, steps: list[TokenStep], key: str) -> None:
    """The view itself; `key` names this reply's widgets (unique on the page)."""
    if not steps:
        st.caption("This reply has no tokens.")
        return
    chosen_key = f"{key}-step"

    def picked() -> None:  # a click on the chart chooses the token the table shows
        chosen = st.session_state[f"{key}-chart"]["selection"].get("pick") or []
        if chosen and isinstance(chosen[0].get("step"), int):
            st.session_state[chosen_key] = chosen[0]["step"]

    if st.session_state.get(chosen_key, 1) > len(steps):  # (a regenerated reply may be shorter)
        st.session_state[chosen_key] = len(steps)
    shown = steps[:MAX_SHOWN]
    st.altair_chart(token_chart(token_frame(tokenizer, shown)), on_select=picked, key=f"{key}-chart",
                    selection_mode="pick", width="content")
    if len(steps) > MAX_SHOWN:
        st.caption(f"The chart shows the first {MAX_SHOWN:,} of {len(steps):,} tokens.")
    st.caption("Shaded by the probability each token was sampled with. Hover a token for the model's "
               "10 likeliest tokens there; click it for their probability after each filter.")
    number = st.number_input("Token", 1, len(steps), key=chosen_key,
                             help="which token's candidates the table shows (a click on the chart sets it)")
    step = steps[int(number) - 1]
    st.dataframe(candidates_table(step, candidate_texts(tokenizer, step)), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in (stage_label(step, j) for j in range(len(step.stages)))})
    finite = [s.surprise for s in steps if s.surprise != float("inf")]
    mean_surprise = sum(finite) / len(finite) if finite else float("nan")
    st.caption(f"Mean surprise {mean_surprise:.2f} nats/token (−ln of the model's own probability of "
               f"each sampled token) · mean entropy {sum(s.entropy for s in steps) / len(steps):.2f} nats "
               f"· {len(steps):,} tokens")
    st.altair_chart(along_chart(steps), key=f"{key}-along", width="content")


def token_view_toggle(tokenizer: Tokenizer, steps: list[TokenStep] | None, ids: list[int], key: str) -> None:
    """The toggle under a reply, and the view when it is on. A reply without a record (made
    by beam search, or restored from the database) says why instead."""
    recorded = steps is not None and len(steps) == len(ids)
    why = None if recorded else (
        "not available for this reply: it is kept only for replies sampled in this tab since it was "
        "opened, not for beam search or replies restored from a saved conversation")
    if st.toggle("Token view", key=key, disabled=not recorded,
                 help=why or "each token shaded by the probability it was sampled with, the candidates "
                             "and what each filter did to them, the surprise and entropy along the reply") \
            and recorded:
        show_token_view(tokenizer, steps, key)
