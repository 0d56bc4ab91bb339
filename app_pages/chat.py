"""Chat page: a conversation whose memory is the LSTM's state, streamed token by token.

Each browser session keeps its own ChatSession in st.session_state; the model is shared, and
so is its generation engine, which steps every tab's reply in one batch. Every reply is
saved to data/conversations.sqlite3 with the memory snapshots, and the conversation's id is
kept in the URL (?c=...), so a reload or a server restart resumes it. Only the browser (or
signed-in account) that saved a conversation can list or open it
(app_pages/resources.py: conversation_owner).
"""

from __future__ import annotations

import time

import streamlit as st

from app_pages.catalog import list_checkpoints
from app_pages.compare import adopt, compare_choices, compared_line, show_comparison
from app_pages.pacing import StreamStats, paced
from app_pages.plain_text import escape_markdown, escape_stream
from app_pages.token_view import token_view_toggle
from app_pages.resources import (conversation_owner, conversation_store, keep_conversation_in_url,
                                 login_configured, models_dir, open_model, relative_paths,
                                 signed_in_account)
from app_pages.transcript import transcript_json, transcript_markdown
from chatbot.chat.beam import beam_steps
from chatbot.chat.conversations import (ConversationConflict, ConversationsUnavailable, StoredConversation,
                                        new_conversation_id, restore_session)
from chatbot.chat.sampling import SETTINGS, SamplingConfig, Setting
from chatbot.chat.session import MAX_MESSAGE_CHARS, ChatSession
from chatbot.errors import ChatbotError
from chatbot.lm.gates import memory_kept, trace

state = st.session_state


def sidebar_settings():
    """Model picker and sampling controls; returns (CheckpointInfo, SamplingConfig)."""
    infos = list_checkpoints(models_dir())
    valid = {i.name: i for i in infos if i.valid}
    with st.sidebar:
        if not valid:
            st.error(escape_markdown("No usable model in models/. Train one on the Train page, or "
                                     "run: python train_lm.py --corpus corpora/ --out models/mine"))
        name = st.selectbox("Model", list(valid), key="model_name",
                            format_func=lambda n: valid[n].describe())
        broken = [i for i in infos if not i.valid]
        if broken:
            with st.expander(f"{len(broken)} folder(s) in models/ cannot be loaded"):
                for info in broken:
                    st.caption(escape_markdown(info.describe()))
        # Each setting is declared once, with its range and help, in chatbot/chat/sampling.py.
        st.subheader("Sampling")
        values = {key: setting_widget(key, s) for key, s in SETTINGS.items() if s.group == "sampling"}
        fixed = st.checkbox("Fixed seed", key="use_seed", help="the same seed gives the same replies")
        seed = st.number_input("Seed", 0, 2**31 - 1, key="seed", disabled=not fixed)
        st.subheader("Beam search")
        values.update({key: setting_widget(key, s) for key, s in SETTINGS.items() if s.group == "beam search"})
    if name is None:
        st.stop()
    sampling = SamplingConfig(**values, seed=int(seed) if fixed else None)
    return valid[name], sampling


def setting_widget(key: str, s: Setting):
    """A whole number gets a number box, a fraction a slider over the range the library accepts
    (an open end, which a slider cannot leave out, starts or stops one step inside)."""
    if s.whole:
        return int(st.number_input(s.label, int(s.low), None if s.high is None else int(s.high),
                                   key=key, help=s.help))
    low = s.low + s.step if s.open_low else s.low
    high = s.high - s.step if s.open_high else s.high
    return float(st.slider(s.label, float(low), float(high), step=s.step, key=key, help=s.help))


