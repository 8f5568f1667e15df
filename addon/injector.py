"""Turn a scene document into Blender data through bpy.data: all of it, or nothing.

Safety rules this module keeps:
- No exec/eval, no text blocks, no operators that create data. The operators used are
  ``object.mode_set``: Blender creates bones only as edit bones, and edit bones exist only while
  the armature is in edit mode; there is no other API for it. It creates nothing by itself. And,
  with ``add_uv_maps``, ``mesh.select_all`` and ``uv.smart_project`` in the edit mode of a mesh
  just created: Blender unwraps only through the UV operators.
- Driver expressions are stored as text. Nothing here touches the auto-run-scripts preference,
  so a Python expression stays disabled unless the user trusts the file themselves.
- The document is validated (validate.py) before the first datablock is made. Every datablock
  made is recorded, and any exception during creation removes all of them again.
- Unknown modifier/constraint/node types and unknown or unsettable parameters are reported as
  warnings and skipped; they never stop the injection.

Names: each ``bpy.data.*.new(name)`` lets Blender pick "Name.001" on a clash; the documents'
names are mapped to the created datablocks, and every reference is resolved through that map
(so a reference never reaches one of the user's own datablocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import bpy
from mathutils import Matrix, Quaternion, Vector

from .validate import Limits, ValidatedScene, validate_scene

# Evaluated faces above this are not computed in the viewport: a document could ask for five
# nested arrays of 1,000 copies each and freeze Blender on the next redraw.
MAX_EVALUATED_FACES = 4_000_000
# Smart UV Project's defaults in Blender's menu (66 degrees), with a margin so islands never touch.
UNWRAP_ANGLE_LIMIT = math.radians(66.0)
UNWRAP_MARGIN = 0.01
# Longest side of a placeholder image; 256 x 256 RGBA is 256 KiB.
PLACEHOLDER_MAX_SIDE = 256
# A geometry-nodes modifier keeps, beside each input, whether it reads an attribute and which one.
NODE_INPUT_SUFFIXES = ("_use_attribute", "_attribute_name")
ROTATION_MODES = ("QUATERNION", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "AXIS_ANGLE")
# PBR summary field -> Principled BSDF input identifier (Blender 4.x/5.x names).
PRINCIPLED_INPUTS = {
    "base_color": "Base Color",
    "metallic": "Metallic",
    "roughness": "Roughness",
    "specular": "Specular IOR Level",
    "ior": "IOR",
    "alpha": "Alpha",
    "emission_color": "Emission Color",
    "emission_strength": "Emission Strength",
    "transmission": "Transmission Weight",
}
# bpy.data collection and scene-document map for each ID type a reference may point at.
ID_TYPES = {
    "Object": "objects",
    "Material": "materials",
    "NodeTree": "node_groups",
    "Image": "images",
    "Action": "actions",
    "Collection": "collections",
    "Mesh": "meshes",
    "Armature": "armatures",
    "Camera": "cameras",
    "Light": "lights",
}
ID_TYPE_NAMES = {kind: type_name for type_name, kind in ID_TYPES.items()}
DRIVER_ID_TYPES = {
    "OBJECT": "objects",
    "MATERIAL": "materials",
    "NODETREE": "node_groups",
    "IMAGE": "images",
    "ACTION": "actions",
    "MESH": "meshes",
    "ARMATURE": "armatures",
    "CAMERA": "cameras",
    "LIGHT": "lights",
}


class InjectionError(RuntimeError):
    """Creation failed; everything made so far has been removed again."""


@dataclass
class InjectionResult:
    objects: list = field(default_factory=list)  # the created bpy.types.Object, in document order
    warnings: list[str] = field(default_factory=list)
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> document name -> Blender name


def inject_scene(
    document: dict | str | bytes,
    *,
    collection=None,
    offset=(0.0, 0.0, 0.0),
    apply_scene_settings: bool = False,
    add_uv_maps: bool = False,
    limits: Limits | None = None,
) -> InjectionResult:
    """Validate ``document`` and create it in ``collection`` (default: the scene's collection).

    A ValidatedScene (validate_scene's result, e.g. checked in a background thread) is not
    checked twice.

    ``offset`` moves the root objects (the add-on passes the 3D cursor). ``apply_scene_settings``
    also writes frame range, fps and units into the current scene (for round trips; the add-on
    leaves the user's scene settings alone). ``add_uv_maps`` unwraps every mesh the document gave
    no UV map (the add-on asks for it: generated meshes arrive without one; round trips do not).
    """
    scene_doc = document if isinstance(document, ValidatedScene) else validate_scene(document, limits)
    injector = _Injector(scene_doc, collection or bpy.context.scene.collection)
    injector.add_uv_maps = add_uv_maps
    try:
        injector.build(Vector(offset))
        if apply_scene_settings:
            injector.apply_scene_settings(bpy.context.scene)
    except Exception as exc:
        injector.remove_created()
        raise InjectionError(
            f"could not create the scene ({type(exc).__name__}: {exc}); nothing was added"
        ) from exc
    return injector.result()


APPLIED_PARTS = ("materials", "modifiers", "animation")


def apply_to_object(
    document: dict | str | bytes, obj, *, parts=APPLIED_PARTS, limits: Limits | None = None
) -> InjectionResult:
    """Give the user's own ``obj`` the materials, modifiers and animation (those named in
    ``parts``) that the document's first object carries; the document's geometry is not used.

    Materials replace the object's material slots, modifiers join the end of its stack, the action
    becomes its active one. On any failure everything made is removed and the object is restored.
    """
    scene_doc = document if isinstance(document, ValidatedScene) else validate_scene(document, limits)
    if not scene_doc["objects"]:
        raise InjectionError("the result holds no object to take materials, modifiers or animation from")
    source = scene_doc["objects"][0]
    injector = _Injector(scene_doc, bpy.context.scene.collection)
    undo = _ObjectState(obj)
    try:
        injector.datablocks()
        injector.run_deferred()
        if "materials" in parts and source["material_slots"]:
            if not hasattr(obj.data, "materials"):
                injector.warn(
                    f"objects[0].material_slots: a {obj.type} object has no material slots; ignored"
                )
            else:
                obj.data.materials.clear()
                for name in source["material_slots"]:
                    obj.data.materials.append(None if name is None else injector.made["materials"][name])
        if "modifiers" in parts:
            faces = len(obj.data.polygons) if obj.type == "MESH" else 0
            injector.modifiers(obj, source["modifiers"], faces, "objects[0].modifiers")
        if "animation" in parts:
            injector.animate(obj, source["animation"], "objects[0].animation")
    except Exception as exc:
        undo.restore()
        injector.remove_created()
        raise InjectionError(
            f"could not apply the result ({type(exc).__name__}: {exc}); nothing was changed"
        ) from exc
    return InjectionResult(
        objects=[obj],
        warnings=injector.warnings,
        names={kind: {k: v.name for k, v in made.items()} for kind, made in injector.made.items() if made},
    )


class _ObjectState:
    """What apply_to_object may change on a user's object, to put back after a failure."""

    def __init__(self, obj):
        self.obj = obj
        self.materials = list(obj.data.materials) if hasattr(obj.data, "materials") else None
        self.modifiers = len(obj.modifiers)
        anim = obj.animation_data
        self.had_animation = anim is not None
        self.action = anim.action if anim is not None else None
        self.action_slot = getattr(anim, "action_slot", None) if anim is not None else None
        self.tracks = len(anim.nla_tracks) if anim is not None else 0
        self.drivers = len(anim.drivers) if anim is not None else 0

    def restore(self) -> None:
        obj = self.obj
        if self.materials is not None:
            obj.data.materials.clear()
            for material in self.materials:
                obj.data.materials.append(material)
        for modifier in list(obj.modifiers)[self.modifiers :]:
            obj.modifiers.remove(modifier)
        anim = obj.animation_data
        if anim is None:
            return
        if not self.had_animation:
            obj.animation_data_clear()
            return
        anim.action = self.action
        if self.action_slot is not None:
            anim.action_slot = self.action_slot
        for track in list(anim.nla_tracks)[self.tracks :]:
            anim.nla_tracks.remove(track)
        for driver in list(anim.drivers)[self.drivers :]:
            anim.drivers.remove(driver)


class _Injector:
    def __init__(self, doc: dict, collection):
        self.doc = doc
        self.collection = collection
        self.created: list = []
        self.warnings: list[str] = []
        # kind ("objects", "materials", ...) -> document name -> datablock
        self.made: dict[str, dict[str, object]] = {kind: {} for kind in set(ID_TYPES.values())}
        # node group -> document interface identifier -> identifier Blender gave the socket
        self.interface_ids: dict[str, dict[str, str]] = {}
        self.action_slots: dict[str, object] = {}
        # Document names of datablocks made after the node trees, and what waits for them.
        self.not_made_yet: dict[str, set[str]] = {kind: set() for kind in self.made}
        for kind in ("materials", "actions", "objects"):
            self.not_made_yet[kind] = {item["name"] for item in doc[kind]}
        self.deferred: list = []
        self.add_uv_maps = False

    # ---- bookkeeping --------------------------------------------------------------------------

    def new(self, kind: str, doc_name: str, *args):
        block = getattr(bpy.data, kind).new(doc_name, *args)
        self.created.append(block)
        self.made[kind][doc_name] = block
        return block

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def remove_created(self) -> None:
        if bpy.context.mode != "OBJECT" and bpy.context.view_layer.objects.active in self.created:
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.batch_remove([block for block in self.created if _is_alive(block)])
        self.created.clear()

    def result(self) -> InjectionResult:
        return InjectionResult(
            objects=[self.made["objects"][o["name"]] for o in self.doc["objects"]],
            warnings=self.warnings,
            names={kind: {k: v.name for k, v in made.items()} for kind, made in self.made.items() if made},
        )

    def lookup(self, kind: str, name: str | None, path: str):
        if name is None:
            return None
        block = self.made[kind].get(name)
        if block is None:
            self.warn(f"{path}: no {ID_TYPE_NAMES[kind]} named {name!r} in this scene; left empty")
        return block

    # ---- the whole scene ----------------------------------------------------------------------

    def build(self, offset: Vector) -> None:
        doc = self.doc
        self.datablocks()
        for i, obj in enumerate(doc["objects"]):
            self.object(obj, f"objects[{i}]")
        rigs = [
            (i, o)
            for i, o in enumerate(doc["objects"])
            if o["armature"] is not None and o["armature"]["bones"]
        ]
        if rigs:
            bpy.context.view_layer.update()  # newly linked objects join the view layer on update
        for i, obj in rigs:
            self.bones(self.made["objects"][obj["name"]], obj["armature"], f"objects[{i}].armature")
        if self.add_uv_maps:
            self.uv_maps()
        # Then everything that refers to other objects.
        for i, obj in enumerate(doc["objects"]):
            self.relations(obj, f"objects[{i}]", offset)
        self.run_deferred()

    def datablocks(self) -> None:
        """Images, node groups, materials and actions: what objects refer to by name."""
        doc = self.doc
        for image in doc["images"]:
            self.image(image)
        groups = []
        for i, group in enumerate(doc["node_groups"]):
            try:
                groups.append(
                    (self.new("node_groups", group["name"], group["type"]), group, f"node_groups[{i}]")
                )
            except TypeError:  # e.g. NodeTreeUndefined: a group from a missing library or add-on
                self.warn(f"node_groups[{i}].type: unknown node tree type {group['type']!r}; group skipped")
        # Interfaces first: a group node's sockets come from its group's interface.
        for tree, group, path in groups:
            self.interface(tree, group, path)
        for tree, group, path in groups:
            self.nodes_and_links(tree, group, path)
        for i, material in enumerate(doc["materials"]):
            self.material(material, f"materials[{i}]")
        for i, action in enumerate(doc["actions"]):
            self.action(action, f"actions[{i}]")

    def run_deferred(self) -> None:
        self.not_made_yet = {kind: set() for kind in self.made}
        for assign in self.deferred:
            assign()

    def apply_scene_settings(self, scene) -> None:
        doc = self.doc
        scene.name = doc["name"]
        scene.frame_start, scene.frame_end = doc["frame_start"], doc["frame_end"]
        if doc["frame_current"] is not None:
            scene.frame_set(doc["frame_current"])  # and evaluate the animation there
        scene.render.fps = max(1, round(doc["fps"]))
        scene.render.fps_base = scene.render.fps / doc["fps"]
        scene.unit_settings.system = doc["units"]["system"]
        scene.unit_settings.scale_length = doc["units"]["scale_length"]
        self.set_enum(scene.unit_settings, "length_unit", doc["units"]["length_unit"], "units.length_unit")

    # ---- images and node trees -----------------------------------------------------------------

    def image(self, doc: dict) -> None:
        # A placeholder: a path sent over the network is never opened. Blender allocates the
        # pixels of a new image at once, so big sizes are scaled down (the document's path and
        # size are kept as custom properties, for relinking the texture by hand).
        width, height = (max(1, side) for side in doc["size"])
        shrink = min(1.0, PLACEHOLDER_MAX_SIDE / max(width, height))
        image = self.new("images", doc["name"], max(1, round(width * shrink)), max(1, round(height * shrink)))
        if shrink < 1.0:
            image["bmt_source_size"] = list(doc["size"])
        if doc["filepath"]:
            image["bmt_source_filepath"] = doc["filepath"]
        self.set_enum(
            image.colorspace_settings, "name", doc["colorspace"], f"images[{doc['name']}].colorspace"
        )

    def interface(self, tree, doc: dict, path: str) -> None:
        ids = self.interface_ids.setdefault(tree.name, {})
        for j, socket in enumerate(doc["interface"]):
            spath = f"{path}.interface[{j}]"
            try:
                item = tree.interface.new_socket(
                    socket["name"], in_out=socket["in_out"], socket_type=socket["socket_type"]
                )
            except (TypeError, RuntimeError) as exc:
                self.warn(f"{spath}: socket type {socket['socket_type']!r} refused ({exc}); skipped")
                continue
            ids[socket["identifier"]] = item.identifier
            if socket["default"] is not None and hasattr(item, "default_value"):
                self.set_value(item, "default_value", socket["default"], f"{spath}.default")
            for bound in ("min_value", "max_value"):
                if socket[bound] is not None and hasattr(item, bound):
                    value = socket[bound]
                    if item.bl_rna.properties[bound].type == "INT":
                        value = round(value)  # the format holds every bound as a float
                    self.set_value(item, bound, value, f"{spath}.{bound}")

    def nodes_and_links(self, tree, doc: dict, path: str) -> None:
        tree.nodes.clear()
        nodes = {}
        for j, ndoc in enumerate(doc["nodes"]):
            npath = f"{path}.nodes[{j}]"
            try:
                node = tree.nodes.new(ndoc["type"])
            except RuntimeError:
                self.warn(f"{npath}.type: unknown node type {ndoc['type']!r}; node skipped")
                continue
            node.name = ndoc["name"]
            node.label = ndoc["label"]
            nodes[ndoc["name"]] = node
            if ndoc["node_tree"] is not None:
                if hasattr(node, "node_tree"):
                    node.node_tree = self.lookup("node_groups", ndoc["node_tree"], f"{npath}.node_tree")
                else:
                    self.warn(f"{npath}.node_tree: a {ndoc['type']} node holds no node group; ignored")
            if ndoc["image"] is not None:
                if hasattr(node, "image"):
                    node.image = self.made["images"][ndoc["image"]]
                else:
                    self.warn(f"{npath}.image: a {ndoc['type']} node holds no image; ignored")
            self.set_properties(node, ndoc["properties"], f"{npath}.properties")
            for side in ("inputs", "outputs"):
                sockets = getattr(node, side)
                for k, sdoc in enumerate(ndoc[side]):
                    spath = f"{npath}.{side}[{k}]"
                    socket = _socket(sockets, self.socket_id(tree, node, sdoc["identifier"]))
                    if socket is None:
                        self.warn(
                            f"{spath}: {ndoc['type']} has no {side[:-1]} {sdoc['identifier']!r}; skipped"
                        )
                        continue
                    socket.hide = sdoc["hidden"]
                    if sdoc["default"] is not None and hasattr(socket, "default_value"):
                        self.set_value(socket, "default_value", sdoc["default"], f"{spath}.default")
        # Locations are relative to the parent frame, so parents come before locations.
        for ndoc in doc["nodes"]:
            node = nodes.get(ndoc["name"])
            if node is None:
                continue
            if ndoc["parent"] is not None and ndoc["parent"] in nodes:
                node.parent = nodes[ndoc["parent"]]
            node.location = ndoc["location"]
        for j, ldoc in enumerate(doc["links"]):
            lpath = f"{path}.links[{j}]"
            from_node, to_node = nodes.get(ldoc["from_node"]), nodes.get(ldoc["to_node"])
            if from_node is None or to_node is None:
                self.warn(f"{lpath}: joins a skipped node; link skipped")
                continue
            out = _socket(from_node.outputs, self.socket_id(tree, from_node, ldoc["from_socket"]))
            into = _socket(to_node.inputs, self.socket_id(tree, to_node, ldoc["to_socket"]))
            if out is None or into is None:
                missing = ldoc["from_socket"] if out is None else ldoc["to_socket"]
                self.warn(f"{lpath}: no socket {missing!r}; link skipped")
                continue
            link = tree.links.new(out, into)
            link.is_muted = ldoc["muted"]

    def socket_id(self, tree, node, doc_identifier: str) -> str:
        """Group sockets get fresh identifiers in Blender ("Socket_0"...): map the document's."""
        if node.bl_idname in ("NodeGroupInput", "NodeGroupOutput"):
            return self.interface_ids.get(tree.name, {}).get(doc_identifier, doc_identifier)
        group = getattr(node, "node_tree", None)
        if group is not None:
            return self.interface_ids.get(group.name, {}).get(doc_identifier, doc_identifier)
        return doc_identifier

    # ---- materials -------------------------------------------------------------------------

    def material(self, doc: dict, path: str) -> None:
        mat = self.new("materials", doc["name"])
        if bpy.app.version < (5, 0, 0):
            mat.use_nodes = True  # 5.x materials always have a node tree; 4.x makes one on request
        mat.diffuse_color = doc["diffuse_color"]
        mat.use_backface_culling = doc["use_backface_culling"]
        self.set_enum(mat, "blend_method", doc["blend_method"], f"{path}.blend_method")
        if doc["node_tree"] is not None:
            self.nodes_and_links(mat.node_tree, doc["node_tree"], f"{path}.node_tree")
        else:
            self.principled_from_pbr(mat.node_tree, doc["pbr"])

    def principled_from_pbr(self, tree, pbr: dict) -> None:
        tree.nodes.clear()
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = tree.nodes.new("ShaderNodeOutputMaterial")
        bsdf.location, output.location = (0.0, 0.0), (400.0, 0.0)
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
        for key, identifier in PRINCIPLED_INPUTS.items():
            _socket(bsdf.inputs, identifier).default_value = pbr[key]
        for row, (key, tex) in enumerate(sorted(pbr["textures"].items())):
            node = tree.nodes.new("ShaderNodeTexImage")
            node.image = self.made["images"][tex["image"]]
            node.location = (-700.0, -300.0 * row)
            if tex["uv_layer"]:
                uv = tree.nodes.new("ShaderNodeUVMap")
                uv.uv_map = tex["uv_layer"]
                uv.location = (-900.0, -300.0 * row)
                tree.links.new(uv.outputs["UV"], node.inputs["Vector"])
            if key == "normal":
                normal_map = tree.nodes.new("ShaderNodeNormalMap")
                normal_map.location = (-250.0, -300.0 * row)
                _socket(normal_map.inputs, "Strength").default_value = pbr["normal_strength"]
                tree.links.new(node.outputs["Color"], normal_map.inputs["Color"])
                tree.links.new(normal_map.outputs["Normal"], _socket(bsdf.inputs, "Normal"))
            elif key in PRINCIPLED_INPUTS:
                target = _socket(bsdf.inputs, PRINCIPLED_INPUTS[key])
                source = node.outputs["Alpha" if key == "alpha" else "Color"]
                tree.links.new(source, target)
            else:
                self.warn(f"pbr.textures.{key}: no Principled BSDF input for it; image node left unlinked")

    # ---- actions -----------------------------------------------------------------------------

    def action(self, doc: dict, path: str) -> None:
        action = self.new("actions", doc["name"])
        if doc["frame_range"] is not None:
            action.use_frame_range = True
            action.frame_start, action.frame_end = doc["frame_range"]
        if hasattr(action, "layers"):  # Blender 4.4+: layered ("slotted") actions
            id_type = (
                doc["id_root"]
                if doc["id_root"] in _enum_items(bpy.types.ActionSlot, "target_id_type")
                else "OBJECT"
            )
            slot = action.slots.new(id_type=id_type, name=doc["name"])
            self.action_slots[doc["name"]] = slot
            channelbag = action.layers.new("Layer").strips.new(type="KEYFRAME").channelbag(slot, ensure=True)

            def new_fcurve(fdoc):
                return channelbag.fcurves.new(
                    fdoc["data_path"], index=fdoc["index"], group_name=fdoc["group"] or ""
                )
        else:  # Blender 4.2/4.3: legacy actions
            self.set_enum(action, "id_root", doc["id_root"], f"{path}.id_root")

            def new_fcurve(fdoc):
                return action.fcurves.new(
                    fdoc["data_path"], index=fdoc["index"], action_group=fdoc["group"] or ""
                )

        for j, fdoc in enumerate(doc["fcurves"]):
            fpath = f"{path}.fcurves[{j}]"
            try:
                fcurve = new_fcurve(fdoc)
            except RuntimeError as exc:  # the same data_path and index twice
                self.warn(f"{fpath}: {exc}; skipped")
                continue
            self.fcurve(fcurve, fdoc, fpath)

    def fcurve(self, fcurve, doc: dict, path: str) -> None:
        fcurve.extrapolation = doc["extrapolation"]
        fcurve.auto_smoothing = doc["auto_smoothing"]
        # Modifiers before keyframes: adding one (Cycles above all) recomputes the automatic
        # handles, which would replace the handles the document gives.
        for k, mdoc in enumerate(doc["modifiers"]):
            mpath = f"{path}.modifiers[{k}]"
            kind = mdoc.get("type")
            if kind not in _enum_items(bpy.types.FModifier, "type"):
                self.warn(f"{mpath}.type: unknown F-curve modifier type {kind!r}; skipped")
                continue
            modifier = fcurve.modifiers.new(kind)
            self.set_properties(modifier, {k: v for k, v in mdoc.items() if k != "type"}, mpath)
        self.keyframes(fcurve, doc["keyframes"])

    def keyframes(self, fcurve, keys: list[dict]) -> None:
        keys = sorted(keys, key=lambda key: key["co"][0])  # Blender keeps points in frame order
        points = fcurve.keyframe_points
        points.add(len(keys))
        points.foreach_set("co", [c for key in keys for c in key["co"]])
        for point, key in zip(points, keys, strict=True):
            point.interpolation = key["interpolation"]
            point.easing = key["easing"]
            point.handle_left_type = key["handle_left_type"]
            point.handle_right_type = key["handle_right_type"]
        if any(key["handle_left"] is None or key["handle_right"] is None for key in keys):
            fcurve.update()  # computes the handles the document left out
        for point, key in zip(points, keys, strict=True):
            if key["handle_left"] is not None:
                point.handle_left = key["handle_left"]
            if key["handle_right"] is not None:
                point.handle_right = key["handle_right"]

    def animate(self, target, doc: dict | None, path: str) -> None:
        """Give ``target`` (an object or a shape-key datablock) its action, drivers and NLA."""
        if doc is None or (doc["action"] is None and not doc["drivers"] and not doc["nla_tracks"]):
            return
        anim = target.animation_data_create()
        if doc["action"] is not None:
            anim.action = self.made["actions"][doc["action"]]
            slot = self.action_slots.get(doc["action"])
            if slot is not None:
                if slot.target_id_type not in ("UNSPECIFIED", target.id_type):
                    self.warn(
                        f"{path}.action: action made for {slot.target_id_type} used on {target.id_type}"
                    )
                else:
                    anim.action_slot = slot
        for t, tdoc in enumerate(doc["nla_tracks"]):
            track = anim.nla_tracks.new()
            track.name, track.mute = tdoc["name"], tdoc["mute"]
            for k, sdoc in enumerate(tdoc["strips"]):
                self.nla_strip(track, sdoc, f"{path}.nla_tracks[{t}].strips[{k}]")
            track.is_solo = tdoc["is_solo"]
        for d, ddoc in enumerate(doc["drivers"]):
            self.driver(target, ddoc, f"{path}.drivers[{d}]")

    def nla_strip(self, track, doc: dict, path: str) -> None:
        if doc["action"] is None:
            self.warn(f"{path}: a strip without an action cannot be made; skipped")
            return
        action = self.made["actions"][doc["action"]]
        try:
            strip = track.strips.new(doc["name"], round(doc["frame_start"]), action)
        except RuntimeError as exc:  # overlaps another strip on the track
            self.warn(f"{path}: {exc}; skipped")
            return
        strip.name = doc["name"]  # Blender 4.2 names a new strip after its action
        if doc["action"] in self.action_slots:
            strip.action_slot = self.action_slots[doc["action"]]
        if doc["action_frame_start"] is not None:
            strip.action_frame_start = doc["action_frame_start"]
        if doc["action_frame_end"] is not None:
            strip.action_frame_end = doc["action_frame_end"]
        strip.scale, strip.repeat = doc["scale"], doc["repeat"]
        strip.frame_start_ui = doc["frame_start"]
        strip.frame_end_ui = doc["frame_end"]
        strip.blend_type, strip.extrapolation, strip.mute = (
            doc["blend_type"],
            doc["extrapolation"],
            doc["mute"],
        )
        if doc["influence"] is not None:
            strip.use_animated_influence = True
            strip.influence = doc["influence"]

    def driver(self, target, doc: dict, path: str) -> None:
        try:
            fcurve = target.driver_add(doc["data_path"], doc["index"])
        except TypeError:
            try:  # a single-valued property takes no index
                fcurve = target.driver_add(doc["data_path"])
            except TypeError as exc:
                self.warn(f"{path}.data_path: cannot drive {doc['data_path']!r} ({exc}); skipped")
                return
        driver = fcurve.driver
        driver.type = doc["type"]
        driver.expression = doc["expression"]  # text only; never evaluated by this add-on
        driver.use_self = doc["use_self"]
        for v, vdoc in enumerate(doc["variables"]):
            vpath = f"{path}.variables[{v}]"
            variable = driver.variables.new()
            variable.name, variable.type = vdoc["name"], vdoc["type"]
            if len(vdoc["targets"]) > len(variable.targets):
                self.warn(f"{vpath}.targets: {variable.type} takes {len(variable.targets)}; extra ignored")
            for slot, tdoc in zip(variable.targets, vdoc["targets"], strict=False):
                self.driver_target(slot, tdoc, variable.type, f"{vpath}.targets")
        # A new driver curve maps its value through unchanged: Blender 5 seeds it with points
        # (0,0),(1,1), Blender 4 with a Generator modifier. The document's points replace that; an
        # empty curve with no modifier passes the value through too, the same in every version.
        fcurve.keyframe_points.clear()
        for modifier in list(fcurve.modifiers):
            fcurve.modifiers.remove(modifier)
        self.keyframes(fcurve, doc["keyframes"])

    def driver_target(self, slot, doc: dict, variable_type: str, path: str) -> None:
        if variable_type == "SINGLE_PROP":
            self.set_enum(slot, "id_type", doc["id_type"], f"{path}.id_type")
        kind = DRIVER_ID_TYPES.get(slot.id_type)
        if doc["id_name"] is not None:
            if kind is None:
                self.warn(
                    f"{path}.id_name: {slot.id_type} targets are not created by this add-on; left empty"
                )
            else:
                slot.id = self.lookup(kind, doc["id_name"], f"{path}.id_name")
        slot.data_path = doc["data_path"]
        slot.bone_target = doc["bone_target"]
        for key in ("transform_type", "transform_space", "rotation_mode"):
            self.set_enum(slot, key, doc[key], f"{path}.{key}")

    # ---- objects -----------------------------------------------------------------------------

    def object(self, doc: dict, path: str) -> None:
        data = None
        kind = doc["type"]
        if kind == "MESH":
            data = self.mesh(doc["mesh"], f"{path}.mesh") if doc["mesh"] else self.new("meshes", doc["name"])
        elif kind == "ARMATURE":
            data = self.new("armatures", (doc["armature"] or {}).get("name", doc["name"]))
        elif kind == "CAMERA":
            data = self.camera(doc)
        elif kind == "LIGHT":
            data = self.light(doc)
        elif kind != "EMPTY":
            self.warn(f"{path}.type: {kind} objects are not in the scene format's data; made an empty")
        obj = self.new("objects", doc["name"], data)
        self.target_collection(doc["collection"]).objects.link(obj)
        transform = doc["transform"]
        if transform["rotation_mode"] in ROTATION_MODES:
            obj.rotation_mode = transform["rotation_mode"]
        else:
            self.warn(f"{path}.transform.rotation_mode: unknown {transform['rotation_mode']!r}; kept XYZ")
        obj.location = transform["location"]
        obj.rotation_euler = transform["rotation_euler"]
        obj.rotation_quaternion = transform["rotation_quaternion"]
        if transform["rotation_mode"] == "AXIS_ANGLE":  # the format holds it as its quaternion
            axis, angle = Quaternion(transform["rotation_quaternion"]).to_axis_angle()
            obj.rotation_axis_angle = (angle, *axis)
        obj.scale = transform["scale"]
        if doc["material_slots"] and data is not None and hasattr(data, "materials"):
            for name in doc["material_slots"]:
                data.materials.append(None if name is None else self.made["materials"][name])
        elif doc["material_slots"]:
            self.warn(f"{path}.material_slots: a {kind} object has no material slots; ignored")
        for group in doc["vertex_groups"]:
            self.vertex_group(obj, group)
        if kind == "MESH" and doc["mesh"] is not None:
            self.shape_keys(obj, doc["mesh"], f"{path}.mesh")

    def target_collection(self, name: str | None):
        if name is None:
            return self.collection
        made = self.made["collections"].get(name)
        if made is None:
            made = self.new("collections", name)
            self.collection.children.link(made)
        return made

    def mesh(self, doc: dict, path: str):
        mesh = self.new("meshes", doc["name"])
        mesh.from_pydata(doc["vertices"], doc["loose_edges"], doc["faces"], shade_flat=True)
        if doc["face_smooth"] is not None:
            mesh.polygons.foreach_set("use_smooth", doc["face_smooth"])
        if doc["material_indices"] is not None:
            mesh.polygons.foreach_set("material_index", doc["material_indices"])
        for layer_doc in doc["uv_layers"]:
            layer = mesh.uv_layers.new(name=layer_doc["name"], do_init=False)
            layer.data.foreach_set("uv", [c for uv in layer_doc["uvs"] for c in uv])
            if layer_doc["active_render"]:
                layer.active_render = True
        if mesh.validate(clean_customdata=False):
            self.warn(f"{path}: Blender corrected invalid geometry (duplicate faces or edges)")
        if doc["normals"] is not None and not _matches_vertex_normals(mesh, doc["normals"]):
            # Only normals an artist changed become custom normals; computed ones come back by
            # themselves, and custom normals would pin shading for later edits.
            mesh.normals_split_custom_set_from_vertices(doc["normals"])
        mesh.update()
        return mesh

    def shape_keys(self, obj, doc: dict, path: str) -> None:
        blocks = {}
        for key_doc in doc["shape_keys"]:
            block = obj.shape_key_add(name=key_doc["name"], from_mix=False)
            block.data.foreach_set("co", [c for v in key_doc["vertices"] for c in v])
            blocks[key_doc["name"]] = block
        for key_doc in doc["shape_keys"]:
            block = blocks[key_doc["name"]]
            block.slider_min, block.slider_max = key_doc["slider_min"], key_doc["slider_max"]
            block.value, block.mute = key_doc["value"], key_doc["mute"]
            if key_doc["relative_key"] is not None:
                block.relative_key = blocks[key_doc["relative_key"]]
            block.vertex_group = key_doc["vertex_group"] or ""
        if doc["shape_keys"]:
            self.created.append(obj.data.shape_keys)  # owned by the mesh, yet a datablock of its own
            self.animate(obj.data.shape_keys, doc["shape_key_animation"], f"{path}.shape_key_animation")
        elif doc["shape_key_animation"] is not None:
            self.warn(f"{path}.shape_key_animation: the mesh has no shape keys; ignored")

    def vertex_group(self, obj, doc: dict) -> None:
        group = obj.vertex_groups.new(name=doc["name"])
        by_weight: dict[float, list[int]] = {}
        for index, weight in zip(doc["indices"], doc["weights"], strict=True):
            by_weight.setdefault(weight, []).append(index)
        for weight, indices in by_weight.items():
            group.add(indices, weight, "REPLACE")

    def camera(self, doc: dict):
        cam_doc = doc["camera"] or {}
        camera = self.new("cameras", doc["name"])
        for key in ("type", "lens", "ortho_scale", "sensor_width", "clip_start", "clip_end"):
            if key in cam_doc:
                setattr(camera, key, cam_doc[key])
        return camera

    def light(self, doc: dict):
        light_doc = doc["light"] or {"type": "POINT"}
        light = self.new("lights", doc["name"], light_doc["type"])
        for key in ("color", "energy", "spot_size", "spot_blend"):
            if light_doc.get(key) is not None and hasattr(light, key):
                setattr(light, key, light_doc[key])
        if "radius" in light_doc:
            light.shadow_soft_size = light_doc["radius"]
        return light

    def relations(self, doc: dict, path: str, offset: Vector) -> None:
        obj = self.made["objects"][doc["name"]]
        if doc["parent"] is not None:
            obj.parent = self.made["objects"][doc["parent"]]
            obj.parent_type = doc["parent_type"]
            if doc["parent_bone"]:
                obj.parent_bone = doc["parent_bone"]
            if doc["parent_inverse"] is not None:
                values = doc["parent_inverse"]
                obj.matrix_parent_inverse = Matrix([values[r * 4 : r * 4 + 4] for r in range(4)])
        else:
            obj.location = obj.location + offset
        faces = len(doc["mesh"]["faces"]) if doc["mesh"] else 0
        self.modifiers(obj, doc["modifiers"], faces, f"{path}.modifiers")
        for c, cdoc in enumerate(doc["constraints"]):
            self.constraint(obj.constraints, cdoc, f"{path}.constraints[{c}]")
        self.animate(obj, doc["animation"], f"{path}.animation")
        obj.hide_viewport, obj.hide_render = doc["hide_viewport"], doc["hide_render"]

    def bones(self, obj, doc: dict, path: str) -> None:
        view_layer = bpy.context.view_layer
        if view_layer.objects.get(obj.name) is None:
            self.warn(f"{path}.bones: the target collection is not in the view layer; bones skipped")
            return
        previous = view_layer.objects.active
        view_layer.objects.active = obj
        bpy.ops.object.mode_set(mode="EDIT")  # see the module docstring: bones exist only as edit bones
        try:
            edit_bones = {}
            for bone_doc in doc["bones"]:
                bone = obj.data.edit_bones.new(bone_doc["name"])
                bone.head, bone.tail, bone.roll = bone_doc["head"], bone_doc["tail"], bone_doc["roll"]
                bone.use_deform = bone_doc["use_deform"]
                edit_bones[bone_doc["name"]] = bone
            for bone_doc in doc["bones"]:
                if bone_doc["parent"] is not None:
                    bone = edit_bones[bone_doc["name"]]
                    bone.parent = edit_bones[bone_doc["parent"]]
                    bone.use_connect = bone_doc["use_connect"]
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
            view_layer.objects.active = previous
        for j, bone_doc in enumerate(doc["bones"]):
            pose_bone = obj.pose.bones[bone_doc["name"]]
            for c, cdoc in enumerate(bone_doc["constraints"]):
                self.constraint(pose_bone.constraints, cdoc, f"{path}.bones[{j}].constraints[{c}]")

    def uv_maps(self) -> None:
        """Blender's Smart UV Project for each mesh without a UV map, one object at a time so each
        fills its own unit square. Chosen over xatlas on the gateway (benchmarks/uv_unwrap.py, on
        generated meshes: 0.7 against 62 ms a mesh, a third of the area distortion, n-gons kept)."""
        todo = [
            (i, self.made["objects"][o["name"]])
            for i, o in enumerate(self.doc["objects"])
            if o["type"] == "MESH"
            and o["mesh"] is not None
            and o["mesh"]["faces"]
            and not o["mesh"]["uv_layers"]
        ]
        if not todo:
            return
        view_layer = bpy.context.view_layer
        view_layer.update()  # newly linked objects join the view layer on update
        previous, selected = view_layer.objects.active, list(view_layer.objects.selected)
        for obj in selected:  # edit mode takes in every selected mesh: only this one may unwrap
            obj.select_set(False)
        try:
            for i, obj in todo:
                if view_layer.objects.get(obj.name) is None:
                    self.warn(f"objects[{i}].mesh: the target collection is not in the view layer; no UV map")
                    continue
                view_layer.objects.active = obj
                obj.select_set(True)
                bpy.ops.object.mode_set(mode="EDIT")
                try:
                    bpy.ops.mesh.select_all(action="SELECT")
                    bpy.ops.uv.smart_project(angle_limit=UNWRAP_ANGLE_LIMIT, island_margin=UNWRAP_MARGIN)
                finally:
                    bpy.ops.object.mode_set(mode="OBJECT")
                    obj.select_set(False)
        finally:
            view_layer.objects.active = previous
            for obj in selected:
                obj.select_set(True)

    def modifiers(self, obj, modifiers: list[dict], faces: int, path: str) -> None:
        """Add ``modifiers`` to the end of the object's stack; ``faces``: its mesh's face count."""
        known = _enum_items(bpy.types.Modifier, "type")
        for m, mdoc in enumerate(modifiers):
            mpath = f"{path}[{m}]"
            if mdoc["type"] not in known:
                self.warn(f"{mpath}.type: unknown modifier type {mdoc['type']!r}; skipped")
                continue
            modifier = obj.modifiers.new(mdoc["name"], mdoc["type"])
            if modifier is None:  # e.g. a mesh-only modifier on an empty
                self.warn(f"{mpath}.type: a {obj.type} object cannot take a {mdoc['type']} modifier; skipped")
                continue
            params = dict(mdoc["params"])
            if mdoc["type"] == "NODES":
                self.node_modifier_inputs(modifier, params, mpath)
            self.set_properties(modifier, params, f"{mpath}.params")
            modifier.show_viewport, modifier.show_render = mdoc["show_viewport"], mdoc["show_render"]
            faces *= _face_multiplier(modifier)
            if faces > MAX_EVALUATED_FACES and modifier.show_viewport:
                modifier.show_viewport = False
                self.warn(
                    f"{mpath}: the stack would reach about {faces:,} faces; "
                    "hidden in the viewport so Blender stays responsive"
                )

    def node_modifier_inputs(self, modifier, params: dict, path: str) -> None:
        """Geometry-nodes inputs are ID properties keyed by the group's socket identifiers; the
        document holds them as the reader writes them, in ``params["inputs"]``."""
        group_name = params.pop("node_group", None)
        inputs = params.pop("inputs", None) or {}
        group = self.lookup("node_groups", group_name, f"{path}.params.node_group")
        if group is None:
            if inputs:
                self.warn(f"{path}.params.inputs: no node group to take them; skipped")
            return
        modifier.node_group = group
        if not isinstance(inputs, dict):
            self.warn(f"{path}.params.inputs: expected an object keyed by input identifier; skipped")
            return
        ids = self.interface_ids.get(group.name, {})
        for key, value in inputs.items():
            identifier = _node_input_key(key, ids)
            if identifier not in modifier:
                self.warn(f"{path}.params.inputs.{key}: the node group has no input {key!r}; skipped")
                continue
            if isinstance(modifier[identifier], bool) and type(value) is int:
                value = bool(value)  # older files keep the "use attribute" switches as integers
            try:
                modifier[identifier] = value
            except (TypeError, ValueError) as exc:
                self.warn(f"{path}.params.inputs.{key}: {exc}; skipped")

    def constraint(self, constraints, doc: dict, path: str) -> None:
        if doc["type"] not in _enum_items(bpy.types.Constraint, "type"):
            self.warn(f"{path}.type: unknown constraint type {doc['type']!r}; skipped")
            return
        constraint = constraints.new(doc["type"])
        constraint.name = doc["name"]
        constraint.mute, constraint.influence = doc["mute"], doc["influence"]
        self.set_properties(constraint, doc["params"], f"{path}.params")

    # ---- RNA properties from data ---------------------------------------------------------------

    def set_properties(self, target, params: dict, path: str) -> None:
        """Set each parameter that Blender's RNA knows for ``target``; report and skip the rest."""
        rna = target.bl_rna.properties
        for key, value in params.items():
            ppath = f"{path}.{key}"
            prop = rna.get(key)
            if prop is None or key == "rna_type":
                self.warn(f"{ppath}: {target.bl_rna.identifier} has no parameter {key!r}; skipped")
                continue
            if prop.type == "POINTER":
                self.set_pointer(target, key, prop, value, ppath)
            elif prop.type == "COLLECTION":
                self.set_collection(getattr(target, key), value, ppath)
            elif prop.is_readonly:
                continue  # extractors dump read-only state too (is_active, is_valid...)
            else:
                self.set_value(target, key, value, ppath)

    def set_pointer(self, target, key: str, prop, value, path: str) -> None:
        struct = prop.fixed_type
        id_kind = _id_kind(struct)
        if id_kind is not None:
            if prop.is_readonly:
                return
            if value is not None and not isinstance(value, str):
                self.warn(f"{path}: expected the name of a {struct.identifier}; skipped")
                return
            self.set_datablock(target, key, id_kind, value, path)
        elif isinstance(value, dict):
            nested = getattr(target, key)
            if nested is None:
                self.warn(f"{path}: nothing to set; skipped")
            else:
                self.set_properties(nested, value, path)
        else:
            self.warn(f"{path}: a {struct.identifier} is set from an object of its fields; skipped")

    def set_collection(self, items, value, path: str) -> None:
        """Colour-ramp elements and curve points: grow or shrink to the document's, then fill."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.warn(f"{path}: expected a list of records; skipped")
            return
        kind = items.bl_rna.identifier if hasattr(items, "bl_rna") else ""
        if kind == "ColorRampElements":

            def grow():
                return items.new(0.0)
        elif kind == "CurveMapPoints":

            def grow():
                return items.new(0.0, 0.0)
        elif kind == "CurveProfilePoints":

            def grow():
                return items.add(0.0, 0.0)
        elif len(value) != len(items):
            self.warn(f"{path}: {len(value)} entries for {len(items)} fixed items; skipped")
            return
        else:
            grow = None
        if grow is not None:
            while len(items) < len(value):
                grow()
            while len(items) > max(len(value), 1 if kind == "ColorRampElements" else 2):
                items.remove(items[-1])
        for k, (item, item_doc) in enumerate(zip(items, value, strict=False)):
            self.set_properties(item, item_doc, f"{path}[{k}]")

    def set_value(self, target, key: str, value, path: str) -> None:
        prop = target.bl_rna.properties.get(key)
        if prop is not None and prop.type == "ENUM" and prop.is_enum_flag and isinstance(value, list):
            value = set(value)
        elif prop is not None and prop.type == "POINTER":
            kind = _id_kind(prop.fixed_type)
            if kind is None or not (value is None or isinstance(value, str)):
                self.warn(f"{path}: cannot set a {prop.fixed_type.identifier} from data; skipped")
            else:
                self.set_datablock(target, key, kind, value, path)
            return
        elif isinstance(value, list) and value and isinstance(value[0], list):
            # Matrices arrive as rows; a nested sequence would be read column by column.
            value = (
                Matrix(value) if prop is not None and prop.subtype == "MATRIX" else tuple(map(tuple, value))
            )
        elif isinstance(value, list):
            value = tuple(value)
        try:
            setattr(target, key, value)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            self.warn(f"{path}: {exc}; skipped")

    def set_datablock(self, target, key: str, kind: str, name: str | None, path: str) -> None:
        """Point ``target.key`` at the scene's datablock ``name``. Node trees are built before the
        materials and objects they may name (a Set Material or Object Info node): such a reference
        is set once everything exists."""
        if name in self.not_made_yet[kind]:
            self.deferred.append(lambda: self.set_datablock(target, key, kind, name, path))
            return
        try:
            setattr(target, key, self.lookup(kind, name, path))
        except (TypeError, ValueError, AttributeError) as exc:
            self.warn(f"{path}: {exc}; skipped")

    def set_enum(self, target, key: str, value: str, path: str) -> None:
        try:
            setattr(target, key, value)
        except (TypeError, ValueError) as exc:
            self.warn(f"{path}: {exc}; kept {getattr(target, key)!r}")


# ---- helpers --------------------------------------------------------------------------------


def _is_alive(block) -> bool:
    try:
        block.name  # noqa: B018 - raises ReferenceError once Blender freed the datablock
    except ReferenceError:
        return False
    return True


def _socket(sockets, identifier: str):
    return next((s for s in sockets if s.identifier == identifier), None)


def _node_input_key(key: str, ids: dict[str, str]) -> str:
    """The modifier's ID-property key for a document key: the document's socket identifier
    (possibly with an attribute suffix) mapped to the one Blender gave the socket."""
    if key in ids:
        return ids[key]
    for suffix in NODE_INPUT_SUFFIXES:
        if key.endswith(suffix) and key[: -len(suffix)] in ids:
            return ids[key[: -len(suffix)]] + suffix
    return key


def _enum_items(struct, prop: str) -> set[str]:
    return {item.identifier for item in struct.bl_rna.properties[prop].enum_items}


def _id_kind(struct) -> str | None:
    """The document map a pointer of this RNA type resolves in, or None for non-ID structs."""
    while struct is not None:
        if struct.identifier in ID_TYPES:
            return ID_TYPES[struct.identifier]
        struct = struct.base
    return None


def _matches_vertex_normals(mesh, normals: list, tolerance: float = 1e-4) -> bool:
    computed = [0.0] * (len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("normal", computed)
    flat = [c for n in normals for c in n]
    return all(abs(a - b) <= tolerance for a, b in zip(computed, flat, strict=True))


def _face_multiplier(modifier) -> int:
    """How many times a modifier can multiply the face count, for the stays-responsive guard."""
    kind = modifier.type
    if kind == "SUBSURF" or kind == "MULTIRES":
        return 4 ** max(getattr(modifier, "levels", 0), getattr(modifier, "render_levels", 0))
    if kind == "ARRAY":
        return max(1, modifier.count) if modifier.fit_type == "FIXED_COUNT" else 1
    if kind == "MIRROR":
        return 2 ** sum(modifier.use_axis)
    if kind == "SCREW":
        return max(1, modifier.steps, modifier.render_steps)
    return 1
