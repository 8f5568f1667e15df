"""Writes the material tokens' node table (shared/ml/material_nodes.json) from real Blender.

    python -m blender_worker.shader_node_spec shared/ml/material_nodes.json

For every node type of the closed vocabulary (the shader nodes met in the corpus's materials,
the Principled family, and the nodes a flattened glTF group holds) it records what Blender 5.0
itself says: input sockets (identifier, type, default), output sockets, the enum and boolean
properties with their items and defaults, and which socket types a link may join. The
tokenizer and its decoding grammar read only this table, so a sampled graph names nothing that
Blender does not have.

Sockets: a socket is listed when Blender enables it under some combination of the node's enum
properties (Math's third input under Multiply Add), and "availability" says under which; sockets
never enabled (a BSDF's hidden Weight) are left out. A node whose data type switches its sockets (Mix) gets one entry per data
type ("ShaderNodeMix:RGBA"), so the grammar knows its sockets from the type token alone.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import bpy

NODE_TYPES = (
    # the corpus's material graphs (groups flattened)
    "ShaderNodeOutputMaterial",
    "ShaderNodeBsdfPrincipled",
    "ShaderNodeBsdfDiffuse",
    "ShaderNodeBsdfAnisotropic",
    "ShaderNodeBsdfGlass",
    "ShaderNodeBsdfSheen",
    "ShaderNodeBsdfTransparent",
    "ShaderNodeEmission",
    "ShaderNodeMixShader",
    "ShaderNodeAddShader",
    "ShaderNodeVolumeAbsorption",
    "ShaderNodeMix",
    "ShaderNodeMath",
    "ShaderNodeVectorMath",
    "ShaderNodeSeparateColor",
    "ShaderNodeCombineColor",
    "ShaderNodeSeparateXYZ",
    "ShaderNodeCombineXYZ",
    "ShaderNodeRGBToBW",
    "ShaderNodeValToRGB",
    "ShaderNodeValue",
    "ShaderNodeRGB",
    "ShaderNodeVertexColor",
    "ShaderNodeAttribute",
    "ShaderNodeUVMap",
    "ShaderNodeTexCoord",
    "ShaderNodeMapping",
    "ShaderNodeNewGeometry",
    "ShaderNodeLightPath",
    "ShaderNodeTangent",
    "ShaderNodeNormalMap",
    "ShaderNodeAmbientOcclusion",
    "ShaderNodeTexChecker",
    "ShaderNodeTexGradient",
    # the Principled family and its simpler relatives
    "ShaderNodeVolumePrincipled",
    "ShaderNodeBsdfMetallic",
    "ShaderNodeBsdfTranslucent",
    "ShaderNodeBsdfRefraction",
    "ShaderNodeSubsurfaceScattering",
    "ShaderNodeTexNoise",
)
# A property whose value changes the node's sockets: one vocabulary entry per value.
VARIANT_PROPERTY = {"ShaderNodeMix": "data_type"}
SOCKET_TYPES = ("VALUE", "INT", "BOOLEAN", "RGBA", "VECTOR", "SHADER")


def _value(socket) -> object:
    value = socket.default_value
    return [float(v) for v in value] if hasattr(value, "__len__") else float(value)


def _properties(node) -> list[dict]:
    base = {p.identifier for p in bpy.types.ShaderNode.bl_rna.properties}
    out = []
    for prop in node.bl_rna.properties:
        if (
            prop.identifier in base
            or prop.is_readonly
            or prop.identifier == VARIANT_PROPERTY.get(node.bl_idname)
        ):
            continue
        if prop.type == "ENUM" and not prop.is_enum_flag:
            items = [item.identifier for item in prop.enum_items]
            out.append(
                {
                    "name": prop.identifier,
                    "kind": "enum",
                    "default": getattr(node, prop.identifier),
                    "items": items,
                }
            )
        elif prop.type == "BOOLEAN" and not prop.is_array:
            out.append(
                {
                    "name": prop.identifier,
                    "kind": "bool",
                    "default": bool(getattr(node, prop.identifier)),
                    "items": [False, True],
                }
            )
    return out


def _availability(node, properties: list[dict]) -> dict:
    """Which inputs and outputs Blender enables under each combination of the node's enum
    properties (a link into or out of a disabled socket is invalid): {"props": names,
    "enabled": {"item|item": [inputs, outputs]}}."""
    enums = [p for p in properties if p["kind"] == "enum"]
    enabled = {}
    for combo in itertools.product(*(p["items"] for p in enums)):
        for prop, item in zip(enums, combo, strict=True):
            setattr(node, prop["name"], item)
        enabled["|".join(combo)] = [
            [s.identifier for s in node.inputs if s.enabled],
            [s.identifier for s in node.outputs if s.enabled],
        ]
    for prop in enums:
        setattr(node, prop["name"], prop["default"])
    return {"props": [p["name"] for p in enums], "enabled": enabled}


def _entry(tree, node_type: str, variant: str | None) -> dict:
    node = tree.nodes.new(node_type)
    if variant is not None:
        setattr(node, VARIANT_PROPERTY[node_type], variant)
    properties = _properties(node)
    availability = _availability(node, properties)
    inputs = {i for ins, _ in availability["enabled"].values() for i in ins}
    outputs = {o for _, outs in availability["enabled"].values() for o in outs}
    entry = {
        "type": node_type,
        "variant": {VARIANT_PROPERTY[node_type]: variant} if variant else {},
        "inputs": [
            [s.identifier, s.type, _value(s) if s.type != "SHADER" else None]
            for s in node.inputs
            if s.identifier in inputs and s.type in SOCKET_TYPES
        ],
        "outputs": [
            [s.identifier, s.type, _value(s) if hasattr(s, "default_value") else None]
            for s in node.outputs
            if s.identifier in outputs and s.type in SOCKET_TYPES
        ],
        "properties": properties,
        "availability": availability,
    }
    if node_type == "ShaderNodeValToRGB":
        entry["ramp"] = [[e.position, list(e.color)] for e in node.color_ramp.elements]
    tree.nodes.remove(node)
    return entry


def _compatible(tree) -> dict[str, list[str]]:
    """For each output socket type, the input socket types Blender accepts a link into."""
    makers = {
        "VALUE": ("ShaderNodeValue", 0),
        "RGBA": ("ShaderNodeRGB", 0),
        "VECTOR": ("ShaderNodeCombineXYZ", 0),
        "SHADER": ("ShaderNodeEmission", 0),
    }
    takers = {
        "VALUE": ("ShaderNodeMath", 0),
        "RGBA": ("ShaderNodeRGBToBW", 0),
        "VECTOR": ("ShaderNodeSeparateXYZ", 0),
        "SHADER": ("ShaderNodeAddShader", 0),
        "INT": (
            "ShaderNodeAmbientOcclusion",
            2,
        ),  # no shader input is an INT in 5.0: guard kept for the table
        "BOOLEAN": ("ShaderNodeAmbientOcclusion", 2),
    }
    out: dict[str, list[str]] = {}
    for from_type, (from_node, i) in makers.items():
        out[from_type] = []
        for to_type, (to_node, j) in takers.items():
            a, b = tree.nodes.new(from_node), tree.nodes.new(to_node)
            if j < len(b.inputs) and b.inputs[j].type == to_type:
                link = tree.links.new(a.outputs[i], b.inputs[j])
                if link.is_valid:
                    out[from_type].append(to_type)
            tree.nodes.remove(a)
            tree.nodes.remove(b)
    return out


def build_spec() -> dict:
    material = bpy.data.materials.new("spec")
    tree = material.node_tree
    entries = {}
    for node_type in NODE_TYPES:
        variants = [None]
        if node_type in VARIANT_PROPERTY:
            probe = tree.nodes.new(node_type)
            prop = probe.bl_rna.properties[VARIANT_PROPERTY[node_type]]
            variants = [item.identifier for item in prop.enum_items]
            tree.nodes.remove(probe)
        for variant in variants:
            try:
                entries[f"{node_type}:{variant}" if variant else node_type] = _entry(tree, node_type, variant)
            except TypeError:  # an item of another tree type (Mix's ROTATION is geometry nodes only)
                continue
    compatible = _compatible(tree)
    bpy.data.materials.remove(material)
    return {"blender": bpy.app.version_string, "nodes": entries, "compatible": compatible}


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(build_spec(), indent=1, sort_keys=True) + "\n")
