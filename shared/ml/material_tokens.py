"""Shader node graphs as tokens, with the decoding grammar that keeps every sample buildable.

A material becomes a *graph at the grid* (``canonical_graph``), the graph becomes tokens
(``encode``), and tokens become the graph again through ``MaterialGrammar``, which is also what
constrains sampling; ``graph_to_material`` writes a scene-format material (node tree + PBR
summary) that the add-on's injector builds. For every material of the corpus,
``canonical_graph(graph_to_material(g)) == g`` and ``decode(encode(g)) == g`` (tested).

The closed vocabulary is ``material_nodes.json``, written from real Blender 5.0 by
``python -m blender_worker.shader_node_spec``: node types (the corpus's, the Principled family),
their sockets by Blender 5.0 identifier with types and defaults, their enum and boolean properties.

The sequence is a walk from the Material Output towards the inputs, one node per TYPE token
(numbered in that order):

    BOS  node  EOS
    node  := TYPE  PROP*  STOP*  entry*  END          (STOP: a colour-ramp stop; ValToRGB only)
    entry := IN(socket)  ( value-tokens | TYPE OUT(socket) PROP* STOP* entry* END | REF(k) OUT(socket) )
    STOP  := STOP F(position) L a b

An entry either sets an unlinked input (only values off the default are written) or links it
from a new node (written right there) or from node k written earlier and already closed. So the
root is always a Material Output, every node reaches it, and a link never closes a cycle (a
closed node does not lie downstream of the open ones). The grammar also keeps links
type-compatible (shader to shader; colour, value and vector among themselves, as Blender
converts them), makes the output's Surface or Volume linked, and keeps a closing path within
the token and node budgets at every step.

Values by socket type, on fixed grids: floats (and each vector component) on a grid that is
fine near 0..1 and coarser up to +-1000 (``FLOAT_GRID``); colours in OKLab (L, a, b tokens; a
step of 0.02 is about 1 CIEDE2000 unit), alpha fixed at 1.

What the graph at the grid leaves out, and why:
- names, labels, locations, frames and reroutes (layout, not look);
- nodes that do not reach the active Material Output, muted links and nodes (no effect on render);
- node groups are flattened into the material's graph: a generated material is one editable
  graph, and what a group does is learnt from its inside (the corpus's groups are glTF
  exporter helpers and a few shading groups);
- string properties (UV map, attribute and colour-layer names): they name data of the source
  file's meshes; a generated graph reads the object's active layers;
- image textures: a generated graph never names an image file. An Image Texture node is left out
  and the socket it drove keeps its own value. The pixels are not in the datasets (images are
  placeholders, never opened), so a colour put in their place would be invented, and a
  procedural texture in their place would teach the model patterns no artist made. The
  material's name and object still say "wood": the model learns the colour of wood from the
  untextured materials that have it.
- legacy materials (no node tree) become the Principled BSDF that their colour, metallic and
  roughness describe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SPEC_PATH = Path(__file__).with_name("material_nodes.json")
OUTPUT_TYPE = "ShaderNodeOutputMaterial"
GROUP_TYPE = "ShaderNodeGroup"
RAMP_TYPE = "ShaderNodeValToRGB"
RAMP_INTERPOLATIONS = ("EASE", "CARDINAL", "LINEAR", "B_SPLINE", "CONSTANT")
# Node types whose values live on their outputs (a Value node's number, an RGB node's colour).
VALUE_ON_OUTPUT = frozenset({"ShaderNodeValue", "ShaderNodeRGB"})
SKIPPED_PROPERTIES = frozenset({"is_active_output"})
MAX_RAMP_STOPS = 8
ROOT_LINK_SOCKETS = ("Surface", "Volume")

PAD, BOS, EOS, END, STOP = 0, 1, 2, 3, 4


def _float_grid() -> np.ndarray:
    positive = np.concatenate(
        [
            np.linspace(0, 1, 51),
            np.linspace(1.05, 2, 20),
            np.linspace(2.25, 10, 32),
            np.linspace(15, 100, 18),
            np.linspace(200, 1000, 9),
        ]
    )
    return np.round(np.concatenate([-positive[:0:-1], positive]), 6)


FLOAT_GRID = _float_grid()
L_GRID = np.round(np.linspace(0.0, 1.0, 51), 6)
AB_GRID = np.round(np.linspace(-0.32, 0.32, 33), 6)


def _gamut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (L, a, b) grid points whose colour lies in linear RGB [0, 1]: Blender clamps a socket
    colour into that range, so only these survive a trip through Blender. Points that the
    clipping of rounding noise would move to another point are left out, so the grid is
    idempotent. (bins, their OKLab values, valid[L, a, b])."""
    grid = np.stack(np.meshgrid(L_GRID, AB_GRID, AB_GRID, indexing="ij"), -1)
    rgb = oklab_to_linear(grid)
    valid = ((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all(-1)  # white (L = 1) rounds a hair above 1
    for _ in range(3):
        bins, lab = np.argwhere(valid), grid[valid]
        linear = oklab_to_linear(lab)
        clipped = np.flatnonzero(((linear < 0) | (linear > 1)).any(-1))  # only these can move
        again = linear_to_oklab(np.clip(linear[clipped], 0.0, 1.0))
        moved = clipped[((again[:, None] - lab[None]) ** 2).sum(-1).argmin(1) != clipped]
        if not len(moved):
            break
        valid[tuple(bins[moved].T)] = False
    return np.argwhere(valid), grid[valid], valid


class MaterialTokenError(ValueError):
    """Tokens the grammar refuses, or a material that has no graph at the grid."""


# ---- colour: linear sRGB <-> OKLab (Björn Ottosson's matrices) -------------------------------

_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_M1_INV, _M2_INV = np.linalg.inv(_M1), np.linalg.inv(_M2)


def linear_to_oklab(rgb) -> np.ndarray:
    lms = np.cbrt(np.asarray(rgb, dtype=np.float64)[..., :3] @ _M1.T)
    return lms @ _M2.T


def oklab_to_linear(lab) -> np.ndarray:
    return (np.asarray(lab, dtype=np.float64) @ _M2_INV.T) ** 3 @ _M1_INV.T


GAMUT_BINS, GAMUT_LAB, IN_GAMUT = _gamut()


def _nearest(grid: np.ndarray, x: float) -> int:
    i = int(np.clip(np.searchsorted(grid, x), 1, len(grid) - 1))
    return i - 1 if abs(x - grid[i - 1]) <= abs(grid[i] - x) else i


def _scalar(value: Any) -> float:
    if isinstance(value, list | tuple):
        return float(np.mean([float(v) for v in value[:3]])) if value else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def quantise(value: Any, socket_type: str, size: int) -> tuple[int, ...]:
    """Grid bins of a socket value (a scalar becomes a grey or a uniform vector, a colour its mean)."""
    if socket_type == "RGBA":
        rgb = (
            [_scalar(value)] * 3
            if not isinstance(value, list | tuple)
            else list(value[:3]) + [0.0] * (3 - len(value[:3]))
        )
        lab = linear_to_oklab(np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0))
        nearest = int(np.argmin(((GAMUT_LAB - lab) ** 2).sum(1)))
        return tuple(int(b) for b in GAMUT_BINS[nearest])
    if size == 1:
        return (_nearest(FLOAT_GRID, _scalar(value)),)
    values = list(value) if isinstance(value, list | tuple) else [_scalar(value)] * size
    values = (values + [0.0] * size)[:size]
    return tuple(_nearest(FLOAT_GRID, float(v) if isinstance(v, int | float) else 0.0) for v in values)


def dequantise(bins: tuple[int, ...], socket_type: str) -> Any:
    if socket_type == "RGBA":
        rgb = np.clip(oklab_to_linear([L_GRID[bins[0]], AB_GRID[bins[1]], AB_GRID[bins[2]]]), 0.0, 1.0)
        return [round(float(c), 6) for c in rgb] + [1.0]
    values = [float(FLOAT_GRID[b]) for b in bins]
    if socket_type == "INT":
        return round(values[0])
    if socket_type == "BOOLEAN":
        return values[0] >= 0.5
    return values[0] if len(values) == 1 else values


# ---- the node table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Socket:
    identifier: str
    type: str
    size: int  # value tokens (RGBA: 3 OKLab tokens; VECTOR: its components; SHADER: 0)
    default: tuple[int, ...]  # bins of Blender's default
    linkable: bool = True


@dataclass(frozen=True)
class NodeSpec:
    key: str  # vocabulary name: bl_idname, or "bl_idname:variant" (ShaderNodeMix:RGBA)
    type: str
    variant: dict[str, str]
    inputs: tuple[Socket, ...]
    outputs: tuple[tuple[str, str], ...]  # (identifier, socket type) that links may leave from
    properties: tuple[dict, ...]  # {"name", "kind", "default", "items"}
    ramp: tuple | None  # default stops (position bin, L, a, b) of a colour ramp
    availability_props: tuple[str, ...]  # the enum properties that switch sockets on and off
    enabled: dict[str, tuple[frozenset[str], frozenset[str]]]  # "item|item" -> (inputs, outputs)

    def input_index(self, identifier: str) -> int | None:
        return next((i for i, s in enumerate(self.inputs) if s.identifier == identifier), None)

    def sockets_for(self, props: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        """The inputs and outputs Blender enables under these property values (defaults elsewhere)."""
        defaults = {p["name"]: p["default"] for p in self.properties}
        return self.enabled["|".join(str(props.get(n, defaults[n])) for n in self.availability_props)]


def _socket(identifier: str, socket_type: str, default: Any, linkable: bool = True) -> Socket:
    size = (
        0
        if socket_type == "SHADER"
        else 3
        if socket_type == "RGBA"
        else len(default)
        if isinstance(default, list)
        else 1
    )
    bins = quantise(default, socket_type, size) if size else ()
    return Socket(identifier, socket_type, size, bins, linkable)


@cache
def node_specs() -> dict[str, NodeSpec]:
    table = json.loads(SPEC_PATH.read_text())
    specs = {}
    for key, entry in table["nodes"].items():
        inputs = tuple(_socket(*s) for s in entry["inputs"])
        if entry["type"] in VALUE_ON_OUTPUT:
            inputs += tuple(_socket(i, t, d, linkable=False) for i, t, d in entry["outputs"])
        properties = tuple(p for p in entry["properties"] if p["name"] not in SKIPPED_PROPERTIES)
        if entry["type"] == RAMP_TYPE:
            properties += (
                {
                    "name": "ramp_interpolation",
                    "kind": "enum",
                    "default": "LINEAR",
                    "items": list(RAMP_INTERPOLATIONS),
                },
            )
        ramp = None
        if "ramp" in entry:
            ramp = tuple((_nearest(FLOAT_GRID, p), *quantise(c, "RGBA", 3)) for p, c in entry["ramp"])
        own_values = frozenset(s.identifier for s in inputs if not s.linkable)  # a Value node's number
        specs[key] = NodeSpec(
            key,
            entry["type"],
            entry["variant"],
            inputs,
            tuple((i, t) for i, t, _ in entry["outputs"]),
            properties,
            ramp,
            tuple(entry["availability"]["props"]),
            {
                combo: (frozenset(ins) | own_values, frozenset(outs))
                for combo, (ins, outs) in entry["availability"]["enabled"].items()
            },
        )
    return specs


def compatible(out_type: str, in_type: str) -> bool:
    """Shader to shader; colours, values and vectors among themselves (Blender converts them)."""
    return (out_type == "SHADER") == (in_type == "SHADER")


# ---- the graph at the grid --------------------------------------------------------------------


@dataclass
class GraphNode:
    key: str
    props: dict[str, Any] = field(default_factory=dict)  # non-default enum/bool properties
    values: dict[str, tuple[int, ...]] = field(default_factory=dict)  # unlinked inputs off the default
    links: dict[str, tuple[int, str]] = field(default_factory=dict)  # input -> (node index, output)
    ramp: tuple | None = None  # colour-ramp stops (position bin, L, a, b), when not the default


Graph = list[GraphNode]  # index 0 is the Material Output; nodes in walk (TYPE token) order


def _node_key(node: dict, specs: dict[str, NodeSpec]) -> str | None:
    """The vocabulary entry of a node: its type, with its variant (a Mix without a stored data
    type is Blender's default, FLOAT, the first)."""
    properties = node.get("properties") or {}
    for key, spec in specs.items():
        if spec.type == node.get("type") and all(properties.get(p, v) == v for p, v in spec.variant.items()):
            return key
    return None


def _flatten(tree: dict, groups: dict[str, dict], prefix: str = "", depth: int = 0):
    """(nodes by name, links) of a tree with its group nodes replaced by their insides and its
    reroutes bypassed; an unlinked group input's value moves onto the sockets it fed."""
    nodes = {prefix + n["name"]: dict(n, name=prefix + n["name"]) for n in tree.get("nodes", [])}
    links = [
        (prefix + ln["from_node"], ln["from_socket"], prefix + ln["to_node"], ln["to_socket"])
        for ln in tree.get("links", [])
        if not ln.get("muted")
    ]
    for name, node in list(nodes.items()):
        group = groups.get(node.get("node_tree") or "") if node["type"] == GROUP_TYPE else None
        if group is None or depth > 8:
            continue
        inner_nodes, inner_links = _flatten(group, groups, f"{name}/", depth + 1)
        ins = {n for n, d in inner_nodes.items() if d["type"] == "NodeGroupInput"}
        outs = [n for n, d in inner_nodes.items() if d["type"] == "NodeGroupOutput"]
        out_node = next(
            (n for n in outs if (inner_nodes[n].get("properties") or {}).get("is_active_output", True)), None
        )
        sources = {ts: (fn, fs) for fn, fs, tn, ts in links if tn == name}
        given = {s["identifier"]: s.get("default") for s in node.get("inputs", [])}
        for fn, fs, tn, ts in inner_links:
            if fn in ins and tn not in ins and fs in given and fs not in sources:
                target = inner_nodes.get(tn)
                if target is not None:
                    target["inputs"] = [
                        dict(s, default=given[fs]) if s["identifier"] == ts else s
                        for s in target.get("inputs", [])
                    ]
        results = {ts: (fn, fs) for fn, fs, tn, ts in inner_links if tn == out_node}
        rewired = []
        for fn, fs, tn, ts in inner_links:
            if tn in ins or tn in outs:
                continue
            if fn in ins:
                if fs in sources:
                    rewired.append((*sources[fs], tn, ts))
                continue
            rewired.append((fn, fs, tn, ts))
        for fn, fs, tn, ts in links:
            if fn == name:
                if fs in results and results[fs][0] not in ins:
                    rewired.append((*results[fs], tn, ts))
            elif tn != name:
                rewired.append((fn, fs, tn, ts))
        del nodes[name]
        nodes.update({n: d for n, d in inner_nodes.items() if n not in ins and n not in outs})
        links = rewired
    reroutes = {n for n, d in nodes.items() if d["type"] == "NodeReroute"}
    for _ in range(len(reroutes)):
        into = {tn: (fn, fs) for fn, fs, tn, _ in links if tn in reroutes}
        links = [
            (*into[fn], tn, ts) if fn in reroutes and fn in into else (fn, fs, tn, ts)
            for fn, fs, tn, ts in links
            if not (fn in reroutes and fn not in into)
        ]
    return {n: d for n, d in nodes.items() if n not in reroutes}, [
        ln for ln in links if ln[0] not in reroutes
    ]


def _node_values(
    node: dict, spec: NodeSpec, linked: set[str], enabled: frozenset[str] | None = None
) -> dict[str, tuple[int, ...]]:
    given = {s["identifier"]: s.get("default") for s in node.get("inputs", [])}
    if spec.type in VALUE_ON_OUTPUT:
        given.update({s["identifier"]: s.get("default") for s in node.get("outputs", [])})
    values = {}
    for socket in spec.inputs:
        if socket.size == 0 or socket.identifier in linked or given.get(socket.identifier) is None:
            continue
        if enabled is not None and socket.identifier not in enabled:  # hidden by a property: no effect
            continue
        bins = quantise(given[socket.identifier], socket.type, socket.size)
        if bins != socket.default:
            values[socket.identifier] = bins
    return values


def _node_props(node: dict, spec: NodeSpec) -> tuple[dict[str, Any], tuple | None]:
    given = dict(node.get("properties") or {})
    ramp = given.get("color_ramp") if spec.ramp is not None else None
    if isinstance(ramp, dict):
        given["ramp_interpolation"] = ramp.get("interpolation")
    props = {
        p["name"]: given[p["name"]]
        for p in spec.properties
        if given.get(p["name"]) in p["items"] and given[p["name"]] != p["default"]
    }
    stops = None
    if isinstance(ramp, dict) and ramp.get("elements"):
        stops = tuple(
            sorted(
                (_nearest(FLOAT_GRID, float(e.get("position", 0.0))), *quantise(e.get("color"), "RGBA", 3))
                for e in ramp["elements"][:MAX_RAMP_STOPS]
            )
        )
        if stops == spec.ramp:
            stops = None
    return props, stops


def pbr_graph(pbr: dict) -> Graph:
    """The Principled BSDF a legacy material's colour, metallic and roughness describe."""
    specs = node_specs()
    principled = specs["ShaderNodeBsdfPrincipled"]
    node = {
        "inputs": [
            {"identifier": "Base Color", "default": pbr.get("base_color", [0.8, 0.8, 0.8, 1.0])},
            {"identifier": "Metallic", "default": pbr.get("metallic", 0.0)},
            {"identifier": "Roughness", "default": pbr.get("roughness", 0.5)},
            {"identifier": "Alpha", "default": pbr.get("alpha", 1.0)},
        ]
    }
    return [
        GraphNode(OUTPUT_TYPE, links={"Surface": (1, "BSDF")}),
        GraphNode(principled.key, values=_node_values(node, principled, set())),
    ]


def canonical_graph(material: dict, node_groups: list[dict] | None = None) -> Graph:
    """The material's graph at the grid (see the module docstring for what it leaves out)."""
    tree = material.get("node_tree")
    if not tree:
        return pbr_graph(material.get("pbr") or {})
    specs = node_specs()
    nodes, links = _flatten(tree, {g["name"]: g for g in node_groups or []})
    keys = {  # nodes of the vocabulary, muted ones left out
        name: key
        for name, node in nodes.items()
        if (key := _node_key(node, specs)) is not None and not (node.get("properties") or {}).get("mute")
    }
    outputs = [n for n, k in keys.items() if k == OUTPUT_TYPE]
    active = [n for n in outputs if (nodes[n].get("properties") or {}).get("is_active_output", True)]
    root = (active or outputs or [None])[0]
    props = {n: _node_props(nodes[n], specs[k]) for n, k in keys.items()}
    enabled = {n: specs[keys[n]].sockets_for(p) for n, (p, _) in props.items()}
    incoming: dict[str, dict[str, tuple[str, str]]] = {}
    for fn, fs, tn, ts in links:
        if fn not in keys or tn not in keys:
            continue
        out_type = dict(specs[keys[fn]].outputs).get(fs)
        position = specs[keys[tn]].input_index(ts)
        if out_type is None or position is None or fs not in enabled[fn][1] or ts not in enabled[tn][0]:
            continue
        socket = specs[keys[tn]].inputs[position]
        if socket.linkable and compatible(out_type, socket.type):
            incoming.setdefault(tn, {})[ts] = (fn, fs)
    if root is None or not any(s in incoming.get(root, {}) for s in ROOT_LINK_SOCKETS):
        return pbr_graph(material.get("pbr") or {})
    graph: Graph = []
    index: dict[str, int] = {}
    closed: set[str] = set()

    def visit(name: str) -> int:
        spec = specs[keys[name]]
        index[name] = len(graph)
        node = GraphNode(spec.key, props=props[name][0], ramp=props[name][1])
        graph.append(node)
        sources = incoming.get(name, {})
        for socket in spec.inputs:
            source = sources.get(socket.identifier)
            if source is None:
                continue
            from_name, from_socket = source
            if from_name not in index:
                visit(from_name)
            elif from_name not in closed:  # a cycle: Blender would refuse the link too
                continue
            node.links[socket.identifier] = (index[from_name], from_socket)
        node.values = _node_values(nodes[name], spec, set(node.links), enabled[name][0])
        closed.add(name)
        return index[name]

    visit(root)
    if not any(s in graph[0].links for s in ROOT_LINK_SOCKETS):
        return pbr_graph(material.get("pbr") or {})
    return graph


# ---- vocabulary -------------------------------------------------------------------------------


class Vocabulary:
    """Token ids: specials, node types, properties, input and output sockets, references, bins."""

    def __init__(self, max_nodes: int = 48):
        specs = node_specs()
        self.max_nodes = max_nodes
        names = ["<pad>", "<bos>", "<eos>", "<end>", "<stop>"]
        self.node = {k: len(names) + i for i, k in enumerate(specs)}
        names += [f"node:{k}" for k in specs]
        self.prop: dict[tuple[str, str, Any], int] = {}
        for spec in specs.values():
            for p in spec.properties:
                for item in p["items"]:
                    if (spec.type, p["name"], item) not in self.prop:
                        self.prop[(spec.type, p["name"], item)] = len(names)
                        names.append(f"prop:{spec.type}.{p['name']}={item}")
        inputs = sorted({s.identifier for spec in specs.values() for s in spec.inputs})
        outputs = sorted({o for spec in specs.values() for o, _ in spec.outputs})
        self.input = {s: len(names) + i for i, s in enumerate(inputs)}
        names += [f"in:{s}" for s in inputs]
        self.output = {s: len(names) + i for i, s in enumerate(outputs)}
        names += [f"out:{s}" for s in outputs]
        self.ref = len(names)
        names += [f"ref:{k}" for k in range(max_nodes)]
        self.float = len(names)
        names += [f"f:{v:g}" for v in FLOAT_GRID]
        self.l_bin = len(names)
        names += [f"L:{v:g}" for v in L_GRID]
        self.a_bin = len(names)
        names += [f"a:{v:g}" for v in AB_GRID]
        self.b_bin = len(names)
        names += [f"b:{v:g}" for v in AB_GRID]
        self.names = names
        self.size = len(names)
        self.node_of = {v: k for k, v in self.node.items()}
        self.prop_of = {v: k for k, v in self.prop.items()}
        self.input_of = {v: k for k, v in self.input.items()}
        self.output_of = {v: k for k, v in self.output.items()}

    def value_tokens(self, bins: tuple[int, ...], socket_type: str) -> list[int]:
        if socket_type == "RGBA":
            return [self.l_bin + bins[0], self.a_bin + bins[1], self.b_bin + bins[2]]
        return [self.float + b for b in bins]

    def bin_range(self, kind: str) -> tuple[int, int]:
        return {
            "f": (self.float, self.float + len(FLOAT_GRID)),
            "L": (self.l_bin, self.l_bin + len(L_GRID)),
            "a": (self.a_bin, self.a_bin + len(AB_GRID)),
            "b": (self.b_bin, self.b_bin + len(AB_GRID)),
        }[kind]


@cache
def vocabulary(max_nodes: int = 48) -> Vocabulary:
    return Vocabulary(max_nodes)


def _value_kinds(socket: Socket) -> list[str]:
    return ["L", "a", "b"] if socket.type == "RGBA" else ["f"] * socket.size


def encode(graph: Graph, vocab: Vocabulary | None = None) -> list[int]:
    """BOS ... EOS for a graph in walk order (canonical_graph's or a decoded one)."""
    vocab = vocab or vocabulary()
    specs = node_specs()
    tokens = [BOS, vocab.node[graph[0].key]]
    written: set[int] = set()

    def write(i: int, out: str | None) -> None:
        node, spec = graph[i], specs[graph[i].key]
        written.add(i)
        for p in spec.properties:
            if p["name"] in node.props:
                tokens.append(vocab.prop[(spec.type, p["name"], node.props[p["name"]])])
        if out is not None:
            tokens.append(vocab.output[out])
        for stop in node.ramp or ():
            tokens.extend([STOP, vocab.float + stop[0], *vocab.value_tokens(stop[1:], "RGBA")])
        for socket in spec.inputs:
            if socket.identifier in node.links:
                child, child_out = node.links[socket.identifier]
                tokens.append(vocab.input[socket.identifier])
                if child in written:
                    tokens.extend([vocab.ref + child, vocab.output[child_out]])
                else:
                    if child != len(written):
                        raise MaterialTokenError(f"node {child} is not the next in walk order")
                    tokens.append(vocab.node[graph[child].key])
                    write(child, child_out)
            elif socket.identifier in node.values:
                tokens.append(vocab.input[socket.identifier])
                tokens.extend(vocab.value_tokens(node.values[socket.identifier], socket.type))
        tokens.append(END)

    write(0, None)
    tokens.append(EOS)
    return tokens


# ---- the grammar ------------------------------------------------------------------------------


@dataclass
class _Frame:
    node: int
    spec: NodeSpec
    link: Socket | None = None  # for a new node: the parent's input it feeds, until OUT names the output
    next_prop: int = 0  # properties before this index are passed
    next_input: int = 0  # inputs before this index are passed
    stops: int = 0
    inputs: frozenset[str] = frozenset()  # enabled, once the properties are settled
    settled: bool = False


class MaterialGrammar:
    """Which tokens may come next; feeding tokens builds the graph. Every allowed token keeps a
    path to EOS within ``max_tokens`` (BOS and EOS included) and ``max_nodes``.

    A node's properties come right after its TYPE; they settle which sockets Blender enables
    (Math's operation, Mix's factor mode), so its output (OUT, for a new node) and its inputs
    are chosen among the enabled ones only."""

    def __init__(self, max_tokens: int = 256, max_nodes: int = 48):
        self.vocab = vocabulary()  # one vocabulary; max_nodes only bounds this sample
        self.specs = node_specs()
        self.max_tokens, self.max_nodes = max_tokens, min(max_nodes, self.vocab.max_nodes)
        self.tokens = [BOS]
        self.graph: Graph = []
        self.outputs: dict[int, frozenset[str]] = {}  # closed or settled node -> its enabled outputs
        self.frames: list[_Frame] = []
        self.closed: set[int] = set()
        self.done = False
        # what the next tokens complete: "root", None (a node body), "entry" (after IN),
        # "out" (after REF), "values" or "stop" (bins), "eos"
        self.pending: str | None = "root"
        self.socket: Socket | None = None  # the input of the entry being written
        self.ref: int | None = None
        self.kinds: list[str] = []
        self.bins: list[int] = []
        self._masks: dict[Any, np.ndarray] = {}

    # -- costs --
    def _root_linked(self) -> bool:
        return bool(self.graph) and any(s in self.graph[0].links for s in ROOT_LINK_SOCKETS)

    def _closing(self) -> int:
        """Fewest tokens that end the sequence from a node body: OUT of a new node still without
        one, ENDs, the root's link (IN TYPE OUT END), EOS."""
        # The root's link is written, or under way: an entry of the root's Surface or Volume,
        # or a new node opened for it.
        linking = (
            self.pending in ("entry", "out")
            and len(self.frames) == 1
            and self.socket is not None
            and self.socket.identifier in ROOT_LINK_SOCKETS
        ) or (
            len(self.frames) > 1
            and self.frames[1].link is not None
            and self.frames[1].link.identifier in ROOT_LINK_SOCKETS
        )
        root_needs = 0 if self._root_linked() or linking else 4
        unsettled = sum(1 for f in self.frames if f.link is not None and not f.settled)
        return len(self.frames) + unsettled + root_needs + 1

    def _fits(self, extra: int) -> bool:
        return len(self.tokens) + extra <= self.max_tokens

    def _types_with_output(self, socket_type: str) -> np.ndarray:
        key = ("types", socket_type == "SHADER")
        if key not in self._masks:
            mask = np.zeros(self.vocab.size, dtype=bool)
            for k, spec in self.specs.items():
                if k != OUTPUT_TYPE and any(
                    compatible(t, socket_type) and o in spec.sockets_for({})[1] for o, t in spec.outputs
                ):
                    mask[self.vocab.node[k]] = True
            self._masks[key] = mask
        return self._masks[key]

    def _compatible_outputs(self, spec: NodeSpec, enabled: frozenset[str], socket_type: str) -> list[str]:
        return [o for o, t in spec.outputs if o in enabled and compatible(t, socket_type)]

    def _refs(self, socket_type: str) -> list[int]:
        return [
            self.vocab.ref + i
            for i in self.closed
            if self._compatible_outputs(self.specs[self.graph[i].key], self.outputs[i], socket_type)
        ]

    def _entry_cost(self, socket: Socket) -> int | None:
        """Fewest tokens an entry for this input needs after its IN token (None: impossible)."""
        options = [socket.size] if socket.size else []
        if socket.linkable and len(self.graph) < self.max_nodes:
            options.append(3)  # TYPE OUT END
        if socket.linkable and self._refs(socket.type):
            options.append(2)  # REF OUT
        return min(options) if options else None

    # -- masks --
    def allowed_mask(self) -> np.ndarray:
        v, mask = self.vocab, np.zeros(self.vocab.size, dtype=bool)
        if self.done:
            return mask
        if self.pending == "root":
            mask[v.node[OUTPUT_TYPE]] = True
            return mask
        if self.pending == "eos":
            mask[EOS] = True
            return mask
        if self.pending in ("values", "stop"):
            kind = self.kinds[len(self.bins)]
            lo, hi = v.bin_range(kind)
            if kind == "a":  # a colour stays in gamut: an a that some b completes
                mask[lo:hi] = IN_GAMUT[self.bins[-1]].any(1)
            elif kind == "b":
                mask[lo:hi] = IN_GAMUT[self.bins[-2], self.bins[-1]]
            else:
                mask[lo:hi] = True
            return mask
        if self.pending == "out":
            assert self.socket is not None and self.ref is not None
            spec = self.specs[self.graph[self.ref].key]
            for o in self._compatible_outputs(spec, self.outputs[self.ref], self.socket.type):
                mask[v.output[o]] = True
            return mask
        closing = self._closing()
        if self.pending == "entry":
            socket = self.socket
            assert socket is not None
            # The entry is not in ``closing``: IN reserved its cheapest completion.
            if socket.size and self._fits(socket.size + closing):
                mask[slice(*v.bin_range(_value_kinds(socket)[0]))] = True
            if socket.linkable and len(self.graph) < self.max_nodes and self._fits(3 + closing):
                mask |= self._types_with_output(socket.type)
            if socket.linkable and self._fits(2 + closing):
                for t in self._refs(socket.type):
                    mask[t] = True
            return mask
        frame = self.frames[-1]
        spec, node = frame.spec, self.graph[frame.node]
        if not frame.settled:
            if self._fits(1 + closing):
                for index, p in enumerate(spec.properties[frame.next_prop :], frame.next_prop):
                    for item in p["items"]:
                        if item != p["default"] and self._prop_keeps_an_output(frame, index, item):
                            mask[v.prop[(spec.type, p["name"], item)]] = True
            if frame.link is not None:  # a new node: its output, once its properties are chosen
                for o in self._compatible_outputs(spec, spec.sockets_for(node.props)[1], frame.link.type):
                    mask[v.output[o]] = True
                return mask
            inputs = spec.sockets_for(node.props)[0]
        else:
            inputs = frame.inputs
        is_root = frame.node == 0
        root_linked = self._root_linked()
        if spec.ramp is not None and frame.next_input == 0 and frame.stops < MAX_RAMP_STOPS:
            mask[STOP] = self._fits(5 + closing)
        for socket in spec.inputs[frame.next_input :]:
            if socket.identifier not in inputs:
                continue
            if is_root and not root_linked and socket.identifier not in ROOT_LINK_SOCKETS:
                continue
            cost = self._entry_cost(socket)
            if cost is None:
                continue
            if is_root and not root_linked:  # this entry is the root's link: it replaces the reserve
                if self._fits(1 + cost + closing - 4):
                    mask[v.input[socket.identifier]] = True
            elif self._fits(1 + cost + closing):
                mask[v.input[socket.identifier]] = True
        if not is_root or root_linked:
            mask[END] = True
        return mask

    def _prop_keeps_an_output(self, frame: _Frame, index: int, item: Any) -> bool:
        """A new node's property value leaves it an output for its link (always so for the root)."""
        if frame.link is None:
            return True
        props = {**self.graph[frame.node].props, frame.spec.properties[index]["name"]: item}
        outputs = frame.spec.sockets_for(props)[1]
        return bool(self._compatible_outputs(frame.spec, outputs, frame.link.type))

    # -- feeding --
    def feed(self, token: int, allowed: np.ndarray | None = None) -> None:
        """Appends a token; ``allowed`` is allowed_mask() of this state when the caller has it."""
        if not (self.allowed_mask() if allowed is None else allowed)[token]:
            name = self.vocab.names[token] if 0 <= token < self.vocab.size else token
            raise MaterialTokenError(f"token {name} not allowed here")
        self.tokens.append(token)
        v = self.vocab
        if self.pending == "root":
            self._open(OUTPUT_TYPE, None)
            self.pending = None
        elif self.pending == "eos":
            self.done, self.pending = True, None
        elif self.pending in ("values", "stop"):
            self._feed_bin(token)
        elif self.pending == "entry":
            assert self.socket is not None
            if token in v.node_of:
                self._open(v.node_of[token], self.socket)
                self.pending = None
            elif v.ref <= token < v.ref + v.max_nodes:
                self.ref, self.pending = token - v.ref, "out"
            else:
                self.kinds, self.bins, self.pending = _value_kinds(self.socket), [], "values"
                self._feed_bin(token)
        elif self.pending == "out":
            assert self.socket is not None and self.ref is not None
            self.graph[self.frames[-1].node].links[self.socket.identifier] = (self.ref, v.output_of[token])
            self.pending, self.ref = None, None
        elif token in v.prop_of:
            frame = self.frames[-1]
            _, name, item = v.prop_of[token]
            self.graph[frame.node].props[name] = item
            frame.next_prop = 1 + next(i for i, p in enumerate(frame.spec.properties) if p["name"] == name)
        elif token in v.output_of:  # a new node's output: it now feeds its parent's input
            frame = self.frames[-1]
            assert frame.link is not None
            self._settle(frame)
            parent = self.frames[-2]
            self.graph[parent.node].links[frame.link.identifier] = (frame.node, v.output_of[token])
        else:
            frame = self.frames[-1]
            self._settle(frame)
            if token == END:
                self.frames.pop()
                self.closed.add(frame.node)
                if frame.node == 0:
                    self.pending = "eos"
            elif token == STOP:
                frame.stops += 1
                self.kinds, self.bins, self.pending = ["f", "L", "a", "b"], [], "stop"
            else:
                index = frame.spec.input_index(v.input_of[token])
                assert index is not None
                frame.next_input = index + 1
                self.socket = frame.spec.inputs[index]
                self.pending = "entry"

    def _settle(self, frame: _Frame) -> None:
        if not frame.settled:
            frame.inputs, self.outputs[frame.node] = frame.spec.sockets_for(self.graph[frame.node].props)
            frame.settled = True

    def _feed_bin(self, token: int) -> None:
        lo, _ = self.vocab.bin_range(self.kinds[len(self.bins)])
        self.bins.append(token - lo)
        if len(self.bins) < len(self.kinds):
            return
        node = self.graph[self.frames[-1].node]
        if self.pending == "stop":
            node.ramp = tuple(sorted((node.ramp or ()) + (tuple(self.bins),)))
        else:
            assert self.socket is not None
            if tuple(self.bins) != self.socket.default:
                node.values[self.socket.identifier] = tuple(self.bins)
        self.pending = None

    def _open(self, key: str, link: Socket | None) -> None:
        self.graph.append(GraphNode(key))
        self.frames.append(_Frame(len(self.graph) - 1, self.specs[key], link))


def decode(tokens: list[int], max_tokens: int = 10_000, max_nodes: int = 48) -> Graph:
    """The graph of a complete token sequence (BOS ... EOS); raises MaterialTokenError otherwise."""
    if not tokens or tokens[0] != BOS:
        raise MaterialTokenError("a material sequence starts with BOS")
    grammar = MaterialGrammar(max_tokens, max_nodes)
    for token in tokens[1:]:
        grammar.feed(token)
    if not grammar.done:
        raise MaterialTokenError("the sequence ends before EOS")
    return grammar.graph


# ---- graph -> scene-format material ------------------------------------------------------------


def _short(key: str) -> str:
    return key.split(":")[0].removeprefix("ShaderNode")


def graph_to_material(graph: Graph, name: str = "Material") -> dict:
    """A scene-format material (shared.scene.models.Material as JSON): the node tree, laid out
    right to left from the output by depth, and its PBR summary."""
    specs = node_specs()
    depth = [0] * len(graph)
    for i, node in enumerate(graph):
        for child, _ in node.links.values():
            depth[child] = max(depth[child], depth[i] + 1)
    rows: dict[int, int] = {}
    names = ["Material Output"] + [f"{_short(n.key)}.{i:03d}" for i, n in enumerate(graph)][1:]
    nodes, links = [], []
    for i, node in enumerate(graph):
        spec = specs[node.key]
        row = rows[depth[i]] = rows.get(depth[i], -1) + 1
        properties: dict[str, Any] = {
            **spec.variant,
            **{k: v for k, v in node.props.items() if k != "ramp_interpolation"},
        }
        if spec.ramp is not None:
            stops = node.ramp or spec.ramp
            properties["color_ramp"] = {
                "interpolation": node.props.get("ramp_interpolation", "LINEAR"),
                "elements": [
                    {"position": float(FLOAT_GRID[s[0]]), "color": dequantise(s[1:], "RGBA")} for s in stops
                ],
            }
        sockets = {
            s.identifier: {
                "identifier": s.identifier,
                "type": s.type,
                "default": dequantise(node.values[s.identifier], s.type),
            }
            for s in spec.inputs
            if s.identifier in node.values
        }
        on_outputs = spec.type in VALUE_ON_OUTPUT
        nodes.append(
            {
                "name": names[i],
                "type": spec.type,
                "location": [-300.0 * depth[i], -220.0 * row],
                "properties": properties,
                "inputs": [] if on_outputs else list(sockets.values()),
                "outputs": list(sockets.values()) if on_outputs else [],
            }
        )
        for socket, (child, out) in node.links.items():
            links.append(
                {"from_node": names[child], "from_socket": out, "to_node": names[i], "to_socket": socket}
            )
    summary = summarise(graph)
    return {
        "name": name,
        "source": "generated",
        "node_tree": {"name": name, "type": "ShaderNodeTree", "nodes": nodes, "links": links},
        "pbr": summary,
        "diffuse_color": summary["base_color"],
        "blend_method": "BLEND" if summary["alpha"] < 0.99 or summary["transmission"] > 0.5 else "OPAQUE",
    }


# ---- what a graph looks like, for scoring -------------------------------------------------------

_COLOUR_INPUTS = ("Base Color", "Color")


def _value(graph: Graph, i: int, identifier: str, depth: int = 0) -> Any:
    """The value an input holds: its own, or a constant from what feeds it (an RGB or Value node,
    a Mix of constants, a colour ramp's first stop); None when it varies over the surface."""
    node, spec = graph[i], node_specs()[graph[i].key]
    if identifier in node.links:
        child, out = node.links[identifier]
        source = graph[child]
        kind = node_specs()[source.key].type
        if depth > 6:
            return None
        if kind in VALUE_ON_OUTPUT:
            return _value(graph, child, out, depth + 1)
        if kind == RAMP_TYPE:
            stops = source.ramp or node_specs()[source.key].ramp
            return dequantise(stops[0][1:], "RGBA") if stops else None
        if kind == "ShaderNodeMix":
            a = _value(
                graph,
                child,
                next(s.identifier for s in node_specs()[source.key].inputs if s.identifier.startswith("A_")),
                depth + 1,
            )
            b = _value(
                graph,
                child,
                next(s.identifier for s in node_specs()[source.key].inputs if s.identifier.startswith("B_")),
                depth + 1,
            )
            f = _value(graph, child, node_specs()[source.key].inputs[0].identifier, depth + 1)
            if a is None or b is None or f is None:
                return None
            f = _scalar(f)
            return (np.asarray(a, dtype=float) * (1 - f) + np.asarray(b, dtype=float) * f).tolist()
        return None
    socket = spec.inputs[spec.input_index(identifier)]  # type: ignore[index]
    return dequantise(node.values.get(identifier, socket.default), socket.type)


def summarise(graph: Graph) -> dict:
    """A PBR summary of a graph (the scene format's PBRSummary fields): the shaders that reach the
    output's Surface, mixed by their factors; a colour that varies over the surface counts as
    the default grey."""
    out: dict[str, Any] = {
        "base_color": np.array([0.8, 0.8, 0.8]),
        "metallic": 0.0,
        "roughness": 0.5,
        "alpha": 1.0,
        "transmission": 0.0,
        "emission_color": np.zeros(3),
        "emission_strength": 0.0,
    }
    if "Surface" not in graph[0].links:
        return _summary_json(out)
    acc: dict[str, Any] = {k: (np.zeros(3) if isinstance(v, np.ndarray) else 0.0) for k, v in out.items()}

    def num(i: int, identifier: str, fallback: float) -> float:
        v = (
            _value(graph, i, identifier)
            if node_specs()[graph[i].key].input_index(identifier) is not None
            else None
        )
        return fallback if v is None else _scalar(v)

    def colour(i: int, identifier: str) -> np.ndarray:
        v = (
            _value(graph, i, identifier)
            if node_specs()[graph[i].key].input_index(identifier) is not None
            else None
        )
        return (
            np.array([0.8, 0.8, 0.8])
            if v is None
            else np.asarray(v[:3] if isinstance(v, list) else [v] * 3, float)
        )

    def shade(i: int, weight: float, depth: int = 0) -> None:
        spec = node_specs()[graph[i].key]
        kind = spec.type
        if kind in ("ShaderNodeMixShader", "ShaderNodeAddShader") and depth < 8:
            f = 0.5 if kind == "ShaderNodeAddShader" else min(1.0, max(0.0, num(i, "Fac", 0.5)))
            shaders = [s.identifier for s in spec.inputs if s.type == "SHADER"]
            for socket, w in zip(shaders, (1 - f, f), strict=True):
                if socket in graph[i].links:  # an empty shader slot adds nothing: it is black
                    shade(graph[i].links[socket][0], weight * w, depth + 1)
            return
        colour_socket = next((s for s in _COLOUR_INPUTS if spec.input_index(s) is not None), None)
        entry = dict(out)
        if kind == "ShaderNodeEmission":
            entry["base_color"] = np.zeros(3)
            entry["emission_color"] = colour(i, "Color")
            entry["emission_strength"] = num(i, "Strength", 1.0)
        elif colour_socket is not None:
            entry["base_color"] = colour(i, colour_socket)
        if kind == "ShaderNodeBsdfPrincipled":
            entry.update(
                metallic=num(i, "Metallic", 0.0),
                roughness=num(i, "Roughness", 0.5),
                alpha=num(i, "Alpha", 1.0),
                transmission=num(i, "Transmission Weight", 0.0),
                emission_color=colour(i, "Emission Color")
                if "Emission Color" in graph[i].values or "Emission Color" in graph[i].links
                else np.ones(3),
                emission_strength=num(i, "Emission Strength", 0.0),
            )
        elif kind in ("ShaderNodeBsdfGlass", "ShaderNodeBsdfRefraction"):
            entry.update(transmission=1.0, roughness=num(i, "Roughness", 0.0))
        elif kind in ("ShaderNodeBsdfAnisotropic", "ShaderNodeBsdfMetallic"):
            entry.update(metallic=1.0, roughness=num(i, "Roughness", 0.5))
        elif kind == "ShaderNodeBsdfDiffuse":
            entry.update(roughness=max(0.5, num(i, "Roughness", 0.5)))
        elif kind == "ShaderNodeBsdfTransparent":
            entry.update(alpha=0.0)
        for k in acc:
            acc[k] = acc[k] + weight * entry[k]

    shade(graph[0].links["Surface"][0], 1.0)
    return _summary_json(acc)


def _summary_json(values: dict) -> dict:
    def rgba(c) -> list[float]:
        return [round(float(x), 6) for x in np.clip(c, 0, None)] + [1.0]

    return {
        "base_color": rgba(values["base_color"]),
        "metallic": round(float(np.clip(values["metallic"], 0, 1)), 6),
        "roughness": round(float(np.clip(values["roughness"], 0, 1)), 6),
        "alpha": round(float(np.clip(values["alpha"], 0, 1)), 6),
        "transmission": round(float(np.clip(values["transmission"], 0, 1)), 6),
        "emission_color": rgba(values["emission_color"]),
        "emission_strength": round(float(max(0.0, values["emission_strength"])), 6),
    }
