"""The flow stage: Langflow exports parsed, validated and analyzed (stdlib only: no lfx, no dagster)."""

from .analysis import Analysis, analyze
from .errors import FlowError
from .model import Edge, Flow, Node, Output
from .parse import load_flow, parse_flow, topological_order

__all__ = [
    "Analysis",
    "Edge",
    "Flow",
    "FlowError",
    "Node",
    "Output",
    "analyze",
    "load_flow",
    "parse_flow",
    "topological_order",
]
