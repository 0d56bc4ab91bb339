"""The Streamlit app's logic, driven by streamlit.testing.v1.AppTest against the real model."""

import json
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.plain_text import escape_markdown
from conftest import CONVERSATIONS, ROOT, run_spec, write_chat_corpus

MARKUP = "Literal $x$ and **b** and <b>bold</b> # end"


def start(**widgets) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    assert not at.exception, at.exception
    for key, value in widgets.items():  # sliders, by key
        at.slider(key=key).set_value(value)
    if widgets:
        at.run()
    return at


def say(at: AppTest, message: str) -> str:
    at.chat_input[0].set_value(message).run()
    assert not at.exception, at.exception
    bubbles = at.chat_message
    assert bubbles[-1].name == "assistant"
    return bubbles[-1].markdown[0].value


def test_a_chat_turn_streams_an_assistant_reply_with_its_numbers(app_env):
    at = start(temperature=0.0)
    reply = say(at, "hello")
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert reply == escape_markdown("Hi! How are you today?")
    caption = at.chat_message[-1].caption[0].value
    assert "tokens/s" in caption and "first token after" in caption
    assert len(at.session_state.chat.turns) == 1


def test_model_output_is_shown_literally_never_as_markup(app_env):
    at = start(temperature=0.0)
    shown = say(at, "show me markup")
    assert at.session_state.chat.turns[-1].reply.text == MARKUP
    assert shown == escape_markdown(MARKUP)
    for raw in ("$x$", "**b**", "<b>"):
        assert raw not in shown  # every markup character arrives backslash-escaped


def test_sidebar_controls_reach_the_session(app_env):
    at = start()
    at.sidebar.slider(key="temperature").set_value(0.3)
    at.sidebar.slider(key="top_p").set_value(0.9)
    at.sidebar.number_input(key="top_k").set_value(7)
    at.sidebar.number_input(key="max_new_tokens").set_value(12)
    at.sidebar.checkbox(key="use_seed").check()
    at.run()  # the seed box enables once "Fixed seed" is ticked
    at.sidebar.number_input(key="seed").set_value(42)
    at.run()
    sampling = at.session_state.chat.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.max_new_tokens, sampling.seed) \
        == (0.3, 0.9, 7, 12, 42)
    say(at, "what is an lstm?")
    assert len(at.session_state.chat.turns[-1].reply.ids) <= 12


def test_new_chat_forgets_everything(app_env):
    at = start(temperature=0.0)
    say(at, "my name is Mina")
    chat = at.session_state.chat
    assert chat.turns and any(h.abs().sum() > 0 for h in chat.state.h)
    at.sidebar.button[0].click().run()  # New chat
    chat = at.session_state.chat
    assert chat.turns == [] and all(h.abs().sum() == 0 for h in chat.state.h)
    assert not at.chat_message


def test_regenerate_restores_the_snapshot(app_env):
    at = start(temperature=1.0)
    at.sidebar.checkbox(key="use_seed").check()
    at.run()
    at.sidebar.number_input(key="seed").set_value(5)
    at.run()
    first = say(at, "what does the forget gate do?")
    chat = at.session_state.chat
    snapshot = chat.turns[-1].state_before_reply.clone()
    after_first = chat.state.clone()
    regenerate = next(b for b in at.sidebar.button if b.label == "Regenerate")
    regenerate.click().run()
    assert not at.exception
    assert at.chat_message[-1].markdown[0].value == first  # same seed, same snapshot: same reply
    assert len(at.chat_message) == 2  # replaced, not appended
    assert at.session_state.chat.turns[-1].state_before_reply.equals(snapshot)
    assert at.session_state.chat.state.equals(after_first, atol=1e-6, rtol=1e-6)


