"""`prefixproof plot`: attention heatmaps with and without a prefix (needs the `plot` extra)."""
from __future__ import annotations

import argparse
import sys

from prefixproof.verify import optional as extras
from prefixproof.report import EXIT_USAGE


def cmd_plot(args: argparse.Namespace) -> int:
    from prefixproof.usage import UsageError, check_writable

    check_writable(args.out)
    try:
        extras.pyplot()
        if args.source != "numpy":
            extras.transformers()
            if args.source == "minilm":
                extras.minilm_dir()
    except extras.MissingExtra as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from prefixproof.crosscheck.plots import demo_attention, gpt2_source, minilm_source, numpy_source, plot_layer

    if args.source == "numpy":
        if args.layer != 0:
            raise UsageError("the numpy demo model has one layer; use --layer 0")
        A, A_pt, P = demo_attention()
        described = numpy_source(P)
    else:
        if args.source == "gpt2":
            from prefixproof.verify.crosscheck.gpt2 import Gpt2Shape, gpt2_arrays

            shape = Gpt2Shape()
            arrays = gpt2_arrays(shape, "float64")
            described = gpt2_source(shape.P, shape.seed)
        else:
            from prefixproof.verify.crosscheck.minilm import minilm_arrays

            arrays = minilm_arrays("float64")
            described = minilm_source()
        if not 0 <= args.layer < len(arrays):
            raise UsageError(f"--layer must be in 0..{len(arrays) - 1} for {args.source}")
        a = arrays[args.layer]
        A, A_pt, P = a.A[0], a.A_pt[0], a.P
    if not args.quiet:
        print(f"model: {described.model}; {described.prefix}")
    for path, stats in plot_layer(A, A_pt, P, args.source, args.layer, args.out,
                                   causal=args.source != "minilm", described=described):
        print(str(path) if args.quiet else f"wrote {path}: alpha {stats['alpha_min']:.3f}..{stats['alpha_max']:.3f}, "
              f"max |rescaled - A| {stats['max_difference']:.1e}")
    return 0
