"""Node pools and the rules that put each step of a plan on one (see `pools.yaml` for the format).

The result is a step's `dagster-k8s/config` op tag: node selector, tolerations, resources and the pool
label `stepflow.io/pool`, which the co-location affinity (`colocate.py`) keys on.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..plan import FlowPlan, Step

POOL_LABEL = "stepflow.io/pool"
DEFAULT_POOLS = Path(__file__).with_name("pools.yaml")
CATEGORIES = ("docling", "embeddings", "llm", "vector_store", "general")


class PlacementError(ValueError):
    pass


@dataclass(frozen=True)
class Pool:
    name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def k8s_config(self) -> dict[str, Any]:
        """The op tag value dagster-k8s reads (`dagster-k8s/config`)."""
        pod_spec: dict[str, Any] = {}
        if self.node_selector:
            pod_spec["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in self.tolerations]
        config: dict[str, Any] = {
            "pod_template_spec_metadata": {"labels": {**self.labels, POOL_LABEL: self.name}},
            "pod_spec_config": pod_spec,
        }
        if self.resources:
            config["container_config"] = {"resources": dict(self.resources)}
        return config


@dataclass(frozen=True)
class Rule:
    pool: str
    component_type: str | None = None  # a glob on the component type, case-insensitive
    category: str | None = None

    def matches(self, step: Step) -> bool:
        if self.component_type and not fnmatch.fnmatch(
            step.component_type.lower(), self.component_type.lower()
        ):
            return False
        return not (self.category and step.category != self.category)


@dataclass(frozen=True)
class Overrides:
    """Rules for one flow, or the global ones: per node id first, then rules, then the default."""

    rules: tuple[Rule, ...] = ()
    nodes: Mapping[str, str] = field(default_factory=dict)
    default_pool: str | None = None


@dataclass(frozen=True)
class PlacementConfig:
    pools: Mapping[str, Pool]
    default: Overrides
    flows: Mapping[str, Overrides] = field(default_factory=dict)

    def pool_for(self, plan: FlowPlan, step: Step) -> Pool:
        scopes = [s for s in (self.flows.get(plan.name), self.flows.get(plan.flow)) if s]
        scopes.append(self.default)
        for scope in scopes:  # a node override anywhere beats a rule
            if step.node_id in scope.nodes:
                return self.pools[scope.nodes[step.node_id]]
        for scope in scopes:
            for rule in scope.rules:
                if rule.matches(step):
                    return self.pools[rule.pool]
        for scope in scopes:
            if scope.default_pool:
                return self.pools[scope.default_pool]
        raise PlacementError(f"no pool for step {step.name} (node {step.node_id}) of flow {plan.flow!r}")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<dict>") -> PlacementConfig:
        def fail(where: str, why: str) -> PlacementError:
            return PlacementError(f"{source}: {where}: {why}")

        raw_pools = doc.get("pools")
        if not isinstance(raw_pools, Mapping) or not raw_pools:
            raise fail("pools", "a mapping of pool names is required")
        pools = {}
        for name, spec in raw_pools.items():
            spec = spec or {}
            unknown = set(spec) - {"node_selector", "tolerations", "resources", "labels"}
            if unknown:
                raise fail(f"pools.{name}", f"unknown keys {sorted(unknown)}")
            pools[name] = Pool(
                name=name,
                node_selector={str(k): str(v) for k, v in (spec.get("node_selector") or {}).items()},
                tolerations=tuple(spec.get("tolerations") or ()),
                resources=spec.get("resources") or {},
                labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
            )

        def pool_ref(where: str, name: Any) -> str:
            if name not in pools:
                raise fail(where, f"unknown pool {name!r} (pools: {', '.join(pools)})")
            return str(name)

        def overrides(where: str, d: Mapping[str, Any]) -> Overrides:
            rules = []
            for i, r in enumerate(d.get("rules") or ()):
                if not (r.get("component_type") or r.get("category")):
                    raise fail(f"{where}rules[{i}]", "needs component_type and/or category")
                if r.get("category") and r["category"] not in CATEGORIES:
                    raise fail(f"{where}rules[{i}]", f"category must be one of {', '.join(CATEGORIES)}")
                rules.append(
                    Rule(
                        pool_ref(f"{where}rules[{i}]", r.get("pool")),
                        r.get("component_type"),
                        r.get("category"),
                    )
                )
            nodes = {str(k): pool_ref(f"{where}nodes.{k}", v) for k, v in (d.get("nodes") or {}).items()}
            default = d.get("default_pool")
            return Overrides(
                tuple(rules), nodes, pool_ref(f"{where}default_pool", default) if default else None
            )

        default = overrides("", doc)
        if default.default_pool is None:
            raise fail("default_pool", "required (the pool of a step no rule matches)")
        flows = {str(k): overrides(f"flows.{k}.", v or {}) for k, v in (doc.get("flows") or {}).items()}
        return cls(pools=pools, default=default, flows=flows)


def load_placement(path: str | Path | None = None) -> PlacementConfig:
    """The node-pool config: `path`, else $STEPFLOW_NODE_POOLS, else the shipped `pools.yaml`."""
    path = Path(path or os.environ.get("STEPFLOW_NODE_POOLS") or DEFAULT_POOLS)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PlacementError(f"{path}: {e}") from e
    return PlacementConfig.from_dict(doc, source=str(path))
