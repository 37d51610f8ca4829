#!/usr/bin/python3
"""Copy an ONNX model cut at an intermediate value: that value becomes the graph's only
output, and the nodes it does not depend on (the later blocks, the head) are dropped with
the initializers only they read, so that ONNX Runtime computes what bench_engine does and
no more.  (Adding the value as an extra output is not enough: ONNX Runtime 1.30 runs every
node of the graph whichever outputs are asked for; its profile showed EfficientNet-B0's
classifier Gemm in each timed run.)

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
    producer = {o: n for n in g.node for o in n.output}
    if value not in producer:
        print("add_output.py: %s: no node produces '%s'" % (src, value), file=sys.stderr)
        return 1
    # the nodes the value depends on, through subgraph-free ONNX (Loop/If bodies would need
    # their captured names too: none of the benchmark models has one)
    need, stack = set(), [value]
    while stack:
        n = producer.get(stack.pop())
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(i for i in n.input if i)
    keep = [n for n in g.node if id(n) in need]
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(inputs)
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None))
    onnx.save(model, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
