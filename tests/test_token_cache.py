"""The token cache: the corpus tokenized once into a memory-mapped id file next to the
output, reused while corpus and tokenizer are unchanged, rebuilt when either changes."""

import os

import numpy as np
import pytest

from chatbot.corpus import load_corpus
from chatbot.errors import ChatbotError
from chatbot.token_cache import CACHE_DIR, build_token_cache, open_token_cache
from chatbot.tokenizers import CharTokenizer, train_tokenizer
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
    tok = CharTokenizer(sorted(set(chars) | set(corpus.texts()[0])))
    build_token_cache(corpus, tok, tmp_path / "out", progress=False)
    tokens = open_token_cache(corpus, tok, tmp_path / "out", reused=False)
    assert tokens.ids.dtype == np.uint32 and tok.decode(tokens.ids.tolist()).startswith(corpus.texts()[0])


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
    other_tok = train_tokenizer("char", changed.texts() + ["xyz"])
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
def test_long_texts_are_encoded_in_pieces_with_exactly_the_same_ids(tmp_path, monkeypatch, kind, vocab):
    import chatbot.token_cache as token_cache

    monkeypatch.setattr(token_cache, "CHUNK_TOKENS", 50)  # many pieces, cut after newlines
    (tmp_path / "t.txt").write_text("Hello world, the cell state. 안녕하세요 ▁x\n" * 40 + "no newline at the end",
                                    encoding="utf-8")
    corpus = load_corpus(tmp_path / "t.txt")
    tok = train_tokenizer(kind, corpus.texts(), vocab)
    build_token_cache(corpus, tok, tmp_path / kind, progress=False)
    assert open_token_cache(corpus, tok, tmp_path / kind, reused=False).ids.tolist() == corpus.encode(tok)
