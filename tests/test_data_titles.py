"""Display titles: the schema names the feature that shows a node to people (projector, served
`titles`); validated when the schema loads; sensible fallbacks; empty values show the id."""

import pytest

from tfrec.cli import main
from tfrec.data.graph_data import load_graph_data
from tfrec.errors import TfrecError
from tfrec.schema import load_schema

ITEM_EXTRAS = '''      extra { key: "text" value: "title" }
      extra { key: "title" value: "title" }
'''


def with_item_set(tiny, features: str, extras: str):
    """The tiny schema with the item node set's features and text/title extras replaced."""
    path = tiny / "schema.pbtxt"
    text = path.read_text()
    old_features = '''    features { key: "title" value { dtype: DT_STRING } }
    features { key: "price" value { dtype: DT_FLOAT } }
'''
    assert old_features in text and ITEM_EXTRAS in text
    path.write_text(text.replace(old_features, features).replace(ITEM_EXTRAS, extras))
    return path


def test_shipped_schemas_name_the_title_not_the_description():
    ecommerce = load_schema("schemas/ecommerce.pbtxt")
    # the item text is "title,description": the alphabetically first text feature (description)
    # used to be shown; the schema now names title, and the entity's "name" is its fallback
    assert ecommerce.node_sets["item"].title == "title"
    assert ecommerce.node_sets["entity"].title == "name"
    assert ecommerce.node_sets["user"].title is None  # age_band, region: shown by id
    movielens = load_schema("schemas/movielens.pbtxt")
    assert movielens.node_sets["item"].title == "title"
    assert movielens.node_sets["entity"].title is None


FALLBACKS = [
    # (item features, extras, display feature): explicit > "title"/"name" > first of `text`
    ('features { key: "blurb" value { dtype: DT_STRING } }\n'
     'features { key: "label" value { dtype: DT_STRING } }\n',
     'extra { key: "text" value: "label,blurb" }\n', "label"),  # text order, not alphabetical
    ('features { key: "blurb" value { dtype: DT_STRING } }\n'
     'features { key: "name" value { dtype: DT_STRING } }\n',
     'extra { key: "text" value: "blurb,name" }\n', "name"),
    ('features { key: "blurb" value { dtype: DT_STRING } }\n'
     'features { key: "name" value { dtype: DT_STRING } }\n',
     'extra { key: "text" value: "blurb,name" }\nextra { key: "title" value: "blurb" }\n',
     "blurb"),
    ('features { key: "price" value { dtype: DT_FLOAT } }\n', '', None),
]


@pytest.mark.parametrize("features,extras,expected", FALLBACKS)
def test_display_feature_fallbacks(tiny, features, extras, expected):
    path = with_item_set(tiny, features, extras)
    assert load_schema(path).node_sets["item"].title == expected


def test_a_title_that_is_not_a_feature_is_refused_in_one_sentence(tiny, capsys):
    path = with_item_set(tiny, 'features { key: "title" value { dtype: DT_STRING } }\n',
                         'extra { key: "title" value: "name" }\n')
    with pytest.raises(TfrecError, match=r"node set 'item': metadata title='name' must name a "
                       r"feature of it \(features: title\)"):
        load_schema(path)
    assert main(["schema", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_titles_read_the_display_feature_and_show_the_id_where_it_is_empty(tiny):
    items = tiny / "items.tsv"
    # i4's title is blank (whitespace only), i6's has a tab-free double space
    items.write_text(items.read_text().replace("Ceramic Vase", "  ")
                     .replace("Les Misérables", "Les  Misérables"))
    titles = load_graph_data(tiny / "schema.pbtxt").titles("item")
    assert titles.tolist() == ["Red Wool Sweater", "Blue Cotton Shirt", "Steel Frying Pan",
                               "i4", "Oak Bookshelf", "Les Misérables"]
    # no display feature at all: the ids
    path = with_item_set(tiny, 'features { key: "price" value { dtype: DT_FLOAT } }\n', '')
    items.write_text("item_id\tprice\n" + "".join(f"i{i}\t{i}\n" for i in range(1, 7)))
    assert load_graph_data(path).titles("item").tolist() == [f"i{i}" for i in range(1, 7)]


def test_projector_and_export_show_titles_not_descriptions(tiny, tmp_path):
    from tfrec.config import config_from_dict
    from tfrec.export.from_run import load_artifacts
    from tfrec.train.run import train

    # like the e-commerce items: a description, alphabetically before the title and first in
    # the text list, which the projector and the served titles used to show
    path = with_item_set(tiny, 'features { key: "title" value { dtype: DT_STRING } }\n'
                         'features { key: "description" value { dtype: DT_STRING } }\n',
                         'extra { key: "text" value: "description,title" }\n'
                         'extra { key: "title" value: "title" }\n')
    items = tiny / "items.tsv"
    rows = [line.split("\t") for line in items.read_text(encoding="utf-8").splitlines()]
    items.write_text("item_id\ttitle\tdescription\n" + "".join(
        f"{i}\t{t}\tA fine {t.lower()} for every day.\n" for i, t, _ in rows[1:]),
        encoding="utf-8")
    config = config_from_dict({"model": {"dim": 8, "layers": 1}, "text": {"mode": "off"},
                               "train": {"epochs": 1, "batch_size": 4},
                               "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}})
    run = tmp_path / "run"
    train(str(path), config, str(run), progress=False, log=lambda s: None)
    expected = [t for _, t, _ in rows[1:]]
    metadata = (run / "logs" / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert metadata == ["item_id\ttitle"] + [f"i{n}\t{t}" for n, t in enumerate(expected, 1)]
    assert load_artifacts(str(run)).item_titles.tolist() == expected
