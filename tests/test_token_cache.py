"""The token cache: the corpus tokenized once into a memory-mapped id file next to the
output, reused while corpus and tokenizer are unchanged, rebuilt when either changes."""

import os
import unicodedata

import numpy as np
import pytest

from chatbot.text.corpus import load_corpus
from chatbot.errors import ChatbotError
from chatbot.text.token_cache import CACHE_DIR, build_token_cache, open_token_cache
from chatbot.text.tokenizers import CharTokenizer, train_tokenizer
from conftest import run_cli


def test_the_cache_holds_exactly_the_corpus_ids(chat_corpus, tmp_path):
    corpus = load_corpus(chat_corpus)
    tok = train_tokenizer("char", corpus.texts())
    build_token_cache(corpus, tok, tmp_path, progress=False)
    tokens = open_token_cache(corpus, tok, tmp_path, reused=False)
    ids, starts = corpus.encode_with_starts(tok)
    assert isinstance(tokens.ids, np.memmap) and tokens.ids.dtype == np.uint16
    assert tokens.ids.tolist() == ids and tokens.doc_starts.tolist() == starts


def test_a_vocabulary_over_65536_uses_uint32(tmp_path):
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000]
    (tmp_path / "c.txt").write_text("".join(chars[-5:]) + " and more", encoding="utf-8")
    corpus = load_corpus(tmp_path / "c.txt")
    text = next(corpus.texts())
    tok = CharTokenizer(sorted(set(chars) | set(text)))
    build_token_cache(corpus, tok, tmp_path / "out", progress=False)
    tokens = open_token_cache(corpus, tok, tmp_path / "out", reused=False)
    assert tokens.ids.dtype == np.uint32 and tok.decode(tokens.ids.tolist()) == text


def test_a_changed_corpus_or_tokenizer_gets_a_new_cache_and_the_old_one_goes(tmp_path):
    (tmp_path / "a.txt").write_text("first text " * 50, encoding="utf-8")
    corpus = load_corpus(tmp_path / "a.txt")
    tok = train_tokenizer("char", corpus.texts())
    first = build_token_cache(corpus, tok, tmp_path / "out", progress=False)
    (tmp_path / "a.txt").write_text("first text, changed " * 50, encoding="utf-8")
    changed = load_corpus(tmp_path / "a.txt")
    second = build_token_cache(changed, tok, tmp_path / "out", progress=False)
    assert second != first and not first.exists()
    assert [p.name.split(".")[0] for p in (tmp_path / "out" / CACHE_DIR).iterdir()] == [second.stem] * 3
    other_tok = train_tokenizer("char", [*changed.texts(), "xyz"])
    assert build_token_cache(changed, other_tok, tmp_path / "out", progress=False) != second


def test_a_damaged_cache_is_named_with_the_fix(chat_corpus, tmp_path):
    corpus = load_corpus(chat_corpus)
    tok = train_tokenizer("char", corpus.texts())
    meta = build_token_cache(corpus, tok, tmp_path, progress=False)
    ids = next(p for p in meta.parent.iterdir() if p.suffix == ".uint16")
    ids.write_bytes(ids.read_bytes()[:-3])
    with pytest.raises(ChatbotError, match="token cache .* is damaged .*Delete that folder"):
        open_token_cache(corpus, tok, tmp_path, reused=True)


def test_resume_reuses_the_cache_and_a_new_run_builds_it(chat_corpus, tmp_path):
    out = tmp_path / "run"
    args = ("train_lm.py", "--corpus", str(chat_corpus), "--out", str(out), "--hidden-size", "32",
            "--layers", "1", "--seq-len", "16", "--batch-size", "4", "--eval-every", "3")
    r = run_cli(*args, "--max-steps", "3")
    assert r.returncode == 0, r.stderr
    assert f"token ids cached in {out / CACHE_DIR}" in r.stdout
    cache = next((out / CACHE_DIR).glob("*.uint16"))
    os.utime(cache, (1, 1))
    r = run_cli(*args, "--max-steps", "6", "--resume")
    assert r.returncode == 0, r.stderr
    assert f"token ids reused from {cache}" in r.stdout and cache.stat().st_mtime == 1


@pytest.mark.parametrize("kind, vocab", [("char", None), ("bpe", 400), ("unigram", 400)])
def test_a_file_read_in_small_pieces_gives_exactly_the_ids_of_the_whole_text(tmp_path, monkeypatch, kind, vocab):
    """Pieces are cut after newlines in the bytes, so a block boundary inside a multi-byte
    character, a CRLF or a decomposed accent (NFC) changes nothing."""
    import chatbot.text.corpus

    monkeypatch.setattr(chatbot.text.corpus, "CHUNK_BYTES", 37)  # many blocks, cut anywhere
    line = "Hello world,\r\n the cell state. 안녕하세요 ▁x cafe\u0301 e\u0301\u0301\r\n"
    raw = ("\ufeff" + line * 40 + "no newline at the end").encode()
    (tmp_path / "t.txt").write_bytes(raw)
    corpus = load_corpus(tmp_path / "t.txt")
    assert sum(1 for _ in corpus.pieces()) > 40
    whole = unicodedata.normalize("NFC", raw.decode().removeprefix("\ufeff").replace("\r\n", "\n")) + "\n"
    tok = train_tokenizer(kind, corpus.texts(), vocab)
    build_token_cache(corpus, tok, tmp_path / kind, progress=False)
    assert open_token_cache(corpus, tok, tmp_path / kind, reused=False).ids.tolist() == tok.encode(whole)
    assert corpus.characters == len(whole) - 1


def test_sentencepiece_learns_from_a_sample_and_still_encodes_what_the_sample_missed(tmp_path, monkeypatch):
    import chatbot.train.loop
    from chatbot.train.loop import tokenizer_texts

    monkeypatch.setattr(chatbot.train.loop, "SENTENCEPIECE_SAMPLE_CHARS", 5_000)
    lines = [f"sentence {i} about the cell state and the forget gate" for i in range(2_000)]
    lines[1_234] += " ☃ 雪"  # characters on one line only: most likely not in the sample
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(tmp_path / "big.txt")
    sample = list(tokenizer_texts(corpus, "unigram"))
    assert 3_500 < sum(map(len, sample)) < 6_500 and len(set(sample)) == len(sample)
    assert sum(map(len, tokenizer_texts(corpus, "char"))) == corpus.characters  # chars: all of it
    tok = train_tokenizer("unigram", sample, 300)
    build_token_cache(corpus, tok, tmp_path / "out", progress=False)
    ids = open_token_cache(corpus, tok, tmp_path / "out", reused=False).ids.tolist()
    assert tok.decode(ids) == "\n".join(lines) + "\n"
