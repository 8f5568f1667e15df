"""Read the scene Blender has loaded into a scene-format document (a plain dict).

Everything is read, nothing is evaluated as Python: drivers are stored as text, and the evaluated
depsgraph (used only for objects with modifiers or curve geometry) runs with Python
auto-execution off, so Blender evaluates only its own simple driver expressions.

Output is deterministic: objects, materials, node groups, actions and images are sorted by name;
nodes, sockets, links, modifiers and keyframes keep Blender's stored order. Large arrays stay
float32 numpy arrays so that orjson writes the shortest text that reads back to the same float32.
Mesh coordinates are in object space; transforms stay on the objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Quaternion

from blender_worker.precheck import RejectedInput
from shared.scene import SCHEMA_VERSION

# Blender's versioning wraps a pre-2.8 material that had no node tree in a frame with this label.
LEGACY_FRAME_LABEL = "Versioning: Use Nodes was removed"
MAX_DRIVER_EXPRESSION = 4096
MAX_NAME = 255
# Nested RNA structs (colour ramps, curve mappings) are followed this deep.
STRUCT_DEPTH = 3
# UI state and run-time information, not authored data.
SKIPPED_PROPS = frozenset(
    {"rna_type", "is_override_data", "execution_time", "persistent_uid", "node_warnings", "panels", "bakes"}
)
SKIPPED_PREFIXES = ("open_", "show_", "bl_", "is_")
# Derived or run-time state of particular structs: a bevel profile's sampled segments, the frame an
# image node showed when the file was saved. Blender recomputes them.
DERIVED_PROPS = frozenset({("CurveProfile", "segments"), ("ImageUser", "frame_current")})
# Properties stored as the record's own fields rather than in its params.
MODIFIER_FIELDS = frozenset({"name", "type", "show_viewport", "show_render"})
CONSTRAINT_FIELDS = frozenset({"name", "type", "mute", "influence", "active", "enabled"})
GEOMETRY_TYPES = frozenset({"CURVE", "SURFACE", "FONT", "META"})


@dataclass
class ReadLimits:
    max_vertices: int
    max_faces: int


def read_scene(
    limits: ReadLimits, provenance: dict[str, Any] | None = None, *, saved_by_blender: bool = True
) -> dict[str, Any]:
    """Return the scene-format document for the loaded file.

    ``saved_by_blender``: the file is a .blend, so bpy.data.version names the Blender that saved it
    (for imported formats it would only name this Blender).
    """
    provenance = dict(provenance or {})
    version = bpy.data.version
    if saved_by_blender and version and version[0] > 0:
        provenance.setdefault("blender_version", "{}.{}.{}".format(*version))
    return _Reader(limits).read(provenance)


def inventory() -> dict[str, int]:
    """What the loaded file holds, counted straight from bpy.data (to measure the reader's coverage)."""
    objects = list(bpy.context.scene.objects)
    materials = {id_name(s.material): s.material for o in objects for s in o.material_slots if s.material}
    owners = [o.animation_data for o in objects]
    owners += [
        o.data.shape_keys.animation_data for o in objects if o.type == "MESH" and o.data and o.data.shape_keys
    ]
    keyframes = sum(
        len(fc.keyframe_points)
        for action in bpy.data.actions
        for slot in action.slots
        for fc in _slot_fcurves(action, slot)
    )
    return {
        "objects": len(objects),
        "node_materials": sum(not is_legacy_material(m) for m in materials.values()),
        "modifiers": sum(len(o.modifiers) for o in objects),
        "keyframes": keyframes,
        "drivers": sum(len(a.drivers) for a in owners if a is not None),
    }


def id_name(block: bpy.types.ID) -> str:
    """Names are unique per datablock type within a file; linked blocks carry their library in name_full."""
    return block.name_full[:MAX_NAME] or "unnamed"


def is_legacy_material(material: bpy.types.Material) -> bool:
    """A material from before node materials, wrapped by Blender 5's versioning (or never given a tree)."""
    tree = material.node_tree
    if tree is None:
        return True
    return any(n.bl_idname == "NodeFrame" and n.label == LEGACY_FRAME_LABEL for n in tree.nodes)


class _Reader:
    def __init__(self, limits: ReadLimits):
        self.limits = limits
        self.warnings: list[str] = []
        self.vertices = 0  # authored plus evaluated so far, against the cap
        self.materials: dict[str, bpy.types.Material] = {}
        self.node_groups: dict[str, bpy.types.NodeTree] = {}
        self.images: dict[str, bpy.types.Image] = {}
        self.depsgraph: bpy.types.Depsgraph | None = None

    # ---- scene ----------------------------------------------------------------------------------

    def read(self, provenance: dict[str, Any]) -> dict[str, Any]:
        scene = bpy.context.scene
        if bpy.app.autoexec_fail:
            self.warnings.append(f"auto-execution blocked, nothing ran: {bpy.app.autoexec_fail_message}")
        if len(bpy.data.scenes) > 1:
            others = sorted(id_name(s) for s in bpy.data.scenes if s != scene)
            self.warnings.append(
                f"only the active scene {id_name(scene)!r} is extracted; also in the file: {others}"
            )
        muted = _mute_python_drivers()
        if muted:
            self.warnings.append(
                f"{muted} Python driver expressions stored as text and muted, never evaluated as Python"
            )
        objects = self._scene_objects(scene)
        self._check_size(objects)
        doc_objects = [self._object(obj) for obj in objects]
        doc = {
            "schema_version": SCHEMA_VERSION,
            "name": scene.name or "Scene",
            "units": self._units(scene),
            "frame_start": scene.frame_start,
            "frame_end": scene.frame_end,
            "frame_current": scene.frame_current,
            "fps": scene.render.fps / (scene.render.fps_base or 1.0),
            "objects": doc_objects,
        }
        doc["materials"], doc["node_groups"] = self._materials_and_node_groups()
        doc["actions"] = self._actions()
        doc["images"] = [self._image(img) for _, img in sorted(self.images.items())]
        doc["libraries"] = self._libraries()
        doc["provenance"] = provenance
        doc["warnings"] = self.warnings
        return doc

    def _scene_objects(self, scene: bpy.types.Scene) -> list[bpy.types.Object]:
        """The scene's objects, the objects of collections they instance (the format has no
        instancing: those objects are kept at their own place) and parents outside the scene."""
        found = {id_name(o): o for o in scene.objects}
        pending = list(found.values())
        while pending:
            obj = pending.pop()
            related = [obj.parent] if obj.parent is not None else []
            if obj.instance_type == "COLLECTION" and obj.instance_collection is not None:
                self.warnings.append(
                    f"object {id_name(obj)!r} instances collection "
                    f"{id_name(obj.instance_collection)!r}; its objects are stored once, not instanced"
                )
                related.extend(obj.instance_collection.all_objects)
            for other in related:
                if id_name(other) not in found:
                    found[id_name(other)] = other
                    pending.append(other)
        return [found[name] for name in sorted(found)]

    def _check_size(self, objects: list[bpy.types.Object]) -> None:
        meshes = {id_name(o.data): o.data for o in objects if o.type == "MESH" and o.data is not None}
        vertices = sum(len(m.vertices) for m in meshes.values())
        faces = sum(len(m.polygons) for m in meshes.values())
        if vertices > self.limits.max_vertices:
            biggest = max(meshes.values(), key=lambda m: len(m.vertices))
            raise RejectedInput(
                f"meshes hold {vertices} vertices, over the cap of {self.limits.max_vertices} "
                f"(largest: {id_name(biggest)!r} with {len(biggest.vertices)})"
            )
        if faces > self.limits.max_faces:
            raise RejectedInput(f"meshes hold {faces} faces, over the cap of {self.limits.max_faces}")
        self.vertices = vertices

    def _units(self, scene: bpy.types.Scene) -> dict[str, Any]:
        units = scene.unit_settings
        return {
            "system": units.system,
            "scale_length": units.scale_length if units.scale_length > 0 else 1.0,
            "length_unit": units.length_unit,
        }

    def _libraries(self) -> list[str]:
        paths = []
        for lib in sorted(bpy.data.libraries, key=id_name):
            paths.append(lib.filepath)
            state = "missing" if lib.is_missing else "present"
            self.warnings.append(f"linked library {lib.filepath!r} ({state}) recorded, not followed")
        return paths

    # ---- objects --------------------------------------------------------------------------------

    def _object(self, obj: bpy.types.Object) -> dict[str, Any]:
        out: dict[str, Any] = {"name": id_name(obj), "type": obj.type}
        if obj.parent is not None:
            out["parent"] = id_name(obj.parent)
            parent_type = obj.parent_type
            if parent_type not in ("OBJECT", "BONE", "ARMATURE", "VERTEX", "VERTEX_3"):
                self.warnings.append(f"object {id_name(obj)!r}: parent type {parent_type} stored as OBJECT")
                parent_type = "OBJECT"
            out["parent_type"] = parent_type
            if parent_type == "BONE" and obj.parent_bone:
                out["parent_bone"] = obj.parent_bone
            inverse = [v for row in obj.matrix_parent_inverse for v in row]
            if not _is_identity(inverse):
                out["parent_inverse"] = _finite_list(inverse)
        out["transform"] = {
            "location": _finite_list(obj.location),
            "rotation_mode": obj.rotation_mode,
            "rotation_euler": _finite_list(obj.rotation_euler),
            "rotation_quaternion": _finite_list(obj.rotation_quaternion),
            "scale": _finite_list(obj.scale),
        }
        if obj.rotation_mode == "AXIS_ANGLE":
            self.warnings.append(
                f"object {id_name(obj)!r}: axis-angle rotation stored as its quaternion equivalent"
            )
            angle, *axis = obj.rotation_axis_angle
            out["transform"]["rotation_quaternion"] = _finite_list(Quaternion(axis, angle))
        slots = [id_name(s.material) if s.material is not None else None for s in obj.material_slots]
        for slot in obj.material_slots:
            if slot.material is not None:
                self.materials[id_name(slot.material)] = slot.material
        out["material_slots"] = slots
        if obj.type == "MESH" and obj.data is not None:
            out["mesh"] = self._mesh(obj.data, len(slots), authored=True)
            if obj.vertex_groups:
                out["vertex_groups"] = self._vertex_groups(obj)
        if obj.modifiers or obj.type in GEOMETRY_TYPES:
            evaluated = self._evaluated_mesh(obj, len(slots))
            if evaluated is not None:
                out["evaluated_mesh"] = evaluated
        if obj.modifiers:
            out["modifiers"] = [self._modifier(m) for m in obj.modifiers]
        if obj.constraints:
            out["constraints"] = [self._constraint(c) for c in obj.constraints]
        if obj.type == "ARMATURE" and obj.data is not None:
            out["armature"] = self._armature(obj)
        elif obj.type == "CAMERA" and obj.data is not None:
            out["camera"] = self._camera(obj.data)
        elif obj.type == "LIGHT" and obj.data is not None:
            out["light"] = self._light(obj.data)
        animation = self._animation(obj.animation_data)
        if animation is not None:
            out["animation"] = animation
        out["hide_viewport"] = bool(obj.hide_viewport)
        out["hide_render"] = bool(obj.hide_render)
        collections = sorted(id_name(c) for c in obj.users_collection)
        if collections:
            out["collection"] = collections[0]
        return out

    def _vertex_groups(self, obj: bpy.types.Object) -> list[dict[str, Any]]:
        # No bulk accessor exists for deform weights: one pass over the vertices.
        indices: list[list[int]] = [[] for _ in obj.vertex_groups]
        weights: list[list[float]] = [[] for _ in obj.vertex_groups]
        for vertex in obj.data.vertices:
            for elem in vertex.groups:
                if elem.group < len(indices):
                    indices[elem.group].append(vertex.index)
                    weights[elem.group].append(elem.weight)
        return [
            {"name": group.name, "indices": indices[i], "weights": np.asarray(weights[i], np.float32)}
            for i, group in enumerate(obj.vertex_groups)
        ]

    def _armature(self, obj: bpy.types.Object) -> dict[str, Any]:
        bones = []
        pose = obj.pose
        for bone in obj.data.bones:
            _, roll = bpy.types.Bone.AxisRollFromMatrix(bone.matrix_local.to_3x3())
            entry: dict[str, Any] = {
                "name": bone.name,
                "parent": bone.parent.name if bone.parent else None,
                "head": _finite_list(bone.head_local),
                "tail": _finite_list(bone.tail_local),
                "roll": _finite(roll),
                "use_connect": bone.use_connect,
                "use_deform": bone.use_deform,
            }
            pose_bone = pose.bones.get(bone.name) if pose is not None else None
            if pose_bone is not None and pose_bone.constraints:
                entry["constraints"] = [self._constraint(c) for c in pose_bone.constraints]
            bones.append(entry)
        return {"name": id_name(obj.data), "bones": bones}

    def _camera(self, cam: bpy.types.Camera) -> dict[str, Any]:
        return {
            "type": cam.type,
            "lens": cam.lens,
            "ortho_scale": cam.ortho_scale,
            "sensor_width": cam.sensor_width,
            "clip_start": cam.clip_start,
            "clip_end": cam.clip_end,
        }

    def _light(self, light: bpy.types.Light) -> dict[str, Any]:
        out = {
            "type": light.type,
            "color": _finite_list(light.color),
            "energy": _finite(light.energy),
            "radius": _finite(getattr(light, "shadow_soft_size", 0.1)),
        }
        if light.type == "SPOT":
            out["spot_size"] = light.spot_size
            out["spot_blend"] = light.spot_blend
        return out

    # ---- meshes ---------------------------------------------------------------------------------

    def _mesh(self, mesh: bpy.types.Mesh, n_slots: int, *, authored: bool) -> dict[str, Any]:
        nv, nf, nl = len(mesh.vertices), len(mesh.polygons), len(mesh.loops)
        vertices = _get(mesh.vertices, "co", nv * 3, np.float32).reshape(nv, 3)
        starts = _get(mesh.polygons, "loop_start", nf, np.int32)
        totals = _get(mesh.polygons, "loop_total", nf, np.int32)
        corner_vertices = _get(mesh.loops, "vertex_index", nl, np.int32).tolist()
        faces = [corner_vertices[s : s + t] for s, t in zip(starts.tolist(), totals.tolist(), strict=True)]
        face_keep, corner_keep = self._degenerate_faces(mesh, faces, starts, totals, nl)
        if face_keep is not None:
            faces = [f for f, keep in zip(faces, face_keep.tolist(), strict=True) if keep]
        out: dict[str, Any] = {
            "name": id_name(mesh),
            "vertices": _finite_array(vertices),
            "faces": faces,
        }
        edge_count = len(mesh.edges)
        if edge_count:
            loose = _get(mesh.edges, "is_loose", edge_count, bool)
            if loose.any():
                edge_vertices = _get(mesh.edges, "vertices", edge_count * 2, np.int32).reshape(-1, 2)
                out["loose_edges"] = edge_vertices[loose].tolist()
        if nv:
            normals = _get(mesh.vertex_normals, "vector", nv * 3, np.float32).reshape(nv, 3)
            out["normals"] = _finite_array(normals)
        if nf:
            smooth = _get(mesh.polygons, "use_smooth", nf, bool)
            material_indices = _get(mesh.polygons, "material_index", nf, np.int32)
            if face_keep is not None:
                smooth, material_indices = smooth[face_keep], material_indices[face_keep]
            out["face_smooth"] = smooth.tolist()
            top = max(1, n_slots) - 1
            if material_indices.any():
                if material_indices.max() > top or material_indices.min() < 0:
                    self.warnings.append(
                        f"mesh {id_name(mesh)!r}: material indices clamped to its {n_slots} slots"
                    )
                    material_indices = material_indices.clip(0, top)
                out["material_indices"] = material_indices.tolist()
        uv_layers = []
        for layer in mesh.uv_layers:
            if len(layer.uv) == nl:
                uvs = _get(layer.uv, "vector", nl * 2, np.float32).reshape(nl, 2)
            else:  # some old files carry a UV layer without data; Blender evaluates it to zeros
                self.warnings.append(
                    f"mesh {id_name(mesh)!r}: UV layer {layer.name!r} has no data; stored as zeros"
                )
                uvs = np.zeros((nl, 2), np.float32)
            if corner_keep is not None:
                uvs = uvs[corner_keep]
            uv_layers.append(
                {
                    "name": layer.name or "UVMap",
                    "uvs": _finite_array(uvs),
                    "active_render": layer.active_render,
                }
            )
        if uv_layers:
            out["uv_layers"] = uv_layers
        if authored and mesh.shape_keys is not None:
            keys = self._shape_keys(mesh, nv)
            if keys:
                out["shape_keys"] = keys
            animation = self._animation(mesh.shape_keys.animation_data)
            if animation is not None:
                out["shape_key_animation"] = animation
        return out

    def _degenerate_faces(
        self, mesh: bpy.types.Mesh, faces: list[list[int]], starts: np.ndarray, totals: np.ndarray, nl: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Masks dropping faces that repeat a vertex, and faces over the same vertices as an earlier
        one (both found in real files; the format forbids the first, Blender's validation removes
        the second)."""
        seen: set[frozenset[int]] = set()
        degenerate, duplicate = [], []
        for i, face in enumerate(faces):
            corners = frozenset(face)
            if len(corners) != len(face) or len(face) < 3:
                degenerate.append(i)
            elif corners in seen:
                duplicate.append(i)
            seen.add(corners)
        bad = degenerate + duplicate
        if not bad:
            return None, None
        if degenerate:
            self.warnings.append(
                f"mesh {id_name(mesh)!r}: dropped {len(degenerate)} degenerate faces (repeated vertices)"
            )
        if duplicate:
            self.warnings.append(f"mesh {id_name(mesh)!r}: dropped {len(duplicate)} duplicate faces")
        face_keep = np.ones(len(faces), bool)
        face_keep[bad] = False
        corner_keep = np.ones(nl, bool)
        for i in bad:
            corner_keep[starts[i] : starts[i] + totals[i]] = False
        return face_keep, corner_keep

    def _shape_keys(self, mesh: bpy.types.Mesh, nv: int) -> list[dict[str, Any]]:
        keys = []
        for block in mesh.shape_keys.key_blocks:
            if len(block.data) != nv:
                self.warnings.append(
                    f"mesh {id_name(mesh)!r}: shape key {block.name!r} has {len(block.data)} points "
                    f"for {nv} vertices; skipped"
                )
                continue
            entry: dict[str, Any] = {
                "name": block.name,
                "vertices": _finite_array(_get(block.data, "co", nv * 3, np.float32).reshape(nv, 3)),
                "value": _finite(block.value),
                "slider_min": _finite(block.slider_min),
                "slider_max": _finite(block.slider_max),
                "mute": block.mute,
            }
            if block.relative_key is not None and block.relative_key != block:
                entry["relative_key"] = block.relative_key.name
            if block.vertex_group:
                entry["vertex_group"] = block.vertex_group
            keys.append(entry)
        return keys

    def _evaluated_mesh(self, obj: bpy.types.Object, n_slots: int) -> dict[str, Any] | None:
        if self.depsgraph is None:
            self.depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(self.depsgraph)
        try:
            mesh = evaluated.to_mesh()
        except RuntimeError as exc:
            self.warnings.append(f"object {id_name(obj)!r}: no evaluated mesh ({exc})")
            return None
        try:
            if mesh is None:
                return None
            budget = self.limits.max_vertices - self.vertices
            if len(mesh.vertices) > budget:
                self.warnings.append(
                    f"object {id_name(obj)!r}: evaluated mesh of {len(mesh.vertices)} vertices omitted "
                    f"(over the remaining cap of {budget})"
                )
                return None
            self.vertices += len(mesh.vertices)
            out = self._mesh(mesh, n_slots, authored=False)
            out["name"] = id_name(obj.data) if obj.data is not None else id_name(obj)
            return out
        finally:
            evaluated.to_mesh_clear()

    # ---- materials and node trees ---------------------------------------------------------------

    def _material(self, material: bpy.types.Material) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": id_name(material),
            "diffuse_color": _finite_list(material.diffuse_color),
            "blend_method": material.blend_method,
            "use_backface_culling": material.use_backface_culling,
        }
        if is_legacy_material(material):
            out["source"] = "legacy"
            out["pbr"] = {
                "base_color": _finite_list(material.diffuse_color),
                "metallic": _finite(material.metallic),
                "roughness": _finite(material.roughness),
                "specular": _finite(material.specular_intensity),
                "alpha": _finite(material.diffuse_color[3]),
            }
            return out
        out["source"] = "nodes"
        out["node_tree"] = self._node_tree(material.node_tree, name=id_name(material))
        out["pbr"] = self._pbr(material.node_tree)
        return out

    def _materials_and_node_groups(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Material slots and modifiers register materials and node groups; materials name node
        groups, which nest further groups and may name materials (Set Material): read until
        nothing new turns up."""
        materials: dict[str, dict[str, Any]] = {}
        groups: dict[str, dict[str, Any]] = {}
        while True:
            new_materials = [name for name in self.materials if name not in materials]
            new_groups = [name for name in self.node_groups if name not in groups]
            if not new_materials and not new_groups:
                break
            for name in new_materials:
                materials[name] = self._material(self.materials[name])
            for name in new_groups:
                groups[name] = self._node_tree(self.node_groups[name], name=name)
        return [materials[name] for name in sorted(materials)], [groups[name] for name in sorted(groups)]

    def _node_tree(self, tree: bpy.types.NodeTree, *, name: str) -> dict[str, Any]:
        nodes = [self._node(node) for node in tree.nodes]
        links = [
            {
                "from_node": link.from_node.name,
                "from_socket": link.from_socket.identifier,
                "to_node": link.to_node.name,
                "to_socket": link.to_socket.identifier,
                **({"muted": True} if link.is_muted else {}),
            }
            for link in tree.links
            if link.from_node is not None and link.to_node is not None
        ]
        out: dict[str, Any] = {"name": name, "type": tree.bl_idname, "nodes": nodes, "links": links}
        interface = getattr(tree, "interface", None)
        if interface is not None:
            out["interface"] = [
                _interface_socket(item) for item in interface.items_tree if item.item_type == "SOCKET"
            ]
        return out

    def _node(self, node: bpy.types.Node) -> dict[str, Any]:
        out: dict[str, Any] = {"name": node.name, "type": node.bl_idname}
        if node.label:
            out["label"] = node.label
        out["location"] = _finite_list(node.location)
        if node.parent is not None:
            out["parent"] = node.parent.name
        properties = _rna_properties(node, _node_base_props(), skip=("image", "node_tree"))
        if node.mute:
            properties["mute"] = True
        if properties:
            out["properties"] = properties
        out["inputs"] = [_socket(s) for s in node.inputs]
        out["outputs"] = [_socket(s) for s in node.outputs]
        for socket in node.inputs:
            self._keep_referenced(getattr(socket, "default_value", None))
        group = getattr(node, "node_tree", None)
        if isinstance(group, bpy.types.NodeTree):
            self.node_groups[id_name(group)] = group
            out["node_tree"] = id_name(group)
        image = getattr(node, "image", None)
        if isinstance(image, bpy.types.Image):
            self.images[id_name(image)] = image
            out["image"] = id_name(image)
        return out

    def _keep_referenced(self, value: Any) -> None:
        """A material or image named by a socket or a geometry-nodes input (a Set Material node)
        joins the document, so that the name refers to something."""
        if isinstance(value, bpy.types.Material):
            self.materials[id_name(value)] = value
        elif isinstance(value, bpy.types.Image):
            self.images[id_name(value)] = value

    def _pbr(self, tree: bpy.types.NodeTree) -> dict[str, Any]:
        """The Principled BSDF feeding the active output (else any), else a simpler BSDF's colour."""
        output = next(
            (n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial" and n.is_active_output), None
        )
        shader = None
        if output is not None and output.inputs["Surface"].is_linked:
            shader = output.inputs["Surface"].links[0].from_node
        if shader is None or shader.bl_idname != "ShaderNodeBsdfPrincipled":
            shader = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"), shader)
        pbr: dict[str, Any] = {}
        if shader is None:
            return pbr
        if shader.bl_idname != "ShaderNodeBsdfPrincipled":
            color = shader.inputs.get("Color")
            if color is not None and color.type == "RGBA":
                pbr["base_color"] = _finite_list(color.default_value)
            return pbr
        fields = {
            "base_color": "Base Color",
            "metallic": "Metallic",
            "roughness": "Roughness",
            "ior": "IOR",
            "alpha": "Alpha",
            "emission_color": "Emission Color",
            "emission_strength": "Emission Strength",
            "transmission": "Transmission Weight",
        }
        for key, socket_name in fields.items():
            socket = shader.inputs.get(socket_name)
            if socket is not None:
                value = socket.default_value
                pbr[key] = _finite_list(value) if key.endswith("color") else _finite(value)
        specular = shader.inputs.get("Specular IOR Level")
        if specular is not None:
            pbr["specular"] = _finite(specular.default_value)
        textures = {}
        for key, socket_name in {**fields, "normal": "Normal"}.items():
            socket = shader.inputs.get(socket_name)
            if socket is None or not socket.is_linked:
                continue
            found = _upstream_image(socket)
            if found is not None:
                image_node, normal_map = found
                self.images[id_name(image_node.image)] = image_node.image
                textures[key] = {"image": id_name(image_node.image)}
                uv_layer = _uv_map_name(image_node)
                if uv_layer is not None:
                    textures[key]["uv_layer"] = uv_layer
                if normal_map is not None and key == "normal":
                    pbr["normal_strength"] = _finite(normal_map.inputs["Strength"].default_value)
        if textures:
            pbr["textures"] = textures
        return pbr

    def _image(self, image: bpy.types.Image) -> dict[str, Any]:
        packed = image.packed_file is not None
        out: dict[str, Any] = {
            "name": id_name(image),
            "filepath": image.filepath,
            "packed": packed,
        }
        if image.colorspace_settings.name:  # empty for a colour space this Blender does not know
            out["colorspace"] = image.colorspace_settings.name
        if image.source == "GENERATED":
            out["size"] = [image.generated_width, image.generated_height]
        elif image.source in ("FILE", "SEQUENCE", "TILED") and not packed:
            path = bpy.path.abspath(image.filepath, library=image.library)
            if image.source == "FILE" and not os.path.exists(path):
                out["missing"] = True
                self.warnings.append(f"image {id_name(image)!r} is missing: {image.filepath!r}")
        if packed or out.get("missing") is not True and image.has_data:
            out["size"] = list(image.size)
        return out

    # ---- modifiers and constraints --------------------------------------------------------------

    def _modifier(self, modifier: bpy.types.Modifier) -> dict[str, Any]:
        params = _rna_properties(modifier, MODIFIER_FIELDS)
        if modifier.type == "NODES":
            if modifier.node_group is not None:
                self.node_groups[id_name(modifier.node_group)] = modifier.node_group
            inputs = {}
            for key in modifier.keys():  # noqa: SIM118 (ID properties, not a dict)
                value = modifier[key]
                self._keep_referenced(value)
                # Older files keep the "use attribute" switches as integers; Blender 5 as booleans.
                inputs[key] = bool(value) if key.endswith("_use_attribute") else _param(value)
            params["inputs"] = inputs
        return {
            "name": modifier.name or modifier.type,
            "type": modifier.type,
            "show_viewport": modifier.show_viewport,
            "show_render": modifier.show_render,
            "params": params,
        }

    def _constraint(self, constraint: bpy.types.Constraint) -> dict[str, Any]:
        return {
            "name": constraint.name or constraint.type,
            "type": constraint.type,
            "mute": constraint.mute,
            "influence": _finite(constraint.influence),
            "params": _rna_properties(constraint, CONSTRAINT_FIELDS),
        }

    # ---- animation ------------------------------------------------------------------------------

    def _animation(self, anim: bpy.types.AnimData | None) -> dict[str, Any] | None:
        if anim is None:
            return None
        out: dict[str, Any] = {}
        if anim.action is not None:
            out["action"] = _action_name(anim.action, anim.action_slot)
        drivers = [self._driver(fc) for fc in anim.drivers]
        if drivers:
            out["drivers"] = drivers
        tracks = [self._nla_track(t) for t in anim.nla_tracks]
        if tracks:
            out["nla_tracks"] = tracks
        return out or None

    def _nla_track(self, track: bpy.types.NlaTrack) -> dict[str, Any]:
        strips = []
        for strip in track.strips:
            entry: dict[str, Any] = {
                "name": strip.name or "strip",
                "action": _action_name(strip.action, strip.action_slot) if strip.action else None,
                "frame_start": strip.frame_start,
                "frame_end": strip.frame_end,
                "scale": strip.scale,
                "repeat": strip.repeat,
                "blend_type": strip.blend_type,
                "extrapolation": strip.extrapolation,
                "mute": strip.mute,
            }
            if strip.action is not None:
                entry["action_frame_start"] = strip.action_frame_start
                entry["action_frame_end"] = strip.action_frame_end
            if strip.use_animated_influence:
                entry["influence"] = _finite(strip.influence)
            strips.append(entry)
        return {"name": track.name or "track", "mute": track.mute, "is_solo": track.is_solo, "strips": strips}

    def _driver(self, fcurve: bpy.types.FCurve) -> dict[str, Any]:
        driver = fcurve.driver
        expression = driver.expression
        if len(expression) > MAX_DRIVER_EXPRESSION:
            self.warnings.append(
                f"driver on {fcurve.data_path!r}: expression of {len(expression)} characters truncated"
            )
            expression = expression[:MAX_DRIVER_EXPRESSION]
        variables = []
        for variable in driver.variables:
            targets = []
            for target in variable.targets:
                entry: dict[str, Any] = {
                    "id_type": target.id_type,
                    "id_name": id_name(target.id) if target.id is not None else None,
                    "data_path": target.data_path,
                }
                if variable.type in ("TRANSFORMS", "ROTATION_DIFF", "LOC_DIFF"):
                    entry.update(
                        bone_target=target.bone_target,
                        transform_type=target.transform_type,
                        transform_space=target.transform_space,
                        rotation_mode=target.rotation_mode,
                    )
                targets.append(entry)
            variables.append({"name": variable.name or "var", "type": variable.type, "targets": targets})
        return {
            "data_path": fcurve.data_path or "unknown",
            "index": max(0, fcurve.array_index),
            "type": driver.type,
            "expression": expression,
            "use_self": driver.use_self,
            "variables": variables,
            "keyframes": _keyframes(fcurve),
        }

    def _actions(self) -> list[dict[str, Any]]:
        """Every action in the file, one entry per slot (Blender 5 layered actions)."""
        out = []
        for action in sorted(bpy.data.actions, key=id_name):
            slots = list(action.slots) or [None]
            for slot in slots:
                fcurves = [_fcurve(fc) for fc in _slot_fcurves(action, slot)]
                entry: dict[str, Any] = {"name": _action_name(action, slot), "fcurves": fcurves}
                start, end = action.frame_range
                if math.isfinite(start) and math.isfinite(end):
                    entry["frame_range"] = [start, end]
                if slot is not None and slot.target_id_type != "UNSPECIFIED":
                    entry["id_root"] = slot.target_id_type
                out.append(entry)
        return out


# ---- helpers without reader state ---------------------------------------------------------------


ANIMATABLE_COLLECTIONS = [
    "objects",
    "meshes",
    "shape_keys",
    "materials",
    "node_groups",
    "scenes",
    "worlds",
    "armatures",
    "cameras",
    "lights",
    "curves",
    "lattices",
    "textures",
    "particles",
]
EMBEDDED_TREE_OWNERS = ("materials", "worlds", "lights")  # scenes use node groups in Blender 5


def _mute_python_drivers() -> int:
    """Mute every scripted driver that Blender's own expression evaluator cannot handle.

    With auto-execution off Blender only runs such expressions in its restricted mode (a bytecode
    whitelist: no imports, no attribute access), once when the file loads; muting them keeps the
    depsgraph evaluations made here from running them again. Drivers are read, not evaluated, so
    the document is unchanged.
    """
    owners = [block for name in ANIMATABLE_COLLECTIONS for block in getattr(bpy.data, name)]
    owners += [b.node_tree for name in EMBEDDED_TREE_OWNERS for b in getattr(bpy.data, name) if b.node_tree]
    muted = 0
    for owner in owners:
        anim = owner.animation_data
        if anim is None:
            continue
        for fcurve in anim.drivers:
            driver = fcurve.driver
            if driver.type == "SCRIPTED" and not driver.is_simple_expression and not fcurve.mute:
                fcurve.mute = True
                muted += 1
    return muted


def _action_name(action: bpy.types.Action, slot: bpy.types.ActionSlot | None) -> str:
    """An action with one slot keeps its name; each slot of a multi-slot action becomes its own entry."""
    if len(action.slots) <= 1 or slot is None:
        return id_name(action)
    return f"{id_name(action)}[{slot.identifier}]"[:MAX_NAME]


def _slot_fcurves(action: bpy.types.Action, slot: bpy.types.ActionSlot | None) -> Iterable[bpy.types.FCurve]:
    if slot is None:
        return
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                yield from bag.fcurves


def _fcurve(fcurve: bpy.types.FCurve) -> dict[str, Any]:
    out: dict[str, Any] = {
        "data_path": fcurve.data_path or "unknown",
        "index": max(0, fcurve.array_index),
        "extrapolation": fcurve.extrapolation,
        "auto_smoothing": fcurve.auto_smoothing,
        "keyframes": _keyframes(fcurve),
    }
    if fcurve.group is not None:
        out["group"] = fcurve.group.name
    if fcurve.modifiers:
        out["modifiers"] = [
            {"type": m.type, **_rna_properties(m, frozenset({"type"}))} for m in fcurve.modifiers
        ]
    return out


_ENUM_MAPS: dict[str, dict[int, str]] = {}


def _enum_map(prop: str) -> dict[int, str]:
    if prop not in _ENUM_MAPS:
        items = bpy.types.Keyframe.bl_rna.properties[prop].enum_items
        _ENUM_MAPS[prop] = {item.value: item.identifier for item in items}
    return _ENUM_MAPS[prop]


KEYFRAME_ENUM_DEFAULTS = {
    "interpolation": "BEZIER",
    "handle_left_type": "AUTO_CLAMPED",
    "handle_right_type": "AUTO_CLAMPED",
    "easing": "AUTO",
}


def _keyframes(fcurve: bpy.types.FCurve) -> list[dict[str, Any]]:
    points = fcurve.keyframe_points
    n = len(points)
    if not n:
        return []
    co = _finite_array(_get(points, "co", n * 2, np.float32).reshape(n, 2))
    left = _finite_array(_get(points, "handle_left", n * 2, np.float32).reshape(n, 2))
    right = _finite_array(_get(points, "handle_right", n * 2, np.float32).reshape(n, 2))
    enums = {}
    for prop, default in KEYFRAME_ENUM_DEFAULTS.items():
        names = _enum_map(prop)
        enums[prop] = [names.get(v, default) for v in _get(points, prop, n, np.int32).tolist()]
    keys = []
    for i in range(n):
        key: dict[str, Any] = {"co": co[i], "handle_left": left[i], "handle_right": right[i]}
        for prop, default in KEYFRAME_ENUM_DEFAULTS.items():
            if enums[prop][i] != default:
                key[prop] = enums[prop][i]
        keys.append(key)
    return keys


def _upstream_image(socket: bpy.types.NodeSocket, depth: int = 4) -> tuple[Any, Any] | None:
    """The image texture node feeding ``socket`` within a few hops, and the normal-map node on the way."""
    frontier = [(link.from_node, None) for link in socket.links]
    for _ in range(depth):
        next_frontier = []
        for node, normal_map in frontier:
            if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
                return node, normal_map
            if node.bl_idname == "ShaderNodeNormalMap":
                normal_map = node
            for node_input in node.inputs:
                next_frontier.extend((link.from_node, normal_map) for link in node_input.links)
        frontier = next_frontier
    return None


def _uv_map_name(image_node: bpy.types.Node, depth: int = 3) -> str | None:
    """The UV map an image texture reads: named by a UV Map node feeding its vector, perhaps
    through a Mapping node; None for the default map (or texture coordinates of another kind)."""
    socket = image_node.inputs.get("Vector")
    for _ in range(depth):
        if socket is None or not socket.is_linked:
            return None
        node = socket.links[0].from_node
        if node.bl_idname == "ShaderNodeUVMap":
            return node.uv_map or None
        socket = node.inputs.get("Vector")
    return None


def _interface_socket(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": item.name,
        "identifier": item.identifier or item.name or "socket",
        "in_out": item.in_out,
        "socket_type": item.socket_type or "NodeSocket",
    }
    if hasattr(item, "default_value"):
        out["default"] = _param(item.default_value)
    for bound in ("min_value", "max_value"):
        value = getattr(item, bound, None)
        if isinstance(value, int | float) and math.isfinite(value):
            out[bound] = float(value)
    return out


def _socket(socket: bpy.types.NodeSocket) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifier": socket.identifier or socket.name or "socket",
        "name": socket.name,
        "type": socket.type,
    }
    if hasattr(socket, "default_value"):
        out["default"] = _param(socket.default_value)
    if socket.hide:
        out["hidden"] = True
    return out


_BASE_PROPS: dict[str, frozenset[str]] = {}


def _base_props(rna_type: type) -> frozenset[str]:
    key = rna_type.__name__
    if key not in _BASE_PROPS:
        _BASE_PROPS[key] = frozenset(p.identifier for p in rna_type.bl_rna.properties)
    return _BASE_PROPS[key]


def _node_base_props() -> frozenset[str]:
    return _base_props(bpy.types.Node)


def _rna_properties(
    struct: Any, excluded: frozenset[str], skip: Iterable[str] = (), depth: int = STRUCT_DEPTH
) -> dict[str, Any]:
    """Every authored RNA property of ``struct`` not in ``excluded``: writable values, datablock
    references by name, nested structs (colour ramps, curve mappings) and their collections."""
    out: dict[str, Any] = {}
    skipped = set(skip) | {prop for kind, prop in DERIVED_PROPS if kind == struct.bl_rna.identifier}
    for prop in struct.bl_rna.properties:
        ident = prop.identifier
        if (
            ident in excluded
            or ident in skipped
            or ident in SKIPPED_PROPS
            or ident.startswith(SKIPPED_PREFIXES)
        ):
            continue
        kind = prop.type
        try:
            value = getattr(struct, ident)
        except (AttributeError, RuntimeError):
            continue
        if kind == "POINTER":
            if value is None or isinstance(value, bpy.types.ID):
                out[ident] = id_name(value) if value is not None else None
            elif depth > 0:
                out[ident] = _rna_properties(value, frozenset(), depth=depth - 1)
        elif kind == "COLLECTION":
            if depth > 0 and len(value) <= 1024:
                out[ident] = [
                    id_name(item)
                    if isinstance(item, bpy.types.ID)
                    else _rna_properties(item, frozenset(), depth=depth - 1)
                    for item in value
                ]
        elif not prop.is_readonly:
            if kind == "ENUM" and prop.is_enum_flag:
                out[ident] = sorted(value)
            elif kind == "ENUM" and value == "":
                continue  # a stored value this Blender has no item for: nothing to write back
            else:
                out[ident] = _param(value)
    return out


def _param(value: Any) -> Any:
    """A Python/RNA/ID-property value as JSON data; datablocks become their names."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bpy.types.ID):
        return id_name(value)
    if isinstance(value, bpy.types.bpy_struct):
        return None  # a nested non-datablock struct has no value of its own
    if hasattr(value, "to_dict"):
        return {str(k): _param(v) for k, v in value.to_dict().items()}
    if hasattr(value, "to_list"):
        return [_param(v) for v in value.to_list()]
    if isinstance(value, dict):
        return {str(k): _param(v) for k, v in value.items()}
    try:
        items = list(value)
    except TypeError:
        return str(value)
    if items and hasattr(items[0], "__len__") and not isinstance(items[0], str):
        return [[_param(v) for v in row] for row in items]  # matrices stay row-major
    return [_param(v) for v in items]


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _finite_list(values: Iterable[float]) -> list[float]:
    return [v if math.isfinite(v) else 0.0 for v in map(float, values)]


def _finite_array(array: np.ndarray) -> np.ndarray:
    """The schema forbids NaN and infinity: replace them by 0 (they occur in broken real files)."""
    if not np.isfinite(array).all():
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return array


def _is_identity(flat: list[float]) -> bool:
    return all(abs(v - (1.0 if i % 5 == 0 else 0.0)) < 1e-7 for i, v in enumerate(flat))


def _get(collection: Any, attr: str, size: int, dtype: Any) -> np.ndarray:
    array = np.empty(size, dtype)
    if size:
        collection.foreach_get(attr, array)
    return array
