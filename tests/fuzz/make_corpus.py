#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/*.bin for fuzz_bnorm.cpp (the
2-d API) and tests/fuzz/corpus_ranks/*.bin for fuzz_ranks.cpp (BatchNorm1d/3d, fold_into).

Each seed is a scenario spelled in its target's input format (the targets read bytes front to
back, zeros once the input ends): a header (type, num_features, eps, momentum, flags), then
steps. The seeds reach every path quickly; libFuzzer mutates them from there. Each target's
tables, readers and scenarios are in a module of their own: corpus_2d.py, corpus_ranks.py.

    python3 tests/fuzz/make_corpus.py        # rewrites both directories' seed-*.bin
"""
import pathlib

from corpus_2d import SEEDS
from corpus_ranks import RANKS_SEEDS


def write(directory, seeds):
    out = pathlib.Path(__file__).resolve().parent / directory
    out.mkdir(exist_ok=True)
    for old in out.glob("seed-*.bin"):
        old.unlink()
    for i, (name, data) in enumerate(seeds.items()):
        assert all(0 <= b <= 255 for b in data), name
        (out / f"seed-{i:02d}-{name}.bin").write_bytes(bytes(data))
    print(f"wrote {len(seeds)} seeds to {out}")


def main():
    write("corpus", SEEDS)
    write("corpus_ranks", RANKS_SEEDS)


if __name__ == "__main__":
    main()
