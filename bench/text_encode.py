"""Benchmark: sentence embeddings of MovieLens-100K titles and the e-commerce default's titles.

Prints, per text set: texts, mean tokens, encoding throughput (texts/s, model already loaded,
no cache), and the time of a fully cached re-run; then the model load time and the process's
peak resident memory (getrusage). Run: `.venv/bin/python bench/text_encode.py [--batch-size N]`.
"""

import argparse
import csv
import importlib.resources
import os
import resource
import subprocess
import sys
import tempfile
import time

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow)
from tfrec.errors import TfrecError
from tfrec.tf_setup import import_tf


def movielens_titles() -> list[str]:
    path = importlib.resources.files("recbole") / "dataset_example/ml-100k/ml-100k.item"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [row[1] for row in csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE)]


def ecommerce_texts() -> dict[str, list[str]]:
    try:
        from tfrec.data.graph_data import read_texts

        texts = read_texts("schemas/ecommerce.pbtxt")
    except (ImportError, OSError, TfrecError) as e:  # bench what exists
        print(f"(e-commerce texts unavailable: {type(e).__name__}: {e})", file=sys.stderr)
        return {}
    return {f"ecommerce {n}.{f}": t for (n, f), t in texts.items()}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; best is shown")
    args = parser.parse_args()
    import_tf()  # first, so TensorFlow's start-up chatter is silenced
    os.environ["TFREC_CACHE"] = tempfile.mkdtemp(prefix="tfrec-bench-")  # cold, private cache

    from tfrec.text import TextConfig, embed_texts
    from tfrec.text.embedding_cache import _batch_encoder

    config = TextConfig(sequence_length=args.sequence_length, batch_size=args.batch_size)
    sets = {"movielens-100k titles": movielens_titles(), **ecommerce_texts()}

    # The one-time conversion runs in a child process, so that its memory peak (checkpoint +
    # model + HDF5 writing) is reported apart from the encoder's.
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tfrec.text as t; t.ensure_preset()"],
                   check=True)
    convert_s = time.perf_counter() - start
    convert_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    start = time.perf_counter()
    encoder = _batch_encoder(config.sequence_length)
    encoder.encode(["warm up the traced function"] * 4, batch_size=4)
    load_s = time.perf_counter() - start
    print(f"cpu cores: {os.cpu_count()}, batch size {args.batch_size}, "
          f"sequence length {args.sequence_length}")
    print(f"{'text set':32} {'texts':>6} {'tokens':>6} {'texts/s':>8} {'cached re-run':>14}")
    for name, texts in sets.items():
        tokens = sum(min(len(t), config.sequence_length - 2) + 2
                     for t in encoder.tokenize(texts)) / len(texts)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoder.encode(texts, batch_size=args.batch_size)
            best = min(best, time.perf_counter() - start)
        embed_texts(texts, config, progress=False)  # fills the cache
        start = time.perf_counter()
        embed_texts(texts, config, progress=False)
        cached = time.perf_counter() - start
        print(f"{name:32} {len(texts):6d} {tokens:6.1f} {len(texts) / best:8.0f} "
              f"{cached:12.3f} s", flush=True)
    print(f"one-time checkpoint conversion (child process): {convert_s:.1f} s, "
          f"peak RSS {convert_rss:.0f} MiB")
    print(f"model load from the cached preset + tracing: {load_s:.1f} s")
    print(f"peak RSS of the encoding process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
