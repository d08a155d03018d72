"""The importer's layers, a graph, as clearconv containers (series-parallel decomposition).

During the walk every activation is a chain of layers from an origin (the
graph input or a :class:`~clearconv.onnx.graph.Merge`); chains that share
their first layers share those tensors, so the whole model is a directed
acyclic graph whose vertices are tensors. Each merge becomes a container:
its branches are the sub-graphs from the merge's *immediate dominator* (the
last tensor that every path from the input to the merge passes through: the
fork) to each of its inputs, built the same way, recursively. A graph is
series-parallel exactly when this uses every layer once; a tensor read
across branches (a layer that would be needed in two places) is refused.

- ``Concat`` of branches -> :class:`nn.Concat` (``dim`` the ONNX axis);
- ``Add`` / ``Sum`` of two branches -> :class:`nn.Residual` (the longer branch
  the block, the other the shortcut, none when it is the fork itself), of
  three or more -> :class:`nn.Add`.
"""

from __future__ import annotations

from typing import Any

from clearconv import nn
from clearconv.onnx.graph import Data, Merge
from clearconv.onnx.shapes import Refuse

_INPUT = object()  # the graph input's tensor


class _Dag:
    """Tensors (keyed by the object that makes them) and their parents."""

    def __init__(self, out: Data) -> None:
        self.kind: dict[int, Any] = {}  # id -> the layer, the Merge or _INPUT
        self.parents: dict[int, list[int]] = {}
        self.order: list[int] = []  # topological (parents first)
        self.end = self._add_chain(out)
        self.rank = {k: i for i, k in enumerate(self.order)}
        self.dom = self._dominators()

    @staticmethod
    def _key_at(x: Data, k: int) -> Any:
        """The object that makes the tensor after the first ``k`` layers of ``x``."""
        if k:
            return x.layers[k - 1]
        return _INPUT if x.origin is None else x.origin

    def _add_chain(self, x: Data) -> int:
        """Add the tensors of ``x`` (iteratively: chains are long); its end's key."""
        stack: list[tuple[Data, int]] = [(x, len(x.layers))]
        while stack:
            y, k = stack[-1]
            obj = self._key_at(y, k)
            key = id(obj)
            if key in self.kind:
                stack.pop()
                continue
            if obj is _INPUT:
                parents: list[tuple[Data, int]] = []
            elif isinstance(obj, Merge):
                parents = [(d, len(d.layers)) for d in obj.inputs]
            else:
                parents = [(y, k - 1)]
            todo = [p for p in parents if id(self._key_at(*p)) not in self.kind]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            self.kind[key] = obj
            self.parents[key] = [id(self._key_at(*p)) for p in parents]
            self.order.append(key)
        return id(self._key_at(x, len(x.layers)))

    def _dominators(self) -> dict[int, frozenset[int]]:
        dom: dict[int, frozenset[int]] = {}
        for key in self.order:
            ps = self.parents[key]
            common = frozenset.intersection(*(dom[p] for p in ps)) if ps else frozenset()
            dom[key] = common | {key}
        return dom

    def idom(self, key: int) -> int:
        """The last tensor before ``key`` that every path to it passes through."""
        return max(self.dom[key] - {key}, key=self.rank.__getitem__)


def _module(layers: list[nn.Module]) -> nn.Module:
    if not layers:
        return nn.Identity()
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def _join(merge: Merge, branches: list[list[nn.Module]]) -> nn.Module:
    if merge.kind == "concat":
        return nn.Concat(*(_module(b) for b in branches), dim=merge.dim)
    if len(branches) == 2 and any(branches):
        short, long_ = sorted(branches, key=len)
        return nn.Residual(_module(long_), _module(short) if short else None)
    return nn.Add(*(_module(b) for b in branches))


def assemble(out: Data) -> nn.Sequential:
    """The layers that compute ``out`` from the graph input, as nested containers.

    Raises
    ------
    Refuse
        When the graph is not series-parallel (a tensor is read across branches).
    """
    dag = _Dag(out)
    used: set[int] = set()

    def build(start: int, end: int) -> list[nn.Module]:
        """The layers from tensor ``start`` to tensor ``end`` (``start`` dominates ``end``)."""
        seq: list[nn.Module] = []
        key = end
        while key != start:
            if key in used:
                raise Refuse(
                    "the graph is not series-parallel: a tensor is read across branches "
                    "that meet elsewhere, so its layers would be needed twice "
                    "(clearconv's Concat and Add take branches from one tensor)"
                )
            used.add(key)
            obj = dag.kind[key]
            if isinstance(obj, Merge):
                fork = dag.idom(key)
                seq.append(_join(obj, [build(fork, p) for p in dag.parents[key]]))
                key = fork
            else:
                seq.append(obj)
                key = dag.parents[key][0]
        return seq[::-1]

    return nn.Sequential(*build(id(_INPUT), dag.end))
