"""Benchmarks run in smoke mode (tiny sizes, seconds) so they never rot; no timing asserted."""

from conftest import run_cli


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