def test_transcript_downloads_are_built_from_the_session(app_env):
    at = start(temperature=0.0)
    say(at, "hello")
    labels = [d.label for d in at.sidebar.get("download_button")]
    assert labels == ["Markdown", "JSON"]
    from app_pages.transcript import transcript_json, transcript_markdown
    chat = at.session_state.chat
    data = json.loads(transcript_json(chat, "tiny"))
    assert data["messages"] == [{"role": "user", "content": "hello"},
                                {"role": "assistant", "content": "Hi! How are you today?"}]
    assert data["sampling"]["temperature"] == 0.0
    assert "**You:** hello" in transcript_markdown(chat, "tiny")


def upload_page(app_env) -> AppTest:
    at = start()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"  \n ", "the corpus is empty"),
    ("latin.txt", b"caf\xe9 au lait", "not UTF-8"),
    ("blob.txt", b"GIF89a\x00\x01", "binary"),
    ("huge.txt", b"a" * (21 * 1024 * 1024), "the limit is 20 MB"),
])
def test_bad_uploads_show_a_clear_error(app_env, tmp_path, name, content, message):
    at = upload_page(app_env)
    at.get("file_uploader")[0].set_value((name, content, "text/plain"))
    at.run()
    errors = [e.value.replace("\\", "") for e in at.error]  # shown literally: unescape
    assert any(message in e and name in e for e in errors), errors
    assert not list((tmp_path / "data" / "uploads").glob("*"))  # nothing bad is kept
    assert str(tmp_path) not in " ".join(errors)  # the server's paths stay private


def test_a_bad_file_in_corpora_gets_its_error_and_a_good_one_its_size(app_env, tmp_path, monkeypatch):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "a-latin.txt").write_bytes(b"caf\xe9 au lait\n")
    write_chat_corpus(corpora / "b-chat.jsonl", repeats=2)
    monkeypatch.setenv("LSTM_CHAT_CORPORA", str(corpora))
    at = upload_page(app_env)
    at.radio(key="source").set_value("From corpora/").run()
    assert not at.exception, at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("a-latin.txt: not UTF-8 text (byte 0xe9 at byte offset 3)" in e for e in errors), errors
    assert str(tmp_path) not in " ".join(errors)
    at.selectbox(key="corpus_choice").set_value(corpora / "b-chat.jsonl").run()
    assert not at.exception and not at.error
    conversations, chars = 2 * len(CONVERSATIONS), 2 * sum(len(text) for conv in CONVERSATIONS for _, text in conv)
    assert any(c.value.replace("\\", "").startswith(f"b-chat.jsonl: {chars} characters, {conversations} conversations")
               for c in at.caption), [c.value for c in at.caption]


def test_train_page_trains_an_uploaded_corpus_into_a_selectable_model(app_env, tmp_path):
    from app_pages.resources import job_slot

    corpus = write_chat_corpus(tmp_path / "mine.jsonl", repeats=10).read_bytes()
    at = upload_page(app_env)
    at.get("file_uploader")[0].set_value(("../../escape me.jsonl", corpus, "application/json"))
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="preset").value == "auto"  # the budget picks the size
    assert (at.selectbox(key="tokenizer").value, at.number_input(key="vocab_size").value) == ("bpe", 0)  # fitted
    at.number_input(key="budget").set_value(0.1)  # six seconds
    at.text_input(key="model_out").set_value("fresh")
    at.run()
    assert any("steps in 0.1 minutes" in c.value.replace("\\", "") for c in at.caption), [c.value for c in at.caption]
    at.button(key="train").click().run()
    job = job_slot().job
    assert job is not None and job.request.out == app_env / "fresh" and job.request.preset is None
    assert job.request.corpus.parent == tmp_path / "data" / "uploads"  # stored under our name
    deadline = time.time() + 300
    while job.snapshot().active and time.time() < deadline:
        time.sleep(0.2)
    assert job.snapshot().status == "finished", job.snapshot().error
    at.run()
    assert any("fresh finished" in i.value for i in at.info), [i.value for i in at.info]
    assert any(v.value.replace("\\", "").startswith("Verdict: ") for v in [*at.success, *at.warning])
    at.switch_page("app_pages/chat.py").run()
    options = at.sidebar.selectbox(key="model_name").options
    assert any(o.startswith("fresh") for o in options)
    at.sidebar.selectbox(key="model_name").set_value("fresh").run()
    assert not at.exception
    assert at.session_state.chat_model[0] == "fresh"
    config = json.loads((app_env / "fresh" / "config.json").read_text())
    assert config["training"]["time_budget"] == pytest.approx(6.0)
    assert config["training"]["fit_budget"] == "size"
    assert config["tokenizer"]["kind"] == "bpe" and config["tokenizer"]["vocab_size"] > 260  # subwords, fitted


