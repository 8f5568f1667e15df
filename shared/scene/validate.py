"""Validation beyond field types: references, index ranges and size caps.

Pydantic checks each field's type and rejects NaN/infinity; this module checks what spans fields
(a face index against the vertex count, a link against the nodes it names) and the caps that keep
an untrusted document from exhausting memory. Every message names the field it is about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.scene.models import SUPPORTED_SCHEMA_VERSIONS, Animation, Mesh, NodeTree, Object, Scene

MAX_REPORTED_ERRORS = 20


class SceneValidationError(ValueError):
    """A scene document that must not be used; ``errors`` lists 'field.path: problem' lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_REPORTED_ERRORS]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__("invalid scene document:\n" + "\n".join(shown) + more)


@dataclass(frozen=True)
class Limits:
    max_objects: int = 2_000
    max_vertices: int = 2_000_000
    max_faces: int = 2_000_000
    max_nodes: int = 20_000
    max_keyframes: int = 1_000_000

    @classmethod
    def from_settings(cls) -> Limits:
        from shared.settings import get_settings

        s = get_settings()
        return cls(
            s.scene_max_objects,
            s.scene_max_vertices,
            s.scene_max_faces,
            s.scene_max_nodes,
            s.scene_max_keyframes,
        )


def parse_scene(document: str | bytes | dict[str, Any] | Scene, limits: Limits | None = None) -> Scene:
    """Parse and fully validate a scene document; raise SceneValidationError naming each bad field."""
    limits = limits or Limits.from_settings()
    if isinstance(document, Scene):
        scene = document
    else:
        data = json.loads(document) if isinstance(document, str | bytes) else document
        if not isinstance(data, dict):
            raise SceneValidationError([f"document: expected a JSON object, got {type(data).__name__}"])
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise SceneValidationError(
                [
                    f"schema_version: unknown version {version!r}; supported: {', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}"
                ]
            )
        _check_raw_counts(data, limits)
        try:
            scene = Scene.model_validate(data)
        except ValidationError as exc:
            raise SceneValidationError(
                [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)]
            ) from None
    errors = _Checker(scene, limits).run()
    if errors:
        raise SceneValidationError(errors)
    return scene


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _check_raw_counts(data: dict[str, Any], limits: Limits) -> None:
    """Refuse oversized documents before pydantic builds millions of objects from them."""
    objects = data.get("objects")
    if not isinstance(objects, list):
        return
    if len(objects) > limits.max_objects:
        raise SceneValidationError(
            [f"objects: {len(objects)} objects exceed the cap of {limits.max_objects}"]
        )
    vertices = faces = 0
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        for key in ("mesh", "evaluated_mesh"):
            mesh = obj.get(key)
            if isinstance(mesh, dict):
                vertices += len(mesh.get("vertices") or ())
                faces += len(mesh.get("faces") or ())
    if vertices > limits.max_vertices:
        raise SceneValidationError(
            [f"objects[*].mesh.vertices: {vertices} vertices exceed the cap of {limits.max_vertices}"]
        )
    if faces > limits.max_faces:
        raise SceneValidationError(
            [f"objects[*].mesh.faces: {faces} faces exceed the cap of {limits.max_faces}"]
        )


