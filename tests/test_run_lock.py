"""One writer per output folder: an OS lock on the run folder, and temporary files that two
writers never share."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from chatbot.atomic import atomic_write
from chatbot.errors import ChatbotError
from chatbot.train.folder_lock import LOCK_FILE, lock_folder
from conftest import ROOT, run_cli, write_chat_corpus


def test_concurrent_atomic_writes_of_one_file_never_collide(tmp_path):
    """With one fixed NAME.tmp, a writer's rename took the other's half-written temporary file
    (or found it gone: FileNotFoundError)."""
    target = tmp_path / "state.json"
    payloads = [bytes([65 + n]) * 300_000 for n in range(4)]
    errors = []

    def writer(data):
        try:
            for _ in range(60):
                atomic_write(target, data)
        except Exception as exc:  # noqa: BLE001  collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert target.read_bytes() in payloads  # whole: one writer's bytes, not a mixture
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_a_held_folder_is_refused_naming_the_holder_then_free_again(tmp_path):
    first = lock_folder(tmp_path)
    with pytest.raises(ChatbotError, match=rf"is in use by another training run \(process {os.getpid()} on "):
        lock_folder(tmp_path)
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    lock_folder(tmp_path).release()


def test_a_second_train_lm_into_the_same_out_is_refused_while_the_first_runs(tmp_path):
    corpus = write_chat_corpus(tmp_path / "chat.jsonl")
    out = tmp_path / "run"
    flags = ["--hidden-size", "32", "--seq-len", "16", "--batch-size", "4", "--eval-every", "20"]
    first = subprocess.Popen([sys.executable, "train_lm.py", "--corpus", str(corpus), "--out", str(out),
                              "--max-steps", "100000", *flags], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600  # a loaded machine starts torch slowly; the condition decides
        log = out / "train_log.jsonl"
        while not (log.exists() and log.stat().st_size) and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        for extra in ([], ["--resume"]):
            second = run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(out), "--max-steps", "5",
                             *flags, *extra, timeout=600)
            assert second.returncode == 2, (second.stdout, second.stderr)
            assert f"is in use by another training run (process {first.pid} on " in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGINT)  # a clean stop: evaluates and saves
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert not (out / LOCK_FILE).exists()
    assert run_cli("train_lm.py", "--out", str(out), "--resume", "--max-steps", "5000000",
                   "--time-budget", "1", timeout=600).returncode == 0  # free again once it ended


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """Unique temporary names must not leave a kill's debris behind for good."""
    target = tmp_path / "model.safetensors"
    dead = tmp_path / "model.safetensors.999999999.0badf00d.tmp"  # no such process
    live = tmp_path / f"model.safetensors.{os.getppid()}.0badf00d.tmp"  # a live writer's
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    atomic_write(target, b"whole")
    assert target.read_bytes() == b"whole" and not dead.exists() and live.exists()
