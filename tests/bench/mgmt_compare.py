#!/usr/bin/env python3
"""mgmt_compare.py LABEL=OUTPUT ... - bench_mgmt's figures of several runs side by side,
with each run's ratio to the first. OUTPUT is what tests/bench/bench_mgmt printed."""
import re
import sys


def figs(path):
    t = open(path).read()
    f = {}
    m = re.search(r"1 device pushed.*?p50=([\d.]+) ms p99=([\d.]+) ms", t)
    if m:
        f["push->ack p50 at N=1 (ms)"], f["push->ack p99 at N=1 (ms)"] = map(float, m.groups())
    # the per-run figure line (not "all acknowledged after", which is the wait's end
    # when some acks never came)
    m = re.search(r"fan-out last delivery ([\d.]+) s, last ack ([\d.]+) s", t)
    if m:
        f["fan-out: last delivery (s)"], f["fan-out: last ack (s)"] = map(float, m.groups())
    m = re.search(r"([\d.]+) kB per connection", t)
    if m:
        f["memory per connection (kB)"] = float(m.group(1))
    return f


runs = [a.split("=", 1) for a in sys.argv[1:]]
if len(runs) < 2 or any(len(r) != 2 for r in runs):
    sys.exit("usage: mgmt_compare.py LABEL=OUTPUT LABEL=OUTPUT ...")
data = [figs(p) for _, p in runs]
nan = float("nan")
head = "%-30s" % "figure" + "".join(" %9s" % l for l, _ in runs)
head += "".join(" %9s" % (l + "/" + runs[0][0])[:9] for l, _ in runs[1:])
print(head)
for k in data[0]:
    v = [d.get(k, nan) for d in data]
    line = "%-30s" % k + "".join(" %9.2f" % x for x in v)
    line += "".join(" %9.2f" % (x / v[0] if v[0] else nan) for x in v[1:])
    print(line)
