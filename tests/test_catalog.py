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


def damage(folder, change) -> None:
    """Rewrite a copied checkpoint's config.json: `change` edits the dict, or is the new text."""
    import json
    path = folder / "config.json"
    if isinstance(change, str):
        path.write_text(change)
    else:
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))


NESTED = '{"format": "lstm-chat/1", "model": ' + "[" * 200_000 + "]" * 200_000 + "}"
BAD_CONFIGS = {
    "metrics-list": (lambda c: c.update(metrics=[1]), '"metrics" must be a JSON object, got list [1]'),
    "corpus-string": (lambda c: c.update(corpus="x"), '"corpus" must be a JSON object, got str x'),
    "model-string": (lambda c: c.update(model="big"), '"model" must be a JSON object'),
    "tokenizer-kind-list": (lambda c: c["tokenizer"].update(kind=["char"]), "config.json"),
    "cell-list": (lambda c: c["model"].update(cell=["lstm"]), "config.json"),
    "dropout-string": (lambda c: c["model"].update(dropout="x"), "config.json"),
    "nested": (NESTED, "nests too deeply"),
}


def test_any_config_json_gives_a_broken_entry_with_its_reason_never_an_exception(tiny_checkpoint, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, root / "good")
    for name, (change, _) in BAD_CONFIGS.items():
        damage(shutil.copytree(tiny_checkpoint, root / name), change)
    found = {i.name: i for i in list_checkpoints(root)}
    assert found["good"].valid and "bits/char" in found["good"].describe()
    for name, (_, reason) in BAD_CONFIGS.items():
        assert not found[name].valid, name
        assert reason in found[name].describe(), (name, found[name].describe())
        assert str(tmp_path) not in found[name].describe()
