"""Benchmarks run in smoke mode (tiny sizes, seconds) so they never rot; no timing asserted."""

import json
import math
import re
import sys
from pathlib import Path

import pytest

from browser_harness import CHROMIUM
from conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "bench"))
import measure  # noqa: E402
import training_throughput  # noqa: E402


def test_long_dependency_smoke_prints_its_table():
    r = run_cli("bench/long_dependency.py", "--smoke")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == "| N distractors | rnn | gru | lstm | lstm-fb3 | seconds |"
    rows = [line for line in lines if line.startswith("| 2 |") or line.startswith("| 5 |")]
    assert len(rows) == 2 and all(row.count("%") == 4 for row in rows)


def test_relevance_smoke_prints_its_table():
    r = run_cli("bench/relevance.py", "--smoke")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 0")]
    assert len(rows) == 2 and all(row.endswith("|") for row in rows)


def test_generation_speed_smoke_prints_its_table():
    r = run_cli("bench/generation_speed.py", "--smoke")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| tiny") or line.startswith("| small")
            or line.startswith("| medium")]
    assert len(rows) == 3 and all(row.count("|") == 8 for row in rows)


def test_constant_turns_smoke_prints_its_table():
    r = run_cli("bench/constant_turns.py", "--smoke")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 1 |") or line.startswith("| 3 |")]
    assert len(rows) == 2 and all(row.endswith("× |") for row in rows)
    assert "turn 3 / turn 1" in r.stdout


def test_concurrent_chat_smoke_prints_its_table():
    r = run_cli("bench/concurrent_chat.py", "--smoke")
    assert r.returncode == 0, r.stderr
    rows = [line.split(" | ")[:3] for line in r.stdout.splitlines() if line.startswith(("| threads |", "| engine |"))]
    # every reply of every session, alone and batched
    assert rows == [["| threads", "1", "2"], ["| threads", "3", "6"], ["| engine", "1", "2"], ["| engine", "3", "6"]]
    assert "every session's replies the same on every row: yes" in r.stdout


def test_large_corpus_smoke_prints_its_table():
    r = run_cli("bench/large_corpus.py", "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "| first run" in line or "| --resume" in line]
    assert [row.split(" | ")[-1] for row in rows] == ["no |", "yes |"]  # built, then reused


def test_training_throughput_smoke_prints_its_table(chat_corpus):
    r = run_cli("bench/training_throughput.py", "--corpus", str(chat_corpus), "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| tiny") or line.startswith("| small")]
    assert len(rows) == 2 and all(row.count("%") == 2 for row in rows)
    assert "GFLOP/s" in r.stdout


def test_quality_per_time_smoke_prints_its_table_and_plots(chat_corpus, tmp_path):
    png = tmp_path / "curve.png"
    r = run_cli("bench/quality_per_time.py", str(chat_corpus), "--smoke", "--png", str(png), timeout=1800)
    assert r.returncode == 0, r.stderr
    assert "| cpu preset |" in r.stdout and "| plain 2×256 LSTM" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's Chromium (.ci/run installs it)")
def test_browser_tabs_smoke_gets_every_tab_its_own_replies(tiny_checkpoint, chat_corpus):
    r = run_cli("bench/browser_tabs.py", "--smoke", "--model", str(tiny_checkpoint), "--corpus", str(chat_corpus),
                timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| 1 of 1 tabs |" in r.stdout and "| 2 of 2 tabs |" in r.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's Chromium (.ci/run installs it)")
def test_ui_stream_smoke_prints_its_table(tiny_checkpoint, chat_corpus):
    r = run_cli("bench/ui_stream.py", "--smoke", "--model", str(tiny_checkpoint), "--corpus", str(chat_corpus),
                timeout=1800)
    assert r.returncode == 0, r.stderr
    assert "| library (raw generator) |" in r.stdout and "| browser (streamlit run + Chromium) |" in r.stdout
    assert "app server peak RSS" in r.stdout


def test_memory_recall_smoke_prints_its_table(tiny_checkpoint):
    r = run_cli("bench/memory_recall.py", "--model", str(tiny_checkpoint), "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| English") or line.startswith("| Korean")]
    assert len(rows) == 2 and all(row.count("%") == 2 for row in rows)
    assert "none in the corpus" in r.stdout