def test_a_size_that_gets_too_few_steps_is_warned_about_before_training(app_env, tmp_path):
    corpus = write_chat_corpus(tmp_path / "mine.jsonl", repeats=10).read_bytes()
    at = upload_page(app_env)
    at.get("file_uploader")[0].set_value(("mine.jsonl", corpus, "application/json"))
    at.run()
    at.selectbox(key="preset").set_value("cpu")
    at.number_input(key="budget").set_value(0.1)
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any(w.startswith("2×512 gets about") and "steps in 6 seconds here" in w for w in warnings), warnings
    assert not any("give it a time budget of minutes" in c.value for c in at.caption)
    at.number_input(key="vocab_size").set_value(300).run()  # less than its characters need
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("A vocabulary of 300 is too small" in w and "use 0 (fitted:" in w for w in warnings), warnings


def test_a_broken_model_folder_is_listed_with_its_reason_and_the_page_works(app_env):
    (app_env / "half-copied").mkdir()
    shutil.copy(app_env / "tiny" / "config.json", app_env / "half-copied" / "config.json")
    at = start(temperature=0.0)
    assert at.sidebar.selectbox(key="model_name").options[0].startswith("tiny")
    notes = [c.value.replace("\\", "") for c in at.sidebar.caption]
    assert any("half-copied: not loadable (model.safetensors is missing)" in n for n in notes), notes
    assert say(at, "hello") == escape_markdown("Hi! How are you today?")


def inspect_axis(chart) -> list[str]:
    """The characters along a heatmap's x axis: its labelExpr is `[labels...][datum.value - start]`."""
    expr = json.loads(chart.proto.spec)["encoding"]["x"]["axis"]["labelExpr"]
    return json.loads(expr[:expr.rindex("[datum.value")])


