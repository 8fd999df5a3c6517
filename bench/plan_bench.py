"""Parse + plan + YAML on synthetic flows of 10 to 5,000 nodes.

Each synthetic node looks like a small real component: ~1 KB of code, five fields, two outputs; every node
after the first few takes two inputs from earlier nodes, so the graph is a wide DAG, not a chain.

    uv run python bench/plan_bench.py [--sizes 10,100,1000,5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from stepflow_dagster.flow import parse_flow
from stepflow_dagster.plan import dump_plan, plan_flow

CODE = "from lfx.custom import Component\n\n\nclass Synthetic(Component):\n" + "    x = 1\n" * 150


def synthetic_flow(n: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    nodes, edges = [], []
    for i in range(n):
        node_id = f"Synthetic-{i:05d}"
        template = {"code": {"type": "code", "value": CODE}}
        template.update({f"field_{k}": {"type": "str", "value": f"v{k}", "list": k == 0} for k in range(5)})
        outputs = [{"name": o, "method": f"build_{o}", "types": ["Message"]} for o in ("text", "data")]
        nodes.append(
            {
                "id": node_id,
                "type": "genericNode",
                "data": {
                    "id": node_id,
                    "type": "Synthetic",
                    "node": {"display_name": f"Synthetic {i}", "template": template, "outputs": outputs},
                },
            }
        )
        for k in range(2 if i >= 2 else 0):
            src = f"Synthetic-{rng.randrange(i):05d}"
            sh = {"dataType": "Synthetic", "id": src, "name": "text", "output_types": ["Message"]}
            th = {"fieldName": "field_0" if k == 0 else "field_1", "id": node_id, "inputTypes": ["Message"]}
            edges.append({"source": src, "target": node_id, "data": {"sourceHandle": sh, "targetHandle": th}})
    return {"name": f"synthetic {n}", "data": {"nodes": nodes, "edges": edges}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000,2000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        "| nodes | edges | parse (ms) | plan (ms) | YAML (ms) | total (ms) | µs per node | YAML size (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        text = json.dumps(synthetic_flow(n))
        best: tuple[float, float, float] | None = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            flow = parse_flow(json.loads(text))
            t1 = time.perf_counter()
            plan = plan_flow(flow)
            t2 = time.perf_counter()
            yaml_text = dump_plan(plan)
            t3 = time.perf_counter()
            run = (t1 - t0, t2 - t1, t3 - t2)
            best = run if best is None or sum(run) < sum(best) else best
        assert best is not None
        total = sum(best)
        print(
            f"| {n} | {len(flow.edges)} | {best[0] * 1e3:.1f} | {best[1] * 1e3:.1f} | {best[2] * 1e3:.1f} "
            f"| {total * 1e3:.1f} | {total / n * 1e6:.0f} | {len(yaml_text) / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