def test_context_use_smoke_prints_its_table(tiny_checkpoint):
    r = run_cli("bench/context_use.py", "--model", str(tiny_checkpoint), "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    both = [line for line in r.stdout.splitlines() if line.startswith("| both |")]
    assert len(both) == 1 and both[0].split(" | ")[-1].rstrip(" |").lstrip("+-").replace(".", "").isdigit()


def test_train_page_speed_smoke_prints_its_table():
    r = run_cli("bench/train_page_speed.py", "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| `python train_lm.py`")
            or line.startswith("| Train page")]
    assert len(rows) == 2 and rows[1].endswith("% |")


def test_train_page_quality_smoke_prints_its_table(tiny_checkpoint):
    r = run_cli("bench/train_page_quality.py", "--smoke", "--reference", str(tiny_checkpoint), timeout=1800)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| chat.jsonl")]
    assert len(rows) == 3 and "Train page, all defaults" in rows[0] and "--preset tiny" in rows[1]
    assert "for reference" in rows[2] and rows[2].split("|")[5].strip() == "–"  # judged; no validation
    assert "evaluations with samples" in r.stdout
    ceiling = re.search(r"held-out text \(its last 10%\) scores (\d+)% corpus words", r.stdout)
    assert ceiling and 0 < int(ceiling.group(1)) <= 100


def test_copy_cache_smoke_prints_its_table_and_gate(tiny_checkpoint):
    r = run_cli("bench/copy_cache.py", "--model", str(tiny_checkpoint), "--smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    assert "| model alone |" in r.stdout and "| + cache, fitted gate |" in r.stdout
    gate = r.stdout.split("--gate ")[1].split()
    assert len(gate) == 4 and all(float(x) == float(x) for x in gate)  # four finite-or-not numbers, parsed

    recall = run_cli("bench/memory_recall.py", "--model", str(tiny_checkpoint), "--smoke",
                     "--cache", "20", "1", "256", "--gate", *gate, timeout=1800)
    assert recall.returncode == 0, recall.stderr
    assert "state + continuous cache" in recall.stdout and recall.stdout.count("| Korean |") == 2


def steps(*pairs):
    return [{"step": i + 1, "train_loss": 1.0, "tokens_seen": t, "seconds": s} for i, (t, s) in enumerate(pairs)]


@pytest.mark.parametrize("log, expected", [
    (steps((100, 0.5), (200, 1.0), (300, 1.5), (400, 2.0)), 200.0),  # after the warm-up steps
    (steps((100, 0.5), (200, 1.0), (300, 1.0)), 400.0),  # a busy machine: the last two share a millisecond
    (steps((100, 0.5), (200, 0.5), (300, 0.5)), 600.0),  # no interval after any step: the whole run
    (steps((100, 0.5)), 200.0),  # a single step in the budget
    (steps((100, 0.0)), math.nan),  # not even one millisecond: no rate, but no crash
    ([], math.nan),
])
def test_training_rate_survives_a_zero_interval(log, expected):
    rate = measure.training_rate(log)
    assert rate == pytest.approx(expected) if not math.isnan(expected) else math.isnan(rate)
    assert math.isnan(measure.per_second(5, 0.0)) and math.isnan(measure.ratio(5, 0))


def test_training_throughput_rate_from_a_log_with_equal_times(tmp_path):
    """What failed on a loaded machine: two steps logged at the same millisecond."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps((64, 0.8), (128, 0.8))))
    (out / "config.json").write_text(json.dumps({"model": {}, "training": {"precision": "fp32"}}))
    result = training_throughput.preset_result(measure.read_training_run(out, 100.0))
    assert result["tokens_per_second"] == pytest.approx(160.0) and result["peak_rss_mb"] == 100.0


def test_token_view_cost_smoke_prints_its_table():
    r = run_cli("bench/token_view_cost.py", "--smoke")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| sample_reply", "| engine"))]
    assert len(rows) == 6 and all(row.endswith("% |") for row in rows)
    assert "the same tokens recorded or not, on every row: yes" in r.stdout