class _Checker:
    def __init__(self, scene: Scene, limits: Limits):
        self.scene = scene
        self.limits = limits
        self.errors: list[str] = []
        self.materials = _unique_names(scene.materials, "materials", self.errors)
        self.node_groups = _unique_names(scene.node_groups, "node_groups", self.errors)
        self.actions = _unique_names(scene.actions, "actions", self.errors)
        self.images = _unique_names(scene.images, "images", self.errors)
        self.objects = _unique_names(scene.objects, "objects", self.errors)

    def run(self) -> list[str]:
        s = self.scene
        self._caps()
        for i, obj in enumerate(s.objects):
            self._object(obj, f"objects[{i}]")
        self._parent_cycles()
        for i, mat in enumerate(s.materials):
            if mat.node_tree is not None:
                self._tree(mat.node_tree, f"materials[{i}].node_tree")
            for key, tex in mat.pbr.textures.items():
                if tex.image not in self.images:
                    self.errors.append(
                        f"materials[{i}].pbr.textures.{key}.image: unknown image {tex.image!r}"
                    )
        for i, group in enumerate(s.node_groups):
            self._tree(group, f"node_groups[{i}]")
        return self.errors

    def _caps(self) -> None:
        s, lim = self.scene, self.limits
        meshes = [m for o in s.objects for m in (o.mesh, o.evaluated_mesh) if m is not None]
        trees = [m.node_tree for m in s.materials if m.node_tree] + list(s.node_groups)
        counts = {
            "objects": (len(s.objects), lim.max_objects),
            "vertices": (sum(len(m.vertices) for m in meshes), lim.max_vertices),
            "faces": (sum(len(m.faces) for m in meshes), lim.max_faces),
            "nodes": (sum(len(t.nodes) for t in trees), lim.max_nodes),
            "keyframes": (sum(len(fc.keyframes) for a in s.actions for fc in a.fcurves), lim.max_keyframes),
        }
        for what, (count, cap) in counts.items():
            if count > cap:
                self.errors.append(f"{what}: {count} exceed the cap of {cap}")

    def _object(self, obj: Object, path: str) -> None:
        if obj.parent is not None and obj.parent not in self.objects:
            self.errors.append(f"{path}.parent: unknown object {obj.parent!r}")
        for j, slot in enumerate(obj.material_slots):
            if slot is not None and slot not in self.materials:
                self.errors.append(f"{path}.material_slots[{j}]: unknown material {slot!r}")
        for key in ("mesh", "evaluated_mesh"):
            mesh = getattr(obj, key)
            if mesh is not None:
                self._mesh(mesh, f"{path}.{key}", len(obj.material_slots))
        n_vertices = len(obj.mesh.vertices) if obj.mesh else 0
        for j, group in enumerate(obj.vertex_groups):
            gpath = f"{path}.vertex_groups[{j}]"
            if len(group.weights) != len(group.indices):
                self.errors.append(
                    f"{gpath}.weights: {len(group.weights)} weights for {len(group.indices)} indices"
                )
            bad = next((v for v in group.indices if not 0 <= v < n_vertices), None)
            if bad is not None:
                self.errors.append(
                    f"{gpath}.indices: vertex index {bad} out of range (mesh has {n_vertices} vertices)"
                )
        if obj.armature is not None:
            bones = {b.name for b in obj.armature.bones}
            for j, bone in enumerate(obj.armature.bones):
                if bone.parent is not None and bone.parent not in bones:
                    self.errors.append(f"{path}.armature.bones[{j}].parent: unknown bone {bone.parent!r}")
        if obj.animation is not None:
            self._animation(obj.animation, f"{path}.animation")

    def _mesh(self, mesh: Mesh, path: str, n_slots: int) -> None:
        nv, nf = len(mesh.vertices), len(mesh.faces)
        corners = 0
        for j, face in enumerate(mesh.faces):
            corners += len(face)
            if len(face) < 3:
                self.errors.append(f"{path}.faces[{j}]: a face needs at least 3 vertices, got {len(face)}")
            elif any(not 0 <= v < nv for v in face):
                bad = next(v for v in face if not 0 <= v < nv)
                self.errors.append(
                    f"{path}.faces[{j}]: vertex index {bad} out of range (mesh has {nv} vertices)"
                )
            elif len(set(face)) != len(face):
                self.errors.append(f"{path}.faces[{j}]: repeats a vertex")
            if len(self.errors) > MAX_REPORTED_ERRORS:
                return
        for j, edge in enumerate(mesh.loose_edges):
            if not all(0 <= v < nv for v in edge) or edge[0] == edge[1]:
                self.errors.append(f"{path}.loose_edges[{j}]: invalid edge {list(edge)} for {nv} vertices")
                break
        _expect_len(self.errors, f"{path}.normals", mesh.normals, nv, "vertices")
        _expect_len(self.errors, f"{path}.face_smooth", mesh.face_smooth, nf, "faces")
        if mesh.material_indices is not None:
            _expect_len(self.errors, f"{path}.material_indices", mesh.material_indices, nf, "faces")
            top = max(1, n_slots)
            bad_index = next((m for m in mesh.material_indices if not 0 <= m < top), None)
            if bad_index is not None:
                self.errors.append(
                    f"{path}.material_indices: index {bad_index} out of range ({n_slots} material slots)"
                )
        for j, layer in enumerate(mesh.uv_layers):
            _expect_len(self.errors, f"{path}.uv_layers[{j}].uvs", layer.uvs, corners, "face corners")
        keys = {k.name for k in mesh.shape_keys}
        for j, key in enumerate(mesh.shape_keys):
            _expect_len(self.errors, f"{path}.shape_keys[{j}].vertices", key.vertices, nv, "vertices")
            if key.relative_key is not None and key.relative_key not in keys:
                self.errors.append(
                    f"{path}.shape_keys[{j}].relative_key: unknown shape key {key.relative_key!r}"
                )
        if mesh.shape_key_animation is not None:
            self._animation(mesh.shape_key_animation, f"{path}.shape_key_animation")

    def _tree(self, tree: NodeTree, path: str) -> None:
        nodes = _unique_names(tree.nodes, f"{path}.nodes", self.errors)
        for j, node in enumerate(tree.nodes):
            if node.node_tree is not None and node.node_tree not in self.node_groups:
                self.errors.append(f"{path}.nodes[{j}].node_tree: unknown node group {node.node_tree!r}")
            if node.image is not None and node.image not in self.images:
                self.errors.append(f"{path}.nodes[{j}].image: unknown image {node.image!r}")
            if node.parent is not None and node.parent not in nodes:
                self.errors.append(f"{path}.nodes[{j}].parent: unknown node {node.parent!r}")
        for j, link in enumerate(tree.links):
            for end in ("from_node", "to_node"):
                if getattr(link, end) not in nodes:
                    self.errors.append(f"{path}.links[{j}].{end}: unknown node {getattr(link, end)!r}")

    def _animation(self, anim: Animation, path: str) -> None:
        if anim.action is not None and anim.action not in self.actions:
            self.errors.append(f"{path}.action: unknown action {anim.action!r}")
        for t, track in enumerate(anim.nla_tracks):
            for k, strip in enumerate(track.strips):
                if strip.action is not None and strip.action not in self.actions:
                    self.errors.append(
                        f"{path}.nla_tracks[{t}].strips[{k}].action: unknown action {strip.action!r}"
                    )

    def _parent_cycles(self) -> None:
        parents = {o.name: o.parent for o in self.scene.objects}
        for name in parents:
            seen = {name}
            current = parents.get(name)
            while current is not None:
                if current in seen:
                    self.errors.append(f"objects: parent cycle through {name!r}")
                    return
                seen.add(current)
                current = parents.get(current)


def _unique_names(items: list[Any], path: str, errors: list[str]) -> set[str]:
    names: set[str] = set()
    for j, item in enumerate(items):
        if item.name in names:
            errors.append(f"{path}[{j}].name: duplicate name {item.name!r}")
        names.add(item.name)
    return names


def _expect_len(errors: list[str], path: str, values: list[Any] | None, expected: int, what: str) -> None:
    if values is not None and len(values) != expected:
        errors.append(f"{path}: {len(values)} entries for {expected} {what}")
