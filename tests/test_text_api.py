"""The public API of tfrec.text: a change here must be reviewed (and this list updated)."""

import importlib
import subprocess
import sys

import tfrec.text

PUBLIC_API = [
    "MODES", "BatchEncoder", "SentenceEncoder", "SentencePooling", "TextConfig",
    "convert_checkpoint", "embed_graph_texts", "embed_texts", "ensure_preset",
    "load_backbone_and_preprocessor", "make_preprocessor", "make_sentence_encoder",
    "make_tokenizer", "read_checkpoint",
]


def test_public_api_is_unchanged_and_resolves():
    assert tfrec.text.__all__ == PUBLIC_API
    assert sorted(tfrec.text._EXPORTS) == sorted(PUBLIC_API)  # every name has a home module
    for name in PUBLIC_API:  # each name is the object of its home module
        home = importlib.import_module(tfrec.text._EXPORTS[name])
        assert getattr(tfrec.text, name) is getattr(home, name)


def test_importing_the_cli_commands_does_not_import_tensorflow():
    code = ("import sys, tfrec.text, tfrec.text.commands, tfrec.text.config; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
