"""Property tests over arbitrary Unicode (hypothesis): tokenizers round-trip, streaming decode
equals whole decode, any message either gets a reply or a clear error, and no upload name
can place a file outside the uploads folder."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.chat.session import MAX_MESSAGE_CHARS, ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.chat.sampling import SamplingConfig
from chatbot.text.tokenizers import normalize, train_tokenizer
from app_pages.uploads import save_upload

TRAINING_TEXT = ["Hello there, how are you?", "The cell state keeps memory.", "안녕하세요! 반가워요.",
                 "Numbers 0123456789 and (brackets) [here]."] * 20
# Anything Unicode allows in a string: controls, right-to-left, combining marks, emoji, U+2581...
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tokenizers():
    return {"char": train_tokenizer("char", TRAINING_TEXT),
            "bpe": train_tokenizer("bpe", TRAINING_TEXT, 400),
            "unigram": train_tokenizer("unigram", TRAINING_TEXT, 400)}


@FAST
@given(text=ANY_TEXT)
def test_sentencepiece_round_trips_any_text_exactly(tokenizers, text):
    for kind in ("bpe", "unigram"):
        tok = tokenizers[kind]
        assert tok.decode(tok.encode(text)) == normalize(text), kind


@FAST
@given(text=ANY_TEXT)
def test_char_tokenizer_keeps_known_characters_and_marks_unknown_ones(tokenizers, text):
    tok = tokenizers["char"]
    known = set(tok.chars)
    expected = "".join(ch if ch in known else "\ufffd" for ch in normalize(text))
    assert tok.decode(tok.encode(text)) == expected


@FAST
@given(data=st.data())
def test_streaming_decode_equals_whole_decode_for_any_ids(tokenizers, data):
    for tok in tokenizers.values():
        ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=60))
        decoder = tok.stream_decoder()
        streamed = "".join(decoder.push(i) for i in ids) + decoder.flush()
        assert streamed == tok.decode(ids)


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    return ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(max_new_tokens=8, seed=0))


@FAST
@given(message=st.one_of(ANY_TEXT, st.text(" \t\n\r\u00a0\u3000", max_size=20),
                         st.text(max_size=3).map(lambda t: (t or "x") * (MAX_MESSAGE_CHARS // 2 + 1))))
def test_any_message_gets_a_reply_or_a_clear_error_and_huge_ones_are_cut(session, message):
    try:
        reply = "".join(session.send(message))
    except ChatbotError as exc:
        assert "empty" in str(exc)
        assert not message[:MAX_MESSAGE_CHARS].strip()
        return
    turn = session.turns[-1]
    assert isinstance(reply, str) and len(turn.reply.ids) <= 8
    assert turn.user == message[:MAX_MESSAGE_CHARS]
    assert turn.cut_from == (len(message) if len(message) > MAX_MESSAGE_CHARS else None)
    session.rewind()  # keep the state small between examples


@FAST
@given(name=st.one_of(ANY_TEXT, st.sampled_from(["../../etc/passwd.txt", "/etc/x.txt", "..\\..\\win.jsonl",
                                                   "a/../../b.txt", ".txt", "....txt", "\x00.txt"])))
def test_no_upload_name_escapes_the_uploads_folder(tmp_path_factory, name):
    tmp_path = tmp_path_factory.mktemp("upload")
    folder = tmp_path / "uploads"
    chat = name.lower().endswith(".jsonl")
    content = (b'{"messages": [{"role": "user", "content": "hi"}]}\n' if chat else b"some text to train on\n")
    try:
        path = save_upload(folder, name, content, max_mb=1)
    except ChatbotError as exc:
        assert "upload a .txt or .jsonl file" in str(exc)
        return
    assert path.parent == folder and path.is_file() and path.read_bytes() == content
    assert Path(path.name).suffix in (".txt", ".jsonl") and "/" not in path.name and ".." not in path.stem
