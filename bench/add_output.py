#!/usr/bin/python3
"""Copy an ONNX model with an intermediate value added to the graph's outputs, so that ONNX
Runtime can stop there (it computes only what the requested outputs need).

    add_output.py MODEL VALUE OUT.onnx

The copy goes to bench/out/ (gitignored): model files are never committed.
"""
import sys

import onnx


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, value, dst = sys.argv[1:]
    model = onnx.load(src)
    g = model.graph
    if not any(value in n.output for n in g.node):
        print("add_output.py: %s: no node produces '%s'" % (src, value), file=sys.stderr)
        return 1
    if value not in [o.name for o in g.output]:
        info = onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None)
        g.output.append(info)
    onnx.save(model, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
