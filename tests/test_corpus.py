"""Corpus formats (.txt, folders, chat .jsonl) and the errors bad files get."""

import json

import pytest

from chatbot.corpus import load_corpus
from chatbot.errors import ChatbotError
from chatbot.tokenizers import train_tokenizer


def chat_line(*turns):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]}, ensure_ascii=False)


def test_txt_file_is_one_continuous_document(tmp_path):
    f = tmp_path / "novel.txt"
    f.write_text("Call me Ishmael.\nSome years ago.\n", encoding="utf-8")
    corpus = load_corpus(f)
    assert corpus.documents == ["Call me Ishmael.\nSome years ago.\n"]
    tok = train_tokenizer("char", corpus.texts())
    assert tok.decode(corpus.encode(tok)) == "Call me Ishmael.\nSome years ago.\n"
    assert tok.user_id not in corpus.encode(tok)


def test_jsonl_conversations_get_turn_markers(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(chat_line(("system", "be nice"), ("user", "hi"), ("assistant", "hello!")) + "\n\n",
                 encoding="utf-8")
    corpus = load_corpus(f)
    assert corpus.documents == [[("user", "hi"), ("bot", "hello!")]]  # system prompt skipped
    tok = train_tokenizer("char", corpus.texts())
    ids = corpus.encode(tok)
    assert ids == [tok.user_id, *tok.encode("hi"), tok.end_id, tok.bot_id, *tok.encode("hello!"), tok.end_id]


def test_folder_reads_every_txt_and_jsonl_recursively_in_name_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(chat_line(("user", "q"), ("assistant", "a")), encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert [p.name for p in corpus.paths] == ["a.jsonl", "two.txt"]
    assert corpus.documents == [[("user", "q"), ("bot", "a")], "second"]


def test_sha256_changes_with_content_and_windows_newlines_are_normalised(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    first = load_corpus(f)
    assert first.documents == ["one\ntwo\n"]  # BOM dropped, CRLF -> LF
    f.write_bytes(b"one\ntwo!\n")
    assert load_corpus(f).sha256 != first.sha256


def test_the_default_corpus_is_bilingual_and_big_enough():
    corpus = load_corpus("corpora/default")
    exchanges = sum(sum(1 for role, _ in conv if role == "bot") for conv in corpus.documents)
    text = "".join(corpus.texts())
    hangul = sum("\uac00" <= ch <= "\ud7a3" for ch in text)
    assert exchanges >= 1000
    assert sum(p.stat().st_size for p in corpus.paths) >= 150_000
    assert 0.1 < hangul / len(text) < 0.5
    for topic in ("forget gate", "cell state", "vanishing", "GRU", "망각 게이트"):
        assert topic.lower() in text.lower(), topic


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"  \n\t \n", "empty"),
    (b"PK\x03\x04\x00\x00binary", r"binary file \(a NUL byte at byte offset 4\)"),
    (b"caf\xe9 latin-1", r"not UTF-8 text \(byte 0xe9 at byte offset 3\)"),
])
def test_bad_text_files_are_named_with_the_problem(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(ChatbotError, match=message) as exc:
        load_corpus(f)
    assert "bad.txt" in str(exc.value)


@pytest.mark.parametrize("line, message", [
    ("{not json", r"bad.jsonl:2: not valid JSON"),
    ('{"text": "hi"}', r'bad.jsonl:2: expected an object with a non-empty "messages"'),
    ('{"messages": [{"role": "wizard", "content": "x"}]}', r'bad.jsonl:2: each message needs "role"'),
    ('{"messages": [{"role": "user", "content": 5}]}', r'bad.jsonl:2: each message needs'),
])
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(chat_line(("user", "ok"), ("assistant", "fine")) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ChatbotError, match=message):
        load_corpus(f)


def test_missing_paths_and_folders_without_text(tmp_path):
    with pytest.raises(ChatbotError, match="no such file or folder"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(ChatbotError, match="no .txt or .jsonl files"):
        load_corpus(tmp_path)
