"""Tokenizers: exact round trips, unseen text never crashes, streaming never breaks a character."""

import unicodedata

import pytest

from chatbot.errors import ChatbotError
from chatbot.text.tokenizers import (END, CharTokenizer, SentencePieceTokenizer, load_tokenizer,
                                train_tokenizer)

SAMPLES = ["Hello world!", "안녕하세요 반가워요", "pizza 🍕 tea 🍵", "  two  spaces\tand tab\n"]
TRAIN = ["Hello world! How are you today?\nThe forget gate decides what to keep.",
         "안녕하세요! 오늘 기분은 어때요? 망각 게이트는 셀 상태를 정리해요.",
         "I like pizza 🍕 and tea 🍵."] * 20 + SAMPLES
UNSEEN = ["Ωμέγα ж 뷁 쀍 😀🚀", "ctrl \x00\x07\x1b[31m", "literal \u2581 meta", "<|end|> typed by a user"]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def sp(request):
    return train_tokenizer(request.param, TRAIN, vocab_size=400)


@pytest.fixture(scope="module")
def char():
    return train_tokenizer("char", TRAIN)


@pytest.mark.parametrize("text", SAMPLES)
def test_char_round_trip_of_seen_text(char, text):
    assert char.decode(char.encode(text)) == text


@pytest.mark.parametrize("text", SAMPLES + UNSEEN)
def test_sentencepiece_round_trips_everything(sp, text):
    assert sp.decode(sp.encode(text)) == text


@pytest.mark.parametrize("text", UNSEEN)
def test_char_maps_unseen_characters_to_unk(char, text):
    ids = char.encode(text)
    assert len(ids) == len(text)  # one token per character, nothing dropped, no crash
    unseen = [ch for ch in text if ch not in char.chars]
    assert ids.count(char.unk_id) == len(unseen) > 0
    assert char.decode(ids).count("\ufffd") == len(unseen)


def test_typed_turn_markers_are_plain_text(char, sp):
    for tok in (char, sp):
        ids = tok.encode(END)
        assert tok.end_id not in ids and tok.user_id not in ids and tok.bot_id not in ids


def test_text_is_nfc_normalised(char, sp):
    composed = "안녕 café"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    for tok in (char, sp):
        assert tok.encode(decomposed) == tok.encode(composed)


def test_streaming_korean_through_byte_fallback_never_breaks_a_character(sp):
    text = "뷁쀍꿻 똠방각하 😀 ok 안녕"  # mostly unseen: byte pieces, 3-4 per character
    ids = sp.encode(text)
    assert any(sp.token_bytes(i) and len(sp.token_bytes(i)) == 1 and sp.token_bytes(i)[0] >= 0x80
               for i in ids), "expected byte-fallback pieces"
    decoder = sp.stream_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    for piece in pieces:
        assert "\ufffd" not in piece
        assert piece == unicodedata.normalize("NFC", piece)
        piece.encode("utf-8")  # no lone surrogates


def test_streaming_decode_matches_full_decode_for_char(char):
    ids = char.encode("안녕하세요! Hello 🍕")
    decoder = char.stream_decoder()
    assert "".join(decoder.push(i) for i in ids) + decoder.flush() == char.decode(ids)


def test_save_and_load_round_trip(tmp_path, char, sp):
    for tok in (char, sp):
        folder = tmp_path / tok.kind
        folder.mkdir()
        tok.save(folder)
        again = load_tokenizer(folder, tok.kind)
        assert again.vocab_size == tok.vocab_size
        for text in SAMPLES + UNSEEN:
            assert again.encode(text) == tok.encode(text)


def test_corrupt_tokenizer_files_are_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ChatbotError, match="tokenizer.json"):
        load_tokenizer(tmp_path, "char")
    (tmp_path / "tokenizer.model").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ChatbotError, match="tokenizer.model"):
        load_tokenizer(tmp_path, "bpe")
    with pytest.raises(ChatbotError, match="missing"):
        load_tokenizer(tmp_path / "nowhere", "char")


def test_vocab_size_too_small_says_the_minimum():
    with pytest.raises(ChatbotError) as err:
        train_tokenizer("bpe", TRAIN, vocab_size=270)
    message = str(err.value)
    assert "--vocab-size 270 is too small" in message
    minimum = int(message.split("at least ")[1].split(" ")[0])
    train_tokenizer("bpe", TRAIN, vocab_size=minimum)  # the number it names really works


def test_subword_tokenizer_needs_a_vocab_size():
    with pytest.raises(ChatbotError, match="--vocab-size"):
        train_tokenizer("bpe", TRAIN)


def test_char_length_counts_turn_markers_once(char):
    ids = [char.user_id, *char.encode("안녕 hi"), char.end_id]
    assert char.char_length(ids) == len("안녕 hi") + 2
    assert isinstance(CharTokenizer, type) and isinstance(SentencePieceTokenizer, type)
