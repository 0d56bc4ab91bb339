"""The model picker's view of models/: every folder listed, broken ones with the reason."""

import shutil

import pytest

from app_pages.catalog import list_checkpoints
from chatbot.lm.model import LanguageModel, ModelConfig


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embed", [0, 24])
def test_parameter_count_from_config_matches_the_model(cell, embed):
    cfg = ModelConfig(vocab_size=50, cell=cell, num_layers=3, hidden_size=32, embed_size=embed)
    assert cfg.num_parameters() == LanguageModel(cfg).num_parameters()


def test_valid_and_broken_folders_are_listed_with_reasons(tiny_checkpoint, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, root / "good")
    shutil.copytree(tiny_checkpoint, root / "no_weights")
    (root / "no_weights" / "model.safetensors").unlink()
    (root / "empty").mkdir()
    shutil.copytree(tiny_checkpoint, root / "bad_json")
    (root / "bad_json" / "config.json").write_text("{oops")
    found = {i.name: i for i in list_checkpoints(root)}
    assert set(found) == {"good", "no_weights", "empty", "bad_json"}
    assert found["good"].valid
    assert "lstm 2×96" in found["good"].describe() and "bits/char" in found["good"].describe()
    assert found["no_weights"].problem == "model.safetensors is missing"
    assert "config.json is missing" in found["empty"].problem
    assert "not valid JSON" in found["bad_json"].problem
    assert [i.valid for i in list_checkpoints(root)] == [True, False, False, False]
    assert list_checkpoints(tmp_path / "nowhere") == []


def test_the_default_model_is_listed_first():
    from conftest import ROOT
    infos = list_checkpoints(ROOT / "models")
    assert infos[0].name == "default" and infos[0].valid
