"""The budget decides the recipe: sizes timed here, the largest that gets enough steps, a warm-up
and evaluations fitted to the steps, a warning for a hand-picked size that gets too few; and
the plain-words verdict on a model's replies."""

import json

import pytest
import torch

from chatbot.chat.quality import CorpusSample, ready, verdict, words
from chatbot.text.corpus import load_corpus
from chatbot.train.budget import (EVALUATIONS, LADDER, MIN_STEPS, dropout_for, plan_for_budget, step_seconds,
                                  stream_count, too_few_steps_warning)
from conftest import CONVERSATIONS, run_cli


def fake_timer(seconds_by_hidden: dict):
    timed = []

    def timer(layers, hidden, vocab, batch, seq_len, precision, device, cell):
        timed.append((layers, hidden))
        return seconds_by_hidden[hidden]
    return timer, timed


def test_auto_picks_the_largest_size_that_gets_enough_steps_and_stops_timing_there():
    timer, timed = fake_timer({128: 0.05, 256: 0.2, 384: 0.4, 512: 0.8})
    plan = plan_for_budget(240, 100, 10**7, 128, 64, timer=timer)
    # 240 s: 4,800, 1,200, 600 and 300 steps
    assert (plan.num_layers, plan.hidden_size, plan.expected_steps) == (2, 384, 600)
    assert timed == LADDER  # 2x512 falls short, so nothing larger is timed
    assert plan.warmup_steps == 30 and plan.eval_seconds == 240 / EVALUATIONS
    assert plan.steps_by_size == {"2×128": 4800, "2×256": 1200, "2×384": 600, "2×512": 300}


def test_a_busy_machine_gets_the_smallest_size_and_a_warm_up_it_finishes():
    timer, timed = fake_timer({128: 6.0, 256: 20.0, 384: 40.0, 512: 80.0})
    plan = plan_for_budget(240, 100, 10**7, 128, 64, timer=timer)
    assert plan.hidden_size == 128 and plan.expected_steps == 40 and timed == [(2, 128)]
    assert plan.warmup_steps == 2  # the old fixed 50 steps would never have ended


def test_a_chosen_size_is_kept_and_warned_about_with_a_size_that_would_learn():
    timer, _ = fake_timer({128: 0.1, 256: 0.4, 384: 2.0, 512: 6.0})
    plan = plan_for_budget(240, 100, 10**7, 128, 64, size=(2, 512), timer=timer)
    assert (plan.hidden_size, plan.expected_steps, plan.dropout) == (512, 40, None)
    warning = too_few_steps_warning(plan, 240)
    assert warning.startswith("2×512 gets about 40 steps in 4 minutes here; 2×256 would get 600")
    fine = plan_for_budget(240, 100, 10**7, 128, 64, size=(2, 256), timer=timer)
    assert fine.expected_steps == 600 and too_few_steps_warning(fine, 240) is None


def test_small_corpora_get_fewer_streams_and_many_epochs_get_dropout():
    assert stream_count(128, 64, 10**7) == 128
    assert stream_count(128, 64, 20_000) == 20_000 // (64 * 8)
    assert stream_count(128, 64, 100) == 1
    assert dropout_for(1) == 0.0 and dropout_for(6) == 0.1 and dropout_for(50) == 0.2


