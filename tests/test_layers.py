"""The package's folders are its layers: text -> lm -> train / chat. A module imports only
from its own layer or the ones below it (and the shared errors/atomic helpers), never up,
and the library never imports the web app."""

import ast

import pytest

from conftest import ROOT

BELOW = {"text": set(), "lm": {"text"}, "train": {"text", "lm"}, "chat": {"text", "lm"}}
SHARED = {"errors", "atomic"}


def imported_packages(path) -> set[str]:
    """The chatbot subpackages and top-level modules a file imports, by name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 2 and node.module:  # from ..lm.model import X
                names.add(node.module.split(".")[0])
            elif node.level == 0 and node.module and node.module.startswith("chatbot."):
                names.add(node.module.split(".")[1])
            elif node.level == 0 and node.module and node.module.split(".")[0] in {"app_pages", "app"}:
                names.add("app_pages")
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("chatbot.")}
            names |= {"app_pages" for a in node.names if a.name.split(".")[0] in {"app_pages", "app"}}
    return names


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_a_layer_imports_only_from_below(layer):
    for path in sorted((ROOT / "chatbot" / layer).glob("*.py")):
        wrong = imported_packages(path) - BELOW[layer] - SHARED - {layer}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: layers above {layer}/ or the app"


def test_the_shared_helpers_import_no_layer():
    for name in SHARED:
        assert not imported_packages(ROOT / "chatbot" / f"{name}.py") - SHARED