def test_inspect_page_shows_the_last_reply_and_typed_text(app_env):
    from chatbot.lm.checkpoint import load_checkpoint
    from chatbot.lm.gates import memory_kept, trace
    from chatbot.lm.units import pieces, token_labels, track_units

    at = start(temperature=0.0)
    at.sidebar.toggle(key="show_memory").set_value(True)
    at.run()
    say(at, "what does the forget gate do?")
    caption = at.chat_message[-1].caption[0].value
    kept = float(caption.split("memory kept per step ")[1])
    assert 0 < kept < 1
    at.switch_page("app_pages/inspect.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="inspect_source").value == "The last reply"
    charts = at.get("vega_lite_chart")
    # tracking units, one unit over the text, kept per unit, forget, input, output, cell state
    assert len(charts) == 7

    # The units shown are the real model's best followers of the text's features, with their r.
    turn = at.session_state.chat.turns[-1]
    ids = turn.prompt_ids + turn.reply.ids
    ckpt = load_checkpoint(app_env / "tiny")
    tr = trace(ckpt.model, ids, turn.state_before_user)
    texts = pieces(ckpt.tokenizer, ids)
    expected = track_units(tr.layers[-1].h.numpy(), texts, ids, 8)
    table = at.dataframe[0].value
    assert table["unit"].tolist() == [t.unit for t in expected]
    assert table["r"].tolist() == [round(t.r, 2) for t in expected]
    assert "the bot's turn (vs. yours)" in table["follows"].tolist() or any(
        "the bot's turn" in c.value for c in at.caption)  # followed, or said to be followed by none
    # The text runs along the x axis, one character per column.
    labels = token_labels(texts, ids, "␣")
    assert inspect_axis(charts[0]) == labels[:36]
    assert "".join(inspect_axis(charts[0])).startswith("▸what␣does␣the␣forget␣gate␣do?¶◂")
    assert all(inspect_axis(chart) == labels[:36] for chart in charts[3:])  # and under every gate
    # The values are explained in plain words, and the number agrees with the model's own.
    words = " ".join(m.value for m in at.markdown)
    assert "not bounded" in words and "firmly on" in words and "half the memory is gone after 69 steps" in words
    assert [m.label for m in at.metric] == ["Memory kept per step", "Layer 2, all units", "The units shown"]
    assert at.metric[0].value == f"{memory_kept(tr):.3f}"
    assert at.metric[1].value == f"{tr.layers[-1].gates['forget'].mean():.3f}"
    assert at.metric[2].value == f"{tr.layers[-1].gates['forget'][:, [t.unit for t in expected]].mean():.3f}"

    at.radio(key="inspect_source").set_value("Text I type").run()
    at.text_area(key="inspect_text").set_value("The cell state \"remembers\" quotes. " * 80).run()
    assert not at.exception, at.exception
    assert any("Showing the first 2,000" in w.value for w in at.warning)  # long text is capped
    at.selectbox(key="inspect_layer").set_value(0).run()
    at.slider(key="inspect_from").set_value(100).run()  # the charts move along the text
    typed = ckpt.tokenizer.encode(at.text_area(key="inspect_text").value)[:2000]
    typed_labels = token_labels(pieces(ckpt.tokenizer, typed), typed, "␣")
    assert inspect_axis(at.get("vega_lite_chart")[0]) == typed_labels[100:136]
    at.selectbox(key="inspect_unit").set_value(3).run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 7
    at.text_area(key="inspect_text").set_value("The cell state. " * 4).run()  # shorter than where it was
    typed = ckpt.tokenizer.encode("The cell state. " * 4)
    assert not at.exception and not at.warning, (at.exception, at.warning)
    assert inspect_axis(at.get("vega_lite_chart")[0]) == token_labels(pieces(ckpt.tokenizer, typed), typed, "␣")[-36:]
    at.text_area(key="inspect_text").set_value("aaaa").run()  # nothing in it to follow
    assert not at.exception and "too uniform" in at.info[0].value


@pytest.mark.parametrize("cell, charts", [("gru", 6), ("rnn", 2)])
def test_inspect_page_for_gru_and_rnn_models(app_env, chat_corpus, cell, charts):
    from chatbot.lm.spec import TrainConfig
    from chatbot.train.loop import train
    train(run_spec(chat_corpus, TrainConfig(max_steps=20, seq_len=16, batch_size=4, eval_every=20),
                   cell=cell, hidden_size=32), app_env / f"a-{cell}")
    at = start(temperature=0.0)
    assert at.sidebar.selectbox(key="model_name").value == f"a-{cell}"
    say(at, "hello")
    at.switch_page("app_pages/inspect.py").run()
    assert not at.exception, at.exception
    # tracking units + one unit (+ kept per unit and the gates for a GRU)
    assert len(at.get("vega_lite_chart")) == charts
    assert bool(at.metric) == (cell == "gru")  # an RNN has no gate that keeps memory


def test_beam_search_from_the_sidebar(app_env):
    at = start()
    at.sidebar.number_input(key="beam_width").set_value(3)
    at.sidebar.slider(key="relevance").set_value(0.25)
    at.sidebar.slider(key="min_p").set_value(0.05)
    at.run()
    sampling = at.session_state.chat.sampling
    assert (sampling.beam_width, sampling.relevance, sampling.min_p) == (3, 0.25, 0.05)
    reply = say(at, "what is an lstm?")
    assert at.session_state.chat.turns[-1].reply.ended and reply


def test_folders_with_damaged_configs_are_listed_as_broken_and_the_page_works(app_env):
    from test_catalog import BAD_CONFIGS, damage
    for name, (change, _) in BAD_CONFIGS.items():
        damage(shutil.copytree(app_env / "tiny", app_env / name), change)
    at = start(temperature=0.0)
    options = at.sidebar.selectbox(key="model_name").options
    assert len(options) == 1 and options[0].startswith("tiny")
    notes = " ".join(c.value.replace("\\", "") for c in at.sidebar.caption)
    for name, (_, reason) in BAD_CONFIGS.items():
        assert f"{name}: not loadable (" in notes and reason.replace("\\", "") in notes, name
    assert say(at, "hello") == escape_markdown("Hi! How are you today?")


def test_errors_name_files_relative_to_the_apps_folders_never_by_the_servers_paths(app_env, tmp_path):
    (app_env / "tiny" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    assert not at.exception, at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("Cannot load tiny: models/tiny/model.safetensors: not a safetensors file" in e
               for e in errors), errors
    assert str(tmp_path) not in " ".join(errors)
    shutil.rmtree(app_env / "tiny")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    errors = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert any("No usable model in models/" in e for e in errors) and str(tmp_path) not in " ".join(errors)


def test_a_fresh_chat_page_draws_no_stray_value(app_env):
    at = start()
    assert not at.get("code") and not at.get("json") and not at.get("badge")
    assert not [m for m in at.main.get("markdown") if m.value.strip() in ("None", "`None`")]


def test_continue_on_a_finished_reply_keeps_the_transcript_and_says_why(app_env):
    at = start(temperature=0.0)
    reply = say(at, "hello")
    assert at.session_state.chat.turns[-1].reply.ended
    next(b for b in at.sidebar.button if b.label == "Continue the last reply").click().run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == reply
    assert any("the last reply is finished" in e.value.replace("\\", "") for e in at.error)


def test_sidebar_ranges_are_the_librarys_limits(app_env):
    from chatbot.chat.sampling import (MAX_BEAM_WIDTH, MAX_NEW_TOKENS_LIMIT, MAX_RELEVANCE,
                                  MAX_REPETITION_PENALTY, MAX_TEMPERATURE)
    at = start()
    side = at.sidebar
    assert side.slider(key="temperature").max == MAX_TEMPERATURE
    assert side.slider(key="repetition_penalty").max == MAX_REPETITION_PENALTY
    assert side.slider(key="relevance").max == MAX_RELEVANCE
    assert side.number_input(key="beam_width").max == MAX_BEAM_WIDTH
    assert side.number_input(key="max_new_tokens").max == MAX_NEW_TOKENS_LIMIT
    side.number_input(key="max_new_tokens").set_value(MAX_NEW_TOKENS_LIMIT)
    side.slider(key="temperature").set_value(MAX_TEMPERATURE)
    at.run()
    assert not at.exception, at.exception
    sampling = at.session_state.chat.sampling
    assert (sampling.max_new_tokens, sampling.temperature) == (MAX_NEW_TOKENS_LIMIT, MAX_TEMPERATURE)


def test_a_wide_beam_search_is_bounded_and_says_so(app_env):
    import torch
    from chatbot.lm.checkpoint import load_checkpoint, save_checkpoint
    ckpt = load_checkpoint(app_env / "tiny")
    with torch.no_grad():
        ckpt.model.head.bias[ckpt.tokenizer.end_id] = -1e4  # this model never ends its turn
    # saved as training saves, so config.json's weights_sha256 names these weights
    save_checkpoint(app_env / "tiny", ckpt.model, ckpt.tokenizer, ckpt.spec)
    at = start(relevance=0.5)
    at.default_timeout = 600  # 147 steps of 272 rows: seconds alone, longer on a busy machine
    at.sidebar.number_input(key="beam_width").set_value(16)
    at.sidebar.number_input(key="max_new_tokens").set_value(20_000)
    at.run()
    say(at, "hello")
    assert len(at.session_state.chat.turns[-1].reply.ids) == 147
    caption = at.chat_message[-1].caption[-1].value
    assert "beam search's limit at this width: 147 tokens per reply" in caption, caption
    assert at.session_state.chat.on_beam_step is None
