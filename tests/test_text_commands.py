"""`tfrec text encode|embed` through the real CLI entry point, and embed_graph_texts."""

import importlib.util
import json
import re

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow)
from tfrec.cli import main
from tfrec.errors import TfrecError
from tfrec.text import TextConfig


def test_encode_json_prints_one_unit_vector_per_text_in_order(capsys):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "Misérables", ""]
    assert main(["text", "encode", *texts, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout holds only the JSON document
    e = np.array(out["embeddings"])
    assert e.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] == pytest.approx(0.7553, abs=0.001)
    single = json.loads(_run_json(capsys, ["Misérables"]))["embeddings"][0]
    np.testing.assert_allclose(single, e[2], atol=1e-5)  # order kept, batch-independent


def _run_json(capsys, texts):
    assert main(["text", "encode", *texts, "--json"]) == 0
    return capsys.readouterr().out


def test_encode_prints_a_cosine_table(capsys):
    assert main(["text", "encode", "A man is eating food.",
                 "A man is eating a piece of bread."]) == 0
    out = capsys.readouterr().out
    assert "cosine similarity" in out and "0.7553" in out and "1.0000" in out
    assert "'A man is eating food.'" in out


def test_encode_rejects_a_bad_sequence_length_in_one_sentence(capsys):
    assert main(["text", "encode", "x", "--sequence-length", "1"]) == 2
    err = capsys.readouterr().err
    assert err == ("tfrec: error: config key text.sequence_length is 1, but it must be between "
                   "3 and 512\n")


@pytest.mark.parametrize("argv, words", [
    (["text", "--help"], ["embed", "encode", "all-MiniLM-L6-v2"]),
    (["text", "embed", "--help"], ["--schema", "cache", "--sequence-length"]),
    (["text", "encode", "--help"], ["TEXT", "--json", "cosine"]),
])
def test_help_texts(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_embed_graph_texts_embeds_each_feature():
    from tfrec.text import embed_graph_texts

    seen = []
    texts = {("item", "title"): ["Toy Story", None, "Toy Story"],
             ("user", "bio"): ["Likes westerns."]}
    result = embed_graph_texts(texts, TextConfig(), progress=False,
                               on_feature=lambda *a: seen.append(a))
    assert {k: v.shape for k, v in result.items()} == {("item", "title"): (3, 384),
                                                      ("user", "bio"): (1, 384)}
    np.testing.assert_array_equal(result["item", "title"][0], result["item", "title"][2])
    assert [(key, n) for key, n, _ in seen] == [(("item", "title"), 3), (("user", "bio"), 1)]
    with pytest.raises(TfrecError, match="not a \\(node_set, feature\\) pair"):
        embed_graph_texts({"title": ["x"]}, progress=False)
    with pytest.raises(TfrecError, match=r"texts of item.title\[0\] is a int"):
        embed_graph_texts({("item", "title"): [7]}, progress=False)


@pytest.mark.skipif(importlib.util.find_spec("tfrec.data.graph_data") is None,
                    reason="the data layer (tfrec.data.graph_data) is not built yet")
def test_embed_command_on_the_movielens_schema_then_from_cache(capsys):
    from tfrec.data.graph_data import read_texts

    schema = "schemas/movielens.pbtxt"
    texts = read_texts(schema)
    assert main(["text", "embed", "--schema", schema, "--no-progress"]) == 0
    main(["text", "embed", "--schema", schema, "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    pattern = re.compile(r"(\d+) texts, (\d+) distinct: (\d+) encoded, (\d+) from cache$")
    for (node_set, feature), values in texts.items():
        runs = [pattern.search(line).groups() for line in out
                if line.startswith(f"{node_set}.{feature}:")]
        distinct = len(set(values))
        assert len(runs) == 2
        assert runs[1] == (str(len(values)), str(distinct), "0", str(distinct))  # all cached


def test_embed_command_with_a_missing_schema_fails_in_one_sentence(capsys, tmp_path):
    if importlib.util.find_spec("tfrec.data.graph_data") is None:
        pytest.skip("the data layer (tfrec.data.graph_data) is not built yet")
    assert main(["text", "embed", "--schema", str(tmp_path / "none.pbtxt")]) == 2
    assert "Traceback" not in capsys.readouterr().err
