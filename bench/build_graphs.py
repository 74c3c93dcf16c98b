"""Times building each shipped graph (tables -> validated GraphData -> split -> GraphTensor).

Run: .venv/bin/python bench/build_graphs.py [--repeat 3]
Prints, per schema, the best wall time of each stage and the peak resident memory.
"""

import argparse
import resource
import time

import tfrec  # noqa: F401
from tfrec.data.graph_data import load_graph_data
from tfrec.data.graph_tensor import training_graph
from tfrec.data.splits import SplitConfig, split_interactions
from tfrec.tf_setup import import_tf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import_tf()
    print(f"{'schema':<28}{'read+validate':>14}{'split':>8}{'GraphTensor':>13}{'total':>8}")
    for schema in ("schemas/movielens.pbtxt", "schemas/movielens-1m.pbtxt",
                   "schemas/ecommerce.pbtxt"):
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            data = load_graph_data(schema)
            t1 = time.perf_counter()
            split = split_interactions(data, SplitConfig())
            t2 = time.perf_counter()
            training_graph(data, split)
            t3 = time.perf_counter()
            times = (t1 - t0, t2 - t1, t3 - t2, t3 - t0)
            best = times if best is None or times[-1] < best[-1] else best
        print(f"{schema:<28}" + "".join(f"{t:>{w}.2f}s" for t, w in zip(best, (13, 7, 12, 7))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