def begin_conversation(conversation_id: str, stored: StoredConversation | None = None) -> None:
    """Make `conversation_id` this tab's conversation. A stored one brings back its model and
    sampling settings now (before the widgets are drawn) and its turns and memory once its
    model is loaded (current_session)."""
    state.conv_id = conversation_id
    state.conv_version = stored.version if stored else 0
    state.conv_pending = stored
    state.conv_notice = None
    if stored is None:
        return
    if stored.model in {i.name for i in list_checkpoints(models_dir()) if i.valid}:
        state.model_name = stored.model
    for key, setting in SETTINGS.items():
        if setting.accepts(stored.sampling.get(key)):
            state[key] = stored.sampling[key]
    seed = stored.sampling.get("seed")
    state.use_seed = isinstance(seed, int)
    if isinstance(seed, int):
        state.seed = seed


def saved(action, default=None):
    """Run `action` on this browser's saved conversations. When the database cannot be used
    the chat goes on unsaved: `default` is returned and the reason shown (the sidebar's top
    says so for a damaged database; a passing failure is noted above the chat)."""
    if store.problem:
        return default
    try:
        return action(store)
    except ConversationsUnavailable as exc:
        if not store.problem:
            state.conv_notice = f"The conversation could not be saved or read just now: {exc}"
        return default


def open_conversation(conversation_id: str) -> None:
    """Open one of this browser's conversations. An id it does not own (or that does not
    exist: the two are not told apart) starts a new chat instead."""
    stored = saved(lambda conversations: conversations.load(conversation_id))
    if stored is None:
        new_conversation()
        if not store.problem:
            state.conv_notice = ("That conversation is not among this browser's saved conversations, "
                                 "so a new chat starts here.")
        return
    begin_conversation(conversation_id, stored)


def new_conversation() -> None:
    begin_conversation(new_conversation_id())


def delete_conversation() -> None:
    saved(lambda conversations: conversations.delete(state.conv_id))
    st.toast("Conversation deleted.")
    new_conversation()


def rename_conversation() -> None:
    try:
        saved(lambda conversations: conversations.rename(state.conv_id, state[f"title-{state.conv_id}"]))
    except ChatbotError as exc:
        st.toast(escape_markdown(relative_paths(str(exc))))


def current_session(info, sampling) -> ChatSession:
    """This tab's conversation, rebuilt (and restored from the database) when the conversation
    or the model changes. Picking another model starts a new conversation."""
    ckpt, engine, mtime = open_model(info)
    if (state.get("chat_conv") == state.conv_id and state.get("chat_model") is not None
            and state.chat_model != (info.name, mtime)):
        st.toast(f"Switched to {info.name}: a new chat starts.")
        new_conversation()
    if (state.get("chat_conv"), state.get("chat_model")) != (state.conv_id, (info.name, mtime)):
        state.chat = ChatSession(ckpt.model, ckpt.tokenizer, sampling, engine=engine)
        state.chat.record_steps = True  # each sampled token's TokenStep, for the token view
        stored = state.pop("conv_pending", None)
        if stored is not None:
            state.conv_notice = restore_session(state.chat, stored, ckpt.fingerprint)
        state.chat_model, state.chat_conv = (info.name, mtime), state.conv_id
        state.chat_fingerprint = ckpt.fingerprint
    state.chat.sampling = sampling
    return state.chat


def save_conversation(chat: ChatSession) -> None:
    """Write the turn just made. If another tab changed this conversation meanwhile, this
    tab's version is kept as a new conversation instead of mixing the two."""
    if not (chat.turns or chat.earlier):
        return
    name, fingerprint = state.chat_model[0], state.chat_fingerprint

    def save(conversations) -> None:
        try:
            state.conv_version = conversations.save(state.conv_id, chat, name, fingerprint,
                                                    state.conv_version)
        except ConversationConflict:
            state.conv_id = state.chat_conv = new_conversation_id()
            state.conv_version = conversations.save(state.conv_id, chat, name, fingerprint, 0)
            state.conv_notice = ("This conversation was changed in another tab, so this tab's "
                                 "version goes on as a new conversation; both are in the list.")

    saved(save)
    if store.problem:
        database_notice()
    elif state.get("conv_notice"):  # (the page's next run shows it too, above the chat)
        st.warning(escape_markdown(relative_paths(state.conv_notice)))
    keep_conversation_in_url()


