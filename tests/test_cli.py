"""The commands a user types: terminal chat, generate, and every bad input getting a clear
one-line error (exit code 2, no traceback)."""

import json
import pickle

import pytest

from conftest import run_cli, write_chat_corpus


def chat(model, script, *flags):
    return run_cli("-m", "chatbot", "chat", "--model", str(model), "--seed", "1",
                   "--max-new-tokens", "40", *flags, input=script)


def test_terminal_chat_streams_replies_and_obeys_commands(tiny_checkpoint):
    r = chat(tiny_checkpoint, "hello\n/temp 0.5\n/regen\n/temp hot\n/reset\nwhat is an lstm?\n/help\n/quit\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("bot> ") == 3  # hello, /regen, the question
    assert "(temperature 0.5)" in out and "(memory cleared)" in out
    assert "error: /temp needs a number" in out  # a bad command does not end the chat
    assert "/reset (fresh memory)" in out
    assert "Traceback" not in r.stderr


def test_terminal_chat_ends_at_end_of_input(tiny_checkpoint):
    r = chat(tiny_checkpoint, "hello\n")
    assert r.returncode == 0 and r.stdout.count("bot> ") == 1


def test_chat_with_a_trained_model_answers_in_the_bot_role(tiny_checkpoint):
    """The tiny model learned its six conversations: greedy replies are the bot's lines."""
    r = chat(tiny_checkpoint, "hello\nwhat does the forget gate do?\n", "--temperature", "0")
    replies = [line.split("bot> ", 1)[1] for line in r.stdout.splitlines() if "bot> " in line]
    assert replies == ["Hi! How are you today?", "It decides what the cell state keeps."]


def test_generate_is_repeatable_with_a_seed(tiny_checkpoint):
    args = ("-m", "chatbot", "generate", "--model", str(tiny_checkpoint), "--prompt", "An LSTM",
            "--temperature", "0.9", "--top-k", "20", "--top-p", "0.95", "--max-new-tokens", "50")
    a, b = run_cli(*args, "--seed", "11"), run_cli(*args, "--seed", "11")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.strip()


def test_generate_chat_mode_prints_the_reply(tiny_checkpoint):
    r = run_cli("-m", "chatbot", "generate", "--model", str(tiny_checkpoint), "--chat",
                "--prompt", "what is an lstm?", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "An LSTM is a recurrent network with gates."


def refused(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize("content, fragments", [
    (b"", ["empty.txt", "the corpus is empty"]),
    (b" \n\n\t  \n", ["empty.txt", "the corpus is empty"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["empty.txt", "binary", "byte offset 8"]),
    (b"good text\nthen caf\xe9", ["empty.txt", "not UTF-8", "byte offset 18"]),
    (b"hi there", ["too short", "--seq-len"]),
])
def test_bad_corpora_get_clear_errors(tmp_path, content, fragments):
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(content)
    refused(run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(tmp_path / "m")), *fragments)


def test_sentencepiece_vocab_the_corpus_cannot_support(tmp_path):
    corpus = write_chat_corpus(tmp_path / "c.jsonl", repeats=2)
    refused(run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(tmp_path / "m"),
                    "--tokenizer", "bpe", "--vocab-size", "100"), "--vocab-size 100 is too small", "at least")


def test_a_subword_tokenizer_without_a_vocab_size_gets_one_fitted_to_the_corpus(tmp_path):
    from chatbot.text.corpus import load_corpus
    from chatbot.text.tokenizers import fitted_vocab_size

    corpus = write_chat_corpus(tmp_path / "c.jsonl", repeats=2)
    result = run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--tokenizer", "bpe",
                     "--max-steps", "1", "--seq-len", "16", "--batch-size", "2", "--hidden-size", "16", "--layers", "1")
    assert result.returncode == 0, result.stderr
    text = load_corpus(corpus)
    fitted = fitted_vocab_size(len(set("".join(text.texts()))), text.characters)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    distinct = len(set("".join(text.texts())))
    assert fitted == 260 + distinct + 300  # a small corpus: the fewest learned pieces
    # SentencePiece was asked for `fitted` and stops early where this little text runs out of merges
    assert config["tokenizer"]["kind"] == "bpe" and 260 + distinct + 250 < config["tokenizer"]["vocab_size"] <= fitted


def test_an_existing_run_is_never_overwritten(tiny_checkpoint, tmp_path, chat_corpus):
    import shutil
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "run")
    shutil.copytree(tiny_checkpoint.parent / "tiny" / "resume", folder / "resume", dirs_exist_ok=True)
    before = (folder / "model.safetensors").read_bytes()
    refused(run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(folder)),
            "already holds a training run", "--resume")
    assert (folder / "model.safetensors").read_bytes() == before


