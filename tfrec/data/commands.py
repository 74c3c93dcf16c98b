"""`tfrec data build`."""

import argparse

from tfrec.errors import TfrecError


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """The split options shared by `data build` and `train` (None when not given, so that they
    override a config file's [split] key by key)."""
    p.add_argument("--split", choices=["random", "temporal"],
                   help="per-user split of the interaction pairs: seeded random by ratio, or "
                   "temporal (oldest pairs train, newest test) (default: the config's [split], "
                   "else random)")
    p.add_argument("--ratios", metavar="TRAIN,VALID,TEST",
                   help="split ratios (default: the config's, else 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, help="seed of the random split and of --cold-items "
                   "(default: the config's, else 0)")
    p.add_argument("--cold-items", type=float, metavar="SHARE",
                   help="cold-start evaluation: hold out every pair of this share of the "
                   "interacted items (seeded), so they are tested on text and knowledge graph "
                   "alone (default: the config's, else 0)")
    p.add_argument("--split-dir", metavar="DIR",
                   help="explicit split: a folder with train.tsv, valid.tsv, test.tsv (header; "
                   "columns user_id, item_id with the original ids); overrides --split")


def split_config(args, base=None):
    """`base` (default: the default SplitConfig) with the split options given on top."""
    import dataclasses

    from tfrec.data.splits import SplitConfig

    values = {k: v for k, v in (("method", args.split), ("seed", args.seed),
                                ("cold_items", args.cold_items)) if v is not None}
    if args.ratios is not None:
        try:
            values["ratios"] = tuple(float(x) for x in args.ratios.split(","))
        except ValueError:
            message = f"--ratios {args.ratios!r} is not three comma-separated numbers"
            raise TfrecError(message) from None
    if args.split_dir is not None:
        values.update(method="files", split_dir=args.split_dir)
    return dataclasses.replace(base or SplitConfig(), **values)


def register(sub) -> None:
    data = sub.add_parser("data", help="build graph data from a schema's tables")
    cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    build = cmds.add_parser(
        "build", help="tables -> validated GraphTensor, vocabularies and splits",
        description="Read the tables SCHEMA names, validate them against it, map raw ids to "
        "dense indices, split the interactions, build the training GraphTensor (held-out pairs "
        "are not in it), print a summary and write everything under --out.")
    build.add_argument("--schema", required=True, help="GraphSchema .pbtxt")
    build.add_argument("--out", help="output folder (default: build/<schema name>)")
    add_split_arguments(build)
    build.set_defaults(func=_build)
    sample = cmds.add_parser(
        "sample", help="link subgraphs of the training pairs, sampled with Apache Beam",
        description="Sample one subgraph per training (user, item) pair with TF-GNN's Beam "
        "sampler, for graphs too big for one host's in-memory sampler: write the model graph "
        "as unigraph tables (OUT/graph/), run the Beam pipeline with the config's [sample] "
        "fanouts (rooted at the user and at the item, their own edge removed) and write "
        "sharded TFRecords of serialized GraphTensors (OUT/samples/) that "
        "tfrec.data.beam_reader.read_sampled parses in-graph. Needs the beam extra "
        "(pip install -e '.[beam]'; make install has it).")
    sample.add_argument("--schema", required=True, help="GraphSchema .pbtxt")
    sample.add_argument("--config", help="TOML config file: [model] decides the model graph's "
                        "features, [sample] fanouts the sampling, [split] the training pairs")
    sample.add_argument("--out", help="output folder (default: build/<schema name>-sampled)")
    sample.add_argument("--runner", default="DirectRunner",
                        help="Beam runner: DirectRunner (this host, default), DataflowRunner, "
                        "FlinkRunner, SparkRunner, PortableRunner...")
    sample.add_argument("--shards", type=int, default=0, metavar="N",
                        help="number of example files (default 0: the runner decides)")
    add_split_arguments(sample)
    sample.add_argument("--beam-args", nargs=argparse.REMAINDER, default=[],
                        metavar="FLAG", help="everything after it goes to Beam's "
                        "PipelineOptions, e.g. --beam-args --project=P --region=R "
                        "--temp_location=gs://B/tmp (last option)")
    sample.set_defaults(func=_sample)


def _build(args) -> int:
    from pathlib import Path

    from tfrec.data.build import build_graph, format_summary, write_built

    config = split_config(args)
    built = build_graph(args.schema, config)
    out = Path(args.out or Path("build") / Path(args.schema).stem)
    info = write_built(built, out)
    print(format_summary(info))
    print(f"\nwrote {out}/ (graph.tfrecord, vocab/, splits/, summary.json)")
    return 0


def _sample(args) -> int:
    import dataclasses
    import json
    from pathlib import Path

    import numpy as np

    from tfrec.config import load_config
    from tfrec.data.beam_sampler import check_beam, sample_with_beam
    from tfrec.train.prepare import prepare

    if args.shards < 0:
        raise TfrecError(f"--shards {args.shards} must be 0 (the runner decides) or more")
    check_beam()
    config = load_config(args.config)
    config = dataclasses.replace(config, split=split_config(args, config.split))
    if config.model.kind == "popularity":
        raise TfrecError("[model] kind = \"popularity\" has no graph to sample; use a GNN or "
                         "MF config")
    prepared = prepare(args.schema, config)
    users, items = prepared.split.pairs("train")
    out = Path(args.out or Path("build") / f"{Path(args.schema).stem}-sampled")
    labels = prepared.ranking_labels()
    labels = np.zeros(len(users), np.float32) if labels is None else labels
    info = sample_with_beam(prepared.model_graph, prepared.data.schema, users, items, labels,
                            out, config.sample.fanouts, shards=args.shards,
                            pipeline_args=[f"--runner={args.runner}", *args.beam_args],
                            split=json.loads(json.dumps(dataclasses.asdict(config.split))))
    print(json.dumps(info, indent=2))
    print(f"\nwrote {out}/ (graph/ tables, samples/ examples + schema, sampled.json)")
    return 0