def test_timing_a_real_step_leaves_the_random_numbers_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    assert step_seconds(2, 32, 50, 4, 16) > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_train_lm_with_a_budget_and_no_size_fits_the_recipe_to_the_budget(chat_corpus, tmp_path):
    r = run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(tmp_path / "auto"),
                "--time-budget", "6", timeout=600)
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    t, m = config["training"], config["model"]
    assert t["fit_budget"] == "size" and t["plan"].startswith(f"{m['num_layers']}×{m['hidden_size']} gets about")
    assert (m["num_layers"], m["hidden_size"]) in LADDER
    assert t["eval_seconds"] == pytest.approx(6 / EVALUATIONS) and (t["seq_len"], t["lr"]) == (64, 4e-3)
    assert "fitted to the 6 s budget" in r.stdout and "verdict (" in r.stdout
    samples = [json.loads(line) for line in (tmp_path / "auto" / "samples.jsonl").read_text().splitlines()]
    log = [json.loads(line) for line in (tmp_path / "auto" / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [e["step"] for e in log if "val_nats_per_char" in e]
    quality = json.loads((tmp_path / "auto" / "quality.json").read_text())
    assert quality["verdict"] and quality["val_nats_per_char"] == config["metrics"]["val_nats_per_char"]


def test_train_lm_with_a_preset_keeps_its_size_and_fits_the_schedule(chat_corpus, tmp_path):
    r = run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(tmp_path / "p"), "--preset", "tiny",
                "--time-budget", "4", timeout=600)
    assert r.returncode == 0, r.stderr
    t = json.loads((tmp_path / "p" / "config.json").read_text())["training"]
    m = json.loads((tmp_path / "p" / "config.json").read_text())["model"]
    assert (m["num_layers"], m["hidden_size"], m["dropout"]) == (1, 128, 0.0)
    assert t["fit_budget"] == "schedule" and t["eval_seconds"] == pytest.approx(0.5)
    assert 1 <= t["warmup_steps"] <= 50


def test_words_count_letters_in_any_script_and_the_verdict_follows_the_share():
    assert words("Hi! 안녕하세요, it's 3 <b>ok</b>") == ["hi", "안녕하세요", "it", "s", "b", "ok", "b"]
    assert verdict(0.3, True).startswith("still learning: replies will be mostly made-up words — train "
                                         "longer or pick a smaller size")
    assert verdict(None, True).startswith("still learning")
    assert verdict(0.75, True).startswith("getting there: 75% of the words in replies are words of your corpus — ")
    assert verdict(0.95, True).startswith("ready to chat: 95%")
    # Against a corpus whose own unseen text scores 77% (a small bilingual chat upload), 75% is
    # ready and 50% is getting there; the ceiling is named.
    assert verdict(0.75, True, 0.77) == ("ready to chat: 75% of the words in replies are words of your corpus "
                                         "(your corpus's own unseen text: 77%)")
    assert verdict(0.5, True, 0.77).startswith("getting there: 50%") and "unseen text: 77%" in verdict(0.5, True, 0.77)
    assert verdict(0.4, False, 0.77).startswith("still learning: its text")
    assert ready(verdict(0.9, False, 0.95)) and not ready(verdict(0.5, True, 0.95))


def test_the_ceiling_is_the_share_of_held_out_words_found_in_the_rest(tmp_path):
    """The last tenth of the text, held out: its words that occur before it, as a share."""
    before = "waa wab " * 90  # 720 characters: the first 90%
    held = "wxx wyy " + "waa wab " * 9  # 80 characters, 20 words, 18 of them seen before
    text = tmp_path / "plain.txt"
    text.write_text(before + held)
    sample = CorpusSample.read(load_corpus(text))
    assert sample.ceiling == pytest.approx(18 / 20)
    assert {"wxx", "wyy"} <= sample.words  # the held-out words still count as corpus words
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("A few words only.\n")
    assert CorpusSample.read(load_corpus(tiny)).ceiling == 1.0  # too short to tell


def test_prompts_come_from_the_users_own_corpus(chat_corpus, tmp_path):
    sample = CorpusSample.read(load_corpus(chat_corpus))
    users = {text for conv in CONVERSATIONS for role, text in conv if role == "user"}
    assert sample.is_chat and len(sample.prompts) == 8 and set(sample.prompts) <= users
    assert {"hi", "mina", "안녕하세요"} <= sample.words
    assert sample.share(["Hi Mina", "zzqx"]) == (pytest.approx(2 / 3), 3)
    text = tmp_path / "plain.txt"
    text.write_text("The cell state carries memory forward.\nGates decide what to keep and drop.\n" * 20)
    plain = CorpusSample.read(load_corpus(text))
    assert not plain.is_chat and plain.prompts[0] == "The cell state carries "