def test_missing_corrupt_and_pickled_checkpoints(tmp_path, tiny_checkpoint):
    refused(run_cli("-m", "chatbot", "chat", "--model", str(tmp_path / "none")),
            "no checkpoint at", "python train_lm.py")
    import shutil
    broken = shutil.copytree(tiny_checkpoint, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    refused(run_cli("-m", "chatbot", "generate", "--model", str(broken), "--prompt", "x"),
            "model.safetensors")
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    refused(run_cli("-m", "chatbot", "chat", "--model", str(evil)), "pickle", "refused")


@pytest.mark.parametrize("flag, value, fragment", [
    ("--temperature", "-1", "temperature must be a number from 0"),
    ("--top-p", "0", "top_p must be in (0, 1]"),
    ("--top-p", "1.5", "top_p must be in (0, 1]"),
    ("--top-k", "-3", "top_k must be"),
    ("--max-new-tokens", "0", "max_new_tokens must be"),
    ("--repetition-penalty", "0.5", "repetition_penalty must be"),
])
def test_absurd_sampling_values(tiny_checkpoint, flag, value, fragment):
    refused(run_cli("-m", "chatbot", "generate", "--model", str(tiny_checkpoint), "--prompt", "hi",
                    flag, value), fragment)


def test_generate_with_beam_search_and_filters(tiny_checkpoint):
    base = ("-m", "chatbot", "generate", "--model", str(tiny_checkpoint), "--chat", "--prompt", "hello")
    beam = run_cli(*base, "--beam-width", "3")
    assert beam.returncode == 0, beam.stderr
    assert beam.stdout.strip() == "Hi! How are you today?"
    filtered = run_cli(*base, "--min-p", "0.1", "--typical-p", "0.9", "--seed", "2")
    assert filtered.returncode == 0 and filtered.stdout.strip()
    refused(run_cli(*base, "--beam-width", "0"), "beam_width must be")
    refused(run_cli(*base, "--min-p", "1.2"), "min_p must be in [0, 1)")


def test_a_deeply_nested_config_is_an_error_not_a_traceback(tmp_path, tiny_checkpoint):
    import shutil
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "nested")
    (folder / "config.json").write_text('{"format": "lstm-chat/1", "model": ' + "[" * 200_000
                                        + "]" * 200_000 + "}")
    refused(run_cli("-m", "chatbot", "generate", "--model", str(folder), "--prompt", "hi"),
            "config.json", "nests too deeply")


def test_a_tiny_temperature_is_the_greedy_limit_in_generate_and_chat(tiny_checkpoint):
    base = ("-m", "chatbot", "generate", "--model", str(tiny_checkpoint), "--chat", "--prompt", "hello")
    greedy = run_cli(*base, "--temperature", "0")
    tiny = run_cli(*base, "--temperature", "1e-40")
    assert tiny.returncode == 0, tiny.stderr
    assert tiny.stdout == greedy.stdout == "Hi! How are you today?\n"
    r = chat(tiny_checkpoint, "/temp 1e-40\nhello\nwhat does the forget gate do?\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    replies = [line.split("bot> ", 1)[1] for line in r.stdout.splitlines() if "bot> " in line]
    assert replies == ["Hi! How are you today?", "It decides what the cell state keeps."]
