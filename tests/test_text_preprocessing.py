"""Text cleaning, TextConfig validation and the WordPiece tokenizer on real MovieLens titles."""

import csv
import importlib.resources
import math

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow)
from tfrec.errors import TfrecError
from tfrec.text.config import TextConfig
from tfrec.text.preprocessing import CHARS_PER_TOKEN_KEPT, clean_texts


def movielens_titles() -> list[str]:
    """Column 2 (`movie_title:token_seq`) of recbole's ml-100k.item, a TSV with a header."""
    path = importlib.resources.files("recbole") / "dataset_example/ml-100k/ml-100k.item"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t")[1] == "movie_title:token_seq"
    return [row[1] for row in csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="module")
def preprocessor():
    from tfrec.text.preset import load_backbone_and_preprocessor

    return load_backbone_and_preprocessor(32)[0]


def test_every_movielens_title_tokenises_without_unk(preprocessor):
    titles = movielens_titles()
    assert len(titles) == 1682
    accented = [t for t in titles if any(ord(c) > 127 for c in t)]
    assert any("Misérables" in t for t in accented)
    tokenizer = preprocessor.tokenizer
    unk = tokenizer.token_to_id("[UNK]")
    ids = tokenizer(titles)
    bad = [t for t, row in zip(titles, ids.to_list()) if unk in row]
    assert bad == []


def test_accents_are_stripped_and_text_lower_cased(preprocessor):
    tokenizer = preprocessor.tokenizer
    pieces = [tokenizer.id_to_token(i) for i in tokenizer("Les Misérables").numpy()]
    assert pieces == [tokenizer.id_to_token(i) for i in tokenizer("les miserables").numpy()]
    assert "[UNK]" not in pieces


def test_preprocessor_packs_and_truncates_to_the_sequence_length(preprocessor):
    out = preprocessor(["Toy Story", "word " * 500, ""])
    token_ids = out["token_ids"].numpy()
    mask = out["padding_mask"].numpy()
    assert token_ids.shape == (3, 32)
    cls, sep = preprocessor.tokenizer.cls_token_id, preprocessor.tokenizer.sep_token_id
    assert list(mask.sum(1)) == [4, 32, 2]  # [CLS] toy story [SEP]; truncated; [CLS] [SEP]
    assert token_ids[1, 0] == cls and token_ids[1, 31] == sep
    assert list(token_ids[2, :2]) == [cls, sep]


def test_clean_texts_defines_missing_and_odd_values():
    long = "x " * 10_000
    cleaned = clean_texts([None, math.nan, "", b"caf\xc3\xa9", "日本語", "a\ud800b", long],
                          sequence_length=32)
    assert cleaned[:5] == ["", "", "", "café", "日本語"]
    cleaned[5].encode("utf-8")  # the lone surrogate was replaced: valid UTF-8 now
    assert len(cleaned[6]) == CHARS_PER_TOKEN_KEPT * 32


@pytest.mark.parametrize("texts, message", [
    ("just one string", "list of strings, not a single string"),
    (["ok", 3], r"texts\[1\] is a int"),
    ([b"\xff"], r"texts\[0\] is bytes that are not valid UTF-8"),
    (42, "must be a list of strings"),
])
def test_clean_texts_rejects_what_is_not_text(texts, message):
    with pytest.raises(TfrecError, match=message):
        clean_texts(texts)


def test_text_config_defaults_and_dict_round_trip():
    config = TextConfig()
    assert (config.mode, config.sequence_length, config.batch_size) == ("frozen", 32, 128)
    assert TextConfig.from_dict(config.to_dict()) == config
    assert TextConfig.from_dict({"mode": "finetune"}).mode == "finetune"


@pytest.mark.parametrize("values, field", [
    ({"mode": "fine-tune"}, "text.mode"),
    ({"sequence_length": 2}, "text.sequence_length"),
    ({"sequence_length": 513}, "text.sequence_length"),
    ({"sequence_length": True}, "text.sequence_length"),
    ({"sequence_length": 32.0}, "text.sequence_length"),
    ({"batch_size": 0}, "text.batch_size"),
    ({"colour": "red"}, "unknown config key text.colour"),
])
def test_text_config_rejects_bad_values_naming_the_field(values, field):
    with pytest.raises(TfrecError, match=field):
        TextConfig.from_dict(values)


def test_empty_missing_long_and_non_ascii_texts_get_defined_embeddings():
    from tfrec.text.embedding_cache import embed_texts

    texts = ["", None, "   ", "Misérables " * 400, "東京の映画", "🙂🙂", "Toy Story"]
    e = embed_texts(texts, TextConfig(sequence_length=16), progress=False, cache=False)
    assert e.shape == (7, 384) and np.all(np.isfinite(e))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e[0], e[1], atol=1e-6)  # None is the empty text
    np.testing.assert_allclose(e[0], e[2], atol=1e-6)  # so is whitespace
