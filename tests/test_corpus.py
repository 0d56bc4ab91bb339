"""Corpus formats (.txt, folders, chat .jsonl) and the errors bad files get."""

import json

import pytest

from chatbot.text.corpus import load_corpus
from chatbot.errors import ChatbotError
from chatbot.text.tokenizers import train_tokenizer


def chat_line(*turns):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]}, ensure_ascii=False)


def test_txt_file_is_one_continuous_document(tmp_path):
    f = tmp_path / "novel.txt"
    f.write_text("Call me Ishmael.\nSome years ago.\n", encoding="utf-8")
    corpus = load_corpus(f)
    assert list(corpus.pieces()) == [(True, "Call me Ishmael.\nSome years ago.\n")]
    tok = train_tokenizer("char", corpus.texts())
    assert tok.decode(corpus.encode(tok)) == "Call me Ishmael.\nSome years ago.\n"
    assert tok.user_id not in corpus.encode(tok)


def test_jsonl_conversations_get_turn_markers(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(chat_line(("system", "be nice"), ("user", "hi"), ("assistant", "hello!")) + "\n\n",
                 encoding="utf-8")
    corpus = load_corpus(f)
    assert list(corpus.pieces()) == [(True, [("user", "hi"), ("bot", "hello!")])]  # system prompt skipped
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
    assert list(corpus.pieces()) == [(True, [("user", "q"), ("bot", "a")]), (True, "second\n")]
    assert (corpus.documents, corpus.conversations, corpus.characters) == (2, 1, len("qasecond"))


def test_sha256_changes_with_content_and_windows_newlines_are_normalised(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    first = load_corpus(f)
    assert list(first.pieces()) == [(True, "one\ntwo\n")]  # BOM dropped, CRLF -> LF
    f.write_bytes(b"one\ntwo!\n")
    assert load_corpus(f).sha256 != first.sha256


def test_the_default_corpus_is_bilingual_and_big_enough():
    corpus = load_corpus("corpora/default")
    exchanges = sum(sum(1 for role, _ in conv if role == "bot") for _, conv in corpus.pieces())
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


@pytest.fixture
def small_blocks(monkeypatch):
    """Read files 64 bytes at a time, so every test below crosses many block boundaries."""
    import chatbot.text.corpus

    monkeypatch.setattr(chatbot.text.corpus, "CHUNK_BYTES", 64)
    return chatbot.text.corpus


@pytest.mark.parametrize("bad, message", [(b"\x00", "NUL byte at byte offset 1000"),
                                          (b"\xff", "byte 0xff at byte offset 1000")])
def test_a_bad_byte_deep_in_a_file_is_named_by_its_offset_in_the_file(tmp_path, small_blocks, bad, message):
    f = tmp_path / "big.txt"
    f.write_bytes(b"abcdefghi\n" * 100 + bad + b"\nmore text\n")
    with pytest.raises(ChatbotError, match=message):
        load_corpus(f)


def test_chat_lines_are_counted_across_blocks(tmp_path, small_blocks):
    f = tmp_path / "chat.jsonl"
    good = chat_line(("user", "how are you?"), ("assistant", "fine, and you?"))
    f.write_text((good + "\n") * 30 + "\n" + "{oops\n", encoding="utf-8")
    with pytest.raises(ChatbotError, match=r"chat.jsonl:32: not valid JSON"):
        load_corpus(f)
    f.write_text((good + "\r\n") * 30, encoding="utf-8")
    corpus = load_corpus(f)
    assert (corpus.conversations, corpus.turns) == (30, 60)
    assert [piece for _, piece in corpus.pieces()] == [[("user", "how are you?"), ("bot", "fine, and you?")]] * 30


def test_a_line_longer_than_the_limit_is_cut_after_a_space_and_a_chat_line_is_refused(tmp_path, small_blocks,
                                                                                      monkeypatch):
    monkeypatch.setattr(small_blocks, "LONG_LINE_BYTES", 500)
    text = " ".join(f"word{i} é" for i in range(400))  # 4,000 characters, no newline
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    pieces = [piece for _, piece in load_corpus(tmp_path / "long.txt").pieces()]
    assert len(pieces) >= 8 and all(p.endswith(" ") for p in pieces[:-1])
    assert max(len(p.encode()) for p in pieces) < 600 and "".join(pieces) == text + "\n"
    (tmp_path / "long.jsonl").write_text(chat_line(("user", text), ("assistant", "ok")), encoding="utf-8")
    with pytest.raises(ChatbotError, match=r"long.jsonl: a line starting at byte offset 0 is over"):
        load_corpus(tmp_path / "long.jsonl")


def test_a_sample_of_lines_spans_the_corpus_and_is_the_same_every_time(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("".join(f"line {i:05d} of the corpus\n" for i in range(20_000)), encoding="utf-8")
    corpus = load_corpus(f)
    assert len(list(corpus.sample_lines(10**9))) == 20_000  # a small corpus: every line
    sample = list(corpus.sample_lines(50_000))
    assert 0.8 < sum(map(len, sample)) / 50_000 < 1.2
    numbers = [int(line.split()[1]) for line in sample]
    assert numbers == sorted(numbers) and numbers[0] < 500 and numbers[-1] > 19_500
    assert list(corpus.sample_lines(50_000)) == sample


def test_reading_a_corpus_holds_a_block_not_the_file(tmp_path, monkeypatch):
    """Python's own allocations (tracemalloc sees bytes, str, lists and numpy buffers) while
    an 8 MB corpus is checked and tokenized into the cache stay near one block."""
    import tracemalloc

    import chatbot.text.corpus
    import chatbot.text.token_cache
    from chatbot.text.token_cache import build_token_cache

    monkeypatch.setattr(chatbot.text.corpus, "CHUNK_BYTES", 1 << 16)
    monkeypatch.setattr(chatbot.text.token_cache, "CHUNK_TOKENS", 1 << 14)
    with open(tmp_path / "big.txt", "w", encoding="utf-8") as f:
        for i in range(8 * 2**20 // 64):
            f.write(f"{i:08d} the cell state carries memory across steps, 망각 게이트\n"[:63] + "\n")
    tok = train_tokenizer("char", ["0123456789 abcdefghijklmnopqrstuvwxyz,망각게이트\n"])
    tracemalloc.start()
    corpus = load_corpus(tmp_path / "big.txt")
    build_token_cache(corpus, tok, tmp_path / "out", progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert corpus.characters > 6 * 2**20 and peak < 2**21, f"peak {peak:,} bytes"


def test_a_corpus_edited_after_it_was_checked_is_not_read_as_the_checked_one(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("first version\n", encoding="utf-8")
    corpus = load_corpus(f)
    assert [piece for _, piece in corpus.pieces()] == ["first version\n"]
    f.write_text("second version\n", encoding="utf-8")
    with pytest.raises(ChatbotError, match="t.txt: the corpus changed while it was being read"):
        list(corpus.pieces())