def saved_conversations(box) -> None:
    """The sidebar list of saved conversations: open one, rename or delete this one."""
    past = saved(lambda conversations: conversations.list())
    if past is None:
        database_notice()
        return
    current = next((c for c in past if c.id == state.conv_id), None)
    with box.expander(f"Saved conversations ({len(past)})", expanded=bool(past)):
        if current is not None:
            st.text_input("Name of this conversation", current.title, key=f"title-{current.id}",
                          on_change=rename_conversation, max_chars=80)
            st.button("Delete this conversation", on_click=delete_conversation, width="stretch")
        for conv in past:
            when = time.strftime("%d %b %H:%M", time.localtime(conv.updated))
            turns = f"{conv.turns} turn" + ("" if conv.turns == 1 else "s")
            st.button(escape_markdown(f"{conv.title} · {turns} · {when}"),
                      key=f"open-{conv.id}", on_click=open_conversation, args=(conv.id,),
                      width="stretch", disabled=conv.id == state.conv_id, type="tertiary")
        whose = ("your account" if signed_in_account() else "this browser")
        st.caption(escape_markdown(f"Saved with their memory in {relative_paths(str(store.path))}, "
                                   f"for {whose} only. The address bar's ?c= names this one, so a "
                                   f"reload or a restart comes back to it."))
    if login_configured() and not signed_in_account():
        box.button("Log in to keep conversations with your account", on_click=st.login, width="stretch")
    elif signed_in_account():
        box.button("Log out", on_click=st.logout, width="stretch")


def database_notice() -> None:
    """Once per run, at the top of the sidebar: saving is off, and why."""
    if store.problem and not state.get("_notice_drawn"):
        state._notice_drawn = True
        notice_box.error(escape_markdown(relative_paths(f"Conversations are not being saved: {store.problem}")))


def stats_caption(turn) -> None:
    caption = stats_text(turn.stats, turn.reply.ended) or compared_line(turn.stats)
    if caption:
        st.caption(caption)


def token_view(chat: ChatSession, index: int) -> None:
    """The token view's toggle under reply `index` (app_pages/token_view.py)."""
    reply = chat.turns[index].reply
    token_view_toggle(chat.tokenizer, reply.steps, reply.ids, f"tokens-{state.conv_id}-{index}")


def show_user(text: str, cut_from: int | None = None) -> None:
    with st.chat_message("user"):
        st.markdown(escape_markdown(text))
        if cut_from:
            st.caption(f"Only the first {MAX_MESSAGE_CHARS:,} of this message's {cut_from:,} "
                       f"characters were read (the limit per message).")


def show_reply(text: str) -> None:
    st.markdown(escape_markdown(text) if text else "*(empty reply)*")


def show_turns(chat: ChatSession, upto: int) -> None:
    for user, reply in chat.earlier:  # words only (their memory was not restored)
        show_user(user)
        with st.chat_message("assistant"):
            show_reply(reply)
    for index, turn in enumerate(chat.turns[:upto]):
        show_user(turn.user, turn.cut_from)
        with st.chat_message("assistant"):
            show_reply(turn.reply.text)
            stats_caption(turn)
            token_view(chat, index)


def show_streamed_reply(chat: ChatSession, pieces, started: float, prefix: str = "") -> None:
    """Stream a reply into an assistant bubble. The ChatSession records every token as it is
    sampled, so if a click or Stop interrupts this run the reply so far is already saved; the
    `finally` closes the generators at once so the state matches the text, and keeps the
    reply's numbers for the next run to show."""
    turn = chat.turns[-1]
    reply = turn.reply
    tokens_before = len(reply.ids)
    stats = StreamStats(started)
    chunks = paced(pieces, stats)

    cfg = chat.sampling
    searching = cfg.beam_width > 1 or cfg.relevance > 0  # (as ChatSession._decode decides)

    def record() -> None:  # kept with the turn (and saved with it, so a reload shows it)
        turn.stats = reply_stats(stats, len(reply.ids) - tokens_before)
        limit = beam_steps(cfg, cfg.relevance > 0)
        if searching and not reply.ended and limit < cfg.max_new_tokens \
                and len(reply.ids) - tokens_before >= limit:
            turn.stats["beam_limit"] = limit
        if state.get("show_memory"):
            turn.stats["memory_kept"] = memory_kept_through(chat, turn)

    recorded = False
    try:
        with st.chat_message("assistant"):
            working = st.empty()
            if searching:
                chat.on_beam_step = beam_progress(working, cfg)
            st.write_stream(escape_stream(_prefixed(prefix, chunks)))
            working.empty()
            record()
            recorded = True
            stats_caption(turn)
            token_view(chat, len(chat.turns) - 1)
    finally:  # also after a Stop or a click: the numbers of what was sampled, and the turn
        chat.on_beam_step = None
        chunks.close()
        if not recorded:
            record()
        save_conversation(chat)


def keep_compared(index: int) -> None:
    """A Keep button's callback: the chat goes on from that reply, under its settings (the
    sidebar shows them), and the turn is saved with what was compared."""
    if state.chat.comparing is None:  # (a second click on a Keep button already used)
        return
    turn = state.chat.keep(index)
    turn.stats["compared"]["names"] = list(state.get("compared_names", []))
    adopt(state.chat.sampling)
    state.compare_save = True


def discard_compared() -> None:
    if state.chat.comparing is not None:
        state.chat.discard_comparison()
    state.compare_on = False


def beam_progress(box, cfg: SamplingConfig):
    """What a beam search shows while it works: nothing is streamed until its hypotheses
    agree, so a line says how far it got (a few times a second). Drawing the line is also
    where a Stop or any click interrupts the search (Streamlit checks for them whenever
    something is drawn)."""
    last = [0.0]
    relevance = f", relevance {cfg.relevance:g}" if cfg.relevance > 0 else ""

    def show(done: int, most: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.2:
            last[0] = now
            box.caption(f"Beam search (width {cfg.beam_width}{relevance}) is working: {done:,} of "
                        f"at most {most:,} tokens searched…")
    return show


def memory_kept_through(chat: ChatSession, turn) -> float | None:
    """How much of its state the model kept per step through this reply (see chatbot/lm/gates.py)."""
    if not turn.reply.ids:
        return None
    return memory_kept(trace(chat.model, turn.reply.ids, turn.state_before_reply))


def reply_stats(stats: StreamStats, tokens: int) -> dict:
    ttft = stats.time_to_first_token()
    return {"tokens": tokens, "tokens_per_second": round(stats.tokens_per_second(tokens), 1),
            "first_token_ms": None if ttft is None else round(ttft * 1000, 1)}


def stats_text(stats: dict, ended: bool) -> str:
    """The line under a reply: tokens, the rate while generating (time spent waiting for the
    page to draw is not counted), the time to the first token, and why it stopped."""
    if not isinstance(stats.get("tokens"), int):
        return ""
    ttft, kept = stats.get("first_token_ms"), stats.get("memory_kept")
    return (f"{stats['tokens']} tokens · {stats.get('tokens_per_second') or 0:,.0f} tokens/s while generating"
            + (f" · first token after {ttft:,.0f} ms" if isinstance(ttft, (int, float)) else "")
            + ("" if ended else " · stopped before the bot ended its turn (Continue extends it)")
            + (f" · beam search's limit at this width: {stats['beam_limit']:,} tokens per reply"
               if isinstance(stats.get("beam_limit"), int) else "")
            + (f" · memory kept per step {kept:.3f}" if isinstance(kept, (int, float)) else ""))


def _prefixed(prefix: str, chunks):
    if prefix:
        yield prefix
    yield from chunks


notice_box = st.sidebar.container()  # the top of the sidebar: saving is off, and why
state._notice_drawn = False
store = conversation_store().owned_by(conversation_owner())
database_notice()
if state.get("conv_id") is None:  # a new tab, or a reload: the URL says which conversation
    wanted = st.query_params.get("c")
    if wanted:  # (a statement, not an expression: Streamlit's magic would draw its value)
        open_conversation(wanted)
    else:
        new_conversation()
info, sampling = sidebar_settings()
chat = current_session(info, sampling)
keep_conversation_in_url()

with st.sidebar:
    # Drawn before this run's message is answered, so nothing here depends on the turn count:
    # the buttons stay enabled (ChatSession explains when there is nothing to do) and the
    # downloads build the transcript when clicked.
    st.subheader("Conversation")
    left, right = st.columns(2)
    left.button("New chat", width="stretch", on_click=new_conversation)
    regenerate = right.button("Regenerate", width="stretch")
    extend = st.button("Continue the last reply", width="stretch")
    choices = compare_choices(chat.sampling)  # (app_pages/compare.py, docs/compare.md)
    left, right = st.columns(2)
    left.download_button("Markdown", lambda: transcript_markdown(chat, info.name), "transcript.md",
                         "text/markdown", width="stretch")
    right.download_button("JSON", lambda: transcript_json(chat, info.name), "transcript.json",
                          "application/json", width="stretch")
    st.toggle("Show memory kept per reply", key="show_memory",
              help="the mean forget gate (LSTM) or update gate (GRU) through each reply: "
                   "how much of its state the model carried from one token to the next")
    st.caption("The bot's memory is its hidden and cell state, carried from turn to turn: "
               "each message is fed once, never the whole history. The Inspect page shows it.")
    saved_box = st.container()  # filled after the reply, so the list includes it

message = st.chat_input("Message the bot", key="message", submit_mode="stop",
                        disabled=chat.comparing is not None)  # (keep a compared reply first)

if message is not None:
    state.conv_notice = None
if state.get("conv_notice"):
    st.warning(escape_markdown(relative_paths(state.conv_notice)))
started = time.perf_counter()
pieces, prefix, refused, streams = None, "", None, None
try:  # what this run asks for; a refusal (nothing to continue, an empty message) is shown
    if message is not None and choices is not None:  # under the transcript, which stays on screen
        streams = chat.compare(message, [cfg for _, cfg in choices])
        state.compared_names = [name for name, _ in choices]
    elif message is not None:
        pieces = chat.send(message)
    elif regenerate or extend:
        prefix = chat.turns[-1].reply.text if extend and chat.turns else ""
        pieces = chat.continue_reply() if extend else chat.regenerate()
except ChatbotError as exc:
    refused = exc
try:
    if pieces is not None:
        show_turns(chat, len(chat.turns) - 1)
        show_user(chat.turns[-1].user, chat.turns[-1].cut_from)
        show_streamed_reply(chat, pieces, started, prefix)
    elif chat.comparing is not None:
        show_turns(chat, len(chat.turns))
        show_user(chat.comparing.turn.user, chat.comparing.turn.cut_from)
        show_comparison(chat, state.compared_names, streams, keep_compared, discard_compared)
    else:
        show_turns(chat, len(chat.turns))
        if not chat.turns and not chat.earlier and refused is None:
            st.info(f"Chatting with **{escape_markdown(info.name)}**. Say hello! Its memory "
                    f"starts empty and grows with the conversation.")
except ChatbotError as exc:
    refused = exc
if refused is not None:
    st.error(escape_markdown(relative_paths(str(refused))))
if state.pop("compare_save", False):  # a compared reply was kept: its turn is saved now
    save_conversation(chat)
saved_conversations(saved_box)
