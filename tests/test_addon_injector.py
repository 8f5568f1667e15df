"""The add-on's injector with real bpy 5.0.1: every field it writes reads back equal; names are
de-duplicated the Blender way; anything it refuses or fails on leaves the file unchanged."""

from __future__ import annotations

import bpy
import pytest

from addon.injector import InjectionError, _Injector, apply_to_object, inject_scene
from addon.validate import SceneValidationError
from shared.scene import Limits, parse_scene
from tests.addon_support import PYRAMID_FACES, PYRAMID_VERTICES, data_counts, reset_blender, rich_scene

APPROX = {"abs": 1e-5}


@pytest.fixture(autouse=True)
def empty_file():
    reset_blender()
    yield
    reset_blender()


@pytest.fixture
def rich():
    assert parse_scene(rich_scene(), Limits())  # the fixture itself is a valid document of the format
    result = inject_scene(rich_scene(), apply_scene_settings=True)
    return result, {obj.name: obj for obj in result.objects}


def flat(values):
    return [c for v in values for c in v]


def approx_list(values):
    return pytest.approx([float(v) for v in values], **APPROX)


def fcurves_of(anim):
    """The F-curves of an animation's action: a slot's channelbag in layered actions (4.4+),
    action.fcurves in legacy ones (these tests also pass with bpy 4.2.0)."""
    if not hasattr(anim, "action_slot"):
        return {(fc.data_path, fc.array_index): fc for fc in anim.action.fcurves}
    strip = anim.action.layers[0].strips[0]
    return {(fc.data_path, fc.array_index): fc for fc in strip.channelbag(anim.action_slot).fcurves}


def slot_type(owner) -> str | None:
    """The ID type an action slot is for; None where Blender has no slots (before 4.4)."""
    return owner.action_slot.target_id_type if hasattr(owner, "action_slot") else None


# What the injector reports for rich_scene(): each deliberately invalid part, nothing else.
RICH_WARNINGS = [
    "materials[1].node_tree.nodes[4].properties.made_up_property: ShaderNodeTexImage has no parameter "
    "'made_up_property'; skipped",
    "materials[1].node_tree.nodes[8].type: unknown node type 'ShaderNodeDoesNotExist'; node skipped",
    "materials[1].node_tree.links[6]: joins a skipped node; link skipped",
    "objects[1].modifiers[5].type: unknown modifier type 'NOT_A_MODIFIER'; skipped",
    "objects[1].modifiers[6].params.no_such_param: DisplaceModifier has no parameter 'no_such_param'; skipped",
]


def test_warnings_name_each_skipped_part(rich):
    result, _ = rich
    assert result.warnings == RICH_WARNINGS


def test_mesh_reads_back(rich):
    _, objs = rich
    mesh = objs["Body"].data
    assert mesh.name == "BodyMesh"
    co = [0.0] * (len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    assert co == approx_list(flat(PYRAMID_VERTICES))
    assert [list(p.vertices) for p in mesh.polygons] == PYRAMID_FACES  # the pentagon stays one n-gon
    assert [sorted(e.vertices) for e in mesh.edges if e.is_loose] == [[6, 7]]
    assert [p.use_smooth for p in mesh.polygons] == [False, True, True, True, True, True]
    assert [p.material_index for p in mesh.polygons] == [0, 1, 1, 1, 1, 1]
    assert [m.name for m in mesh.materials] == ["Wood", "Red"]
    doc_layers = rich_scene()["objects"][1]["mesh"]["uv_layers"]
    assert [layer.name for layer in mesh.uv_layers] == ["UVMap", "Second"]
    for layer, doc in zip(mesh.uv_layers, doc_layers, strict=True):
        uv = [0.0] * (len(layer.data) * 2)
        layer.data.foreach_get("uv", uv)
        assert uv == approx_list(flat(doc["uvs"]))
    assert mesh.uv_layers["Second"].active_render and not mesh.uv_layers["UVMap"].active_render
    # Document normals differ from the computed ones, so they became custom normals.
    assert mesh.has_custom_normals
    # Blender stores custom normals compressed (about 1e-4 precision).
    assert [tuple(n.vector) for n in mesh.corner_normals] == [pytest.approx((0.0, 0.0, 1.0), abs=1e-3)] * len(
        mesh.loops
    )


def test_computed_normals_do_not_become_custom_normals():
    doc = rich_scene()
    body = doc["objects"][1]
    body["mesh"]["normals"] = None
    injected = inject_scene(doc).objects[1]
    normals = [list(v.normal) for v in injected.data.vertices]
    reset_blender()
    body["mesh"]["normals"] = normals
    assert not inject_scene(doc).objects[1].data.has_custom_normals


def test_shape_keys_and_vertex_groups_read_back(rich):
    _, objs = rich
    body = objs["Body"]
    doc = rich_scene()["objects"][1]["mesh"]["shape_keys"]
    blocks = body.data.shape_keys.key_blocks
    assert blocks.keys() == ["Basis", "Tall", "Squash"]
    for block, key in zip(blocks, doc, strict=True):
        co = [0.0] * (len(block.data) * 3)
        block.data.foreach_get("co", co)
        assert co == approx_list(flat(key["vertices"]))
    tall, squash = blocks["Tall"], blocks["Squash"]
    assert (tall.value, tall.slider_max, tall.vertex_group, tall.relative_key.name) == (
        pytest.approx(0.4),
        2.0,
        "apex",
        "Basis",
    )
    assert (squash.mute, squash.slider_min, squash.relative_key.name) == (True, -1.0, "Basis")
    weights = {g.name: {} for g in body.vertex_groups}
    for vertex in body.data.vertices:
        for g in vertex.groups:
            weights[body.vertex_groups[g.group].name][vertex.index] = g.weight
    assert weights == {"apex": {5: 1.0}, "base": {0: 0.5, 1: 0.5, 2: 0.25, 3: 0.25, 4: 0.125}}


def test_node_material_reads_back(rich):
    wood = bpy.data.materials["Wood"]
    tree = wood.node_tree
    nodes = tree.nodes
    assert sorted(n.name for n in nodes) == sorted(
        ["Frame", "Value", "Group", "Ramp", "Image", "Mix", "Principled BSDF", "Material Output"]
    )
    assert nodes["Frame"].label == "Inputs" and nodes["Value"].parent == nodes["Frame"]
    assert tuple(nodes["Value"].location) == pytest.approx((20, -40))
    assert tuple(nodes["Ramp"].location) == pytest.approx((-500, 0))
    assert nodes["Value"].outputs["Value"].default_value == pytest.approx(0.25)
    group = nodes["Group"]
    assert group.node_tree == bpy.data.node_groups["Grain"]
    assert group.inputs[0].default_value == pytest.approx(0.75)  # set through document identifier Amount_In
    ramp = nodes["Ramp"].color_ramp
    assert ramp.interpolation == "EASE"
    assert [e.position for e in ramp.elements] == approx_list([0.1, 0.6, 0.9])
    assert [tuple(e.color) for e in ramp.elements] == [(1, 0, 0, 1), (0, 0, 1, 1), (0, 1, 0, 1)]
    assert nodes["Image"].image == bpy.data.images["wood.png"] and nodes["Image"].interpolation == "Closest"
    mix = nodes["Mix"]
    assert (mix.data_type, mix.blend_type) == ("RGBA", "MULTIPLY")
    assert next(s for s in mix.inputs if s.identifier == "Factor_Float").default_value == pytest.approx(0.35)
    bsdf = nodes["Principled BSDF"]
    assert bsdf.inputs["Roughness"].default_value == pytest.approx(0.7)
    assert bsdf.inputs["Coat Weight"].hide and bsdf.inputs["Coat Weight"].default_value == pytest.approx(0.2)
    links = {
        (lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier, lk.is_muted)
        for lk in tree.links
    }
    fac_out = bpy.data.node_groups["Grain"].interface.items_tree["Fac"].identifier
    assert links == {
        ("Group", fac_out, "Ramp", "Fac", False),
        ("Ramp", "Color", "Mix", "A_Color", False),
        ("Image", "Color", "Mix", "B_Color", False),
        ("Mix", "Result_Color", "Principled BSDF", "Base Color", False),
        ("Value", "Value", "Principled BSDF", "Metallic", True),
        ("Principled BSDF", "BSDF", "Material Output", "Surface", False),
    }


def test_nested_node_groups_and_interfaces_read_back(rich):
    grain, scale = bpy.data.node_groups["Grain"], bpy.data.node_groups["Scale"]
    items = {i.name: i for i in grain.interface.items_tree}  # Blender lists outputs first
    assert {(i.name, i.in_out, i.socket_type) for i in items.values()} == {
        ("Amount", "INPUT", "NodeSocketFloat"),
        ("Fac", "OUTPUT", "NodeSocketFloat"),
    }
    amount = items["Amount"]
    assert (amount.default_value, amount.min_value, amount.max_value) == (0.5, 0.0, 2.0)
    inner = grain.nodes["Inner"]
    assert inner.node_tree == scale and inner.inputs[0].default_value == pytest.approx(3.0)
    assert {(lk.from_node.name, lk.to_node.name) for lk in grain.links} == {
        ("Group Input", "Inner"),
        ("Inner", "Group Output"),
    }
    multiply = scale.nodes["Multiply"]
    assert (multiply.operation, multiply.use_clamp) == ("MULTIPLY", True)
    assert multiply.inputs[1].default_value == pytest.approx(0.5)
    assert len(scale.links) == 2 and all(lk.is_valid for lk in scale.links)


def test_pbr_material_becomes_a_principled_bsdf(rich):
    red = bpy.data.materials["Red"]
    assert tuple(red.diffuse_color) == (1, 0, 0, 1)
    assert red.use_backface_culling and red.blend_method == "BLEND"
    bsdf = red.node_tree.nodes["Principled BSDF"]
    expected = {
        "Base Color": (1, 0, 0, 1),
        "Metallic": 0.3,
        "Roughness": 0.2,
        "Specular IOR Level": 0.6,
        "IOR": 1.45,
        "Alpha": 0.9,
        "Emission Color": (0, 0.2, 0, 1),
        "Emission Strength": 1.5,
        "Transmission Weight": 0.1,
    }
    for name, value in expected.items():
        got = bsdf.inputs[name].default_value
        assert (tuple(got) if isinstance(value, tuple) else got) == pytest.approx(value, **APPROX), name
    normal_map = red.node_tree.nodes["Normal Map"]
    assert normal_map.inputs["Strength"].default_value == pytest.approx(0.8)
    assert bsdf.inputs["Normal"].links[0].from_node == normal_map
    image_node = normal_map.inputs["Color"].links[0].from_node
    assert image_node.image == bpy.data.images["bump.png"]
    assert image_node.inputs["Vector"].links[0].from_node.uv_map == "UVMap"
    surface = red.node_tree.nodes["Material Output"].inputs["Surface"].links[0]
    assert surface.from_node == bsdf


def test_images_are_placeholders_that_open_no_file(rich):
    wood, bump = bpy.data.images["wood.png"], bpy.data.images["bump.png"]
    assert tuple(wood.size) == (64, 32) and wood.source == "GENERATED" and wood.filepath == ""
    assert wood["bmt_source_filepath"] == "//textures/wood.png"
    assert bump.colorspace_settings.name == "Non-Color"


def test_modifiers_read_back_and_resolve_object_references(rich):
    _, objs = rich
    body = objs["Body"]
    mods = body.modifiers
    assert [(m.name, m.type) for m in mods] == [
        ("Subdivision", "SUBSURF"),
        ("Bevel", "BEVEL"),
        ("Mirror", "MIRROR"),
        ("Array", "ARRAY"),
        ("Lift", "NODES"),
        ("Displace", "DISPLACE"),
    ]
    assert (mods["Subdivision"].levels, mods["Subdivision"].render_levels, mods["Subdivision"].quality) == (
        2,
        3,
        4,
    )
    bevel = mods["Bevel"]
    assert (bevel.width, bevel.segments, bevel.limit_method) == (pytest.approx(0.05), 3, "ANGLE")
    assert bevel.angle_limit == pytest.approx(0.6) and not bevel.show_render and bevel.show_viewport
    mirror = mods["Mirror"]
    assert tuple(mirror.use_axis) == (True, False, True) and tuple(mirror.use_bisect_axis) == (
        False,
        True,
        False,
    )
    assert mirror.mirror_object == objs["Target"]
    array = mods["Array"]
    assert (array.count, array.use_object_offset, array.offset_object) == (3, True, objs["Target"])
    assert tuple(array.relative_offset_displace) == pytest.approx((1.5, 0, 0)) and not array.show_viewport
    lift = mods["Lift"]
    height_id = bpy.data.node_groups["Lift"].interface.items_tree["Height"].identifier
    assert lift.node_group == bpy.data.node_groups["Lift"] and lift[height_id] == pytest.approx(2.5)
    assert mods["Displace"].strength == pytest.approx(0.3)


def test_constraints_bones_and_parents_read_back(rich):
    _, objs = rich
    body, rig, child = objs["Body"], objs["Rig"], objs["Child"]
    follow, aim = body.constraints
    assert (follow.name, follow.type, follow.mute, follow.influence) == ("Follow", "COPY_LOCATION", True, 0.5)
    assert follow.target == objs["Target"] and not follow.use_y and follow.use_x
    assert (aim.type, aim.target, aim.track_axis, aim.up_axis) == (
        "TRACK_TO",
        objs["Target"],
        "TRACK_NEGATIVE_Z",
        "UP_Y",
    )
    bones = rig.data.bones
    assert bones.keys() == ["root", "tip"]
    tip = bones["tip"]
    assert tuple(tip.head_local) == pytest.approx((0, 0, 1)) and tuple(tip.tail_local) == pytest.approx(
        (0, 0.5, 2)
    )
    assert tip.parent == bones["root"] and tip.use_connect and not tip.use_deform and bones["root"].use_deform
    limit = rig.pose.bones["tip"].constraints["Limit"]
    assert (limit.type, limit.use_limit_x, limit.max_x, limit.influence) == (
        "LIMIT_ROTATION",
        True,
        pytest.approx(0.5),
        pytest.approx(0.8),
    )
    assert body.parent == rig and body.parent_type == "OBJECT"
    assert flat(body.matrix_parent_inverse) == approx_list(rich_scene()["objects"][1]["parent_inverse"])
    assert (child.parent, child.parent_type, child.parent_bone) == (rig, "BONE", "tip")
    assert child.hide_viewport and not child.hide_render


def test_edit_bone_roll_reads_back(rich):
    _, objs = rich
    rig = objs["Rig"]
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        assert rig.data.edit_bones["tip"].roll == pytest.approx(0.25, **APPROX)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")


def test_transforms_cameras_lights_collections_and_scene_settings_read_back(rich):
    _, objs = rich
    body, target = objs["Body"], objs["Target"]
    assert body.rotation_mode == "QUATERNION"
    assert tuple(body.rotation_quaternion) == pytest.approx((0.9238795, 0, 0, 0.3826834), **APPROX)
    assert tuple(body.location) == (1, 2, 3) and tuple(body.scale) == (1, 1.5, 2)
    assert target.rotation_mode == "ZXY" and tuple(target.rotation_euler) == pytest.approx((0.1, 0.2, 0.3))
    assert target.type == "EMPTY" and target.hide_render
    parts = bpy.data.collections["Generated Parts"]
    assert list(parts.objects) == [target] and parts in list(bpy.context.scene.collection.children)
    cam = objs["Cam"].data
    assert (cam.type, cam.lens, cam.ortho_scale, cam.sensor_width) == ("ORTHO", 35, 8, 32)
    assert (cam.clip_start, cam.clip_end) == (pytest.approx(0.01), 500)
    lamp = objs["Lamp"].data
    assert (lamp.type, lamp.energy, lamp.shadow_soft_size) == ("SPOT", 500, pytest.approx(0.2))
    assert tuple(lamp.color) == pytest.approx((1, 0.9, 0.8)) and lamp.spot_size == pytest.approx(0.8)
    assert lamp.spot_blend == pytest.approx(0.3)
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end, scene.render.fps / scene.render.fps_base) == (5, 60, 30)


def test_keyframes_read_back_with_interpolation_and_handles(rich):
    _, objs = rich
    anim = objs["Body"].animation_data
    action = anim.action
    assert action.name == "BodyAction" and slot_type(anim) in ("OBJECT", None)
    assert action.use_frame_range and tuple(action.frame_range) == (1, 48)
    curves = fcurves_of(anim)
    loc_x = curves[("location", 0)]
    assert (loc_x.group.name, loc_x.extrapolation) == ("Object Transforms", "LINEAR")
    points = loc_x.keyframe_points
    assert [tuple(p.co) for p in points] == [(1, 0), (24, 3), (48, 1)]
    assert [p.interpolation for p in points] == ["BEZIER", "BACK", "CONSTANT"]
    assert [p.easing for p in points] == ["AUTO", "EASE_IN", "AUTO"]
    assert [(p.handle_left_type, p.handle_right_type) for p in points[:2]] == [
        ("FREE", "FREE"),
        ("ALIGNED", "ALIGNED"),
    ]
    assert [tuple(p.handle_left) for p in points[:2]] == [(-4, -1), (18, 3)]
    assert [tuple(p.handle_right) for p in points[:2]] == [(6, 1), (30, 3)]
    noise = loc_x.modifiers[0]
    assert (noise.type, noise.strength, noise.scale) == ("NOISE", 0.5, 2.0)
    quat = curves[("rotation_quaternion", 3)]
    assert [tuple(p.co) for p in quat.keyframe_points] == [(1, 0), pytest.approx((48, 0.38))]
    key = objs["Body"].data.shape_keys
    key_anim = key.animation_data
    assert key_anim.action.name == "KeyAction" and slot_type(key_anim) in ("KEY", None)
    squash = fcurves_of(key_anim)[('key_blocks["Squash"].value', 0)]
    assert [(p.interpolation, p.easing) for p in squash.keyframe_points] == [("SINE", "EASE_IN_OUT")] * 2
    bpy.context.scene.frame_set(20)  # the layered action really drives the shape key
    assert key.key_blocks["Squash"].value == pytest.approx(1.0)


def test_drivers_keep_their_expression_as_text_and_nla_reads_back(rich):
    _, objs = rich
    anim = objs["Body"].animation_data
    drivers = {(d.data_path, d.array_index): d for d in anim.drivers}
    loc_y = drivers[("location", 1)]
    driver = loc_y.driver
    assert (driver.type, driver.expression, driver.use_self) == ("SCRIPTED", "var * 2 + turn", False)
    var, turn = driver.variables
    assert (var.name, var.type, var.targets[0].id_type, var.targets[0].id, var.targets[0].data_path) == (
        "var",
        "SINGLE_PROP",
        "OBJECT",
        objs["Target"],
        "location.x",
    )
    target = turn.targets[0]
    assert (turn.type, target.id, target.transform_type, target.transform_space, target.rotation_mode) == (
        "TRANSFORMS",
        objs["Rig"],
        "ROT_Z",
        "LOCAL_SPACE",
        "XYZ",
    )
    assert [tuple(p.co) for p in loc_y.keyframe_points] == [(0, 0), (10, 5)]
    assert [p.interpolation for p in loc_y.keyframe_points] == ["LINEAR", "LINEAR"]
    average = drivers[("hide_render", 0)]
    assert average.driver.type == "AVERAGE" and len(average.keyframe_points) == 0
    assert not bpy.context.preferences.filepaths.use_scripts_auto_execute
    assert len(bpy.data.texts) == 0
    track = anim.nla_tracks[0]
    assert (track.name, track.mute) == ("Layer", True)
    strip = track.strips[0]
    assert (strip.name, strip.action.name, strip.blend_type, strip.extrapolation) == (
        "wave",
        "Wave",
        "ADD",
        "NOTHING",
    )
    assert (strip.frame_start, strip.repeat, strip.influence, strip.use_animated_influence) == (
        10,
        2,
        0.5,
        True,
    )
    assert slot_type(strip) in ("OBJECT", None)


def test_names_are_deduplicated_and_references_stay_inside_the_injected_scene():
    first = inject_scene(rich_scene())
    second = inject_scene(rich_scene())
    assert [o.name for o in second.objects] == [
        "Rig.001",
        "Body.001",
        "Target.001",
        "Cam.001",
        "Lamp.001",
        "Child.001",
    ]
    body = second.objects[1]
    assert body.data.name == "BodyMesh.001"
    assert [m.name for m in body.data.materials] == ["Wood.001", "Red.001"]
    assert body.modifiers["Mirror"].mirror_object.name == "Target.001"
    assert body.animation_data.action.name == "BodyAction.001"
    assert body.animation_data.drivers[0].driver.variables[0].targets[0].id.name == "Target.001"
    wood = bpy.data.materials["Wood.001"].node_tree
    assert wood.nodes["Group"].node_tree.name == "Grain.001"
    assert wood.nodes["Image"].image.name == "wood.png.001"
    assert second.names["objects"]["Body"] == "Body.001" and first.names["objects"]["Body"] == "Body"


def test_root_objects_move_to_the_offset_and_children_keep_their_place():
    result = inject_scene(rich_scene(), offset=(10.0, -2.0, 0.5))
    objs = {o.name: o for o in result.objects}
    assert tuple(objs["Rig"].location) == (10, -2, 0.5)
    assert tuple(objs["Target"].location) == (13, -2, 0.5)
    assert tuple(objs["Body"].location) == (1, 2, 3)  # parented: relative to the rig


def test_failure_during_creation_removes_everything_made(monkeypatch):
    before = data_counts()

    def explode(self, doc, path, offset):
        raise RuntimeError("simulated failure after most datablocks exist")

    # Every failure the validator can foresee is refused before creation; to prove the clean-up,
    # a failure is injected at the last stage, once meshes, shape keys, bones and actions exist.
    monkeypatch.setattr(_Injector, "relations", explode)
    with pytest.raises(InjectionError, match="simulated failure .* nothing was added"):
        inject_scene(rich_scene())
    assert data_counts() == before
    assert bpy.context.mode == "OBJECT"


def test_failure_in_edit_mode_leaves_object_mode_and_no_data(monkeypatch):
    before = data_counts()

    def fail_in_edit_mode(self, obj, doc, path):
        bpy.context.view_layer.objects.active = obj
        bpy.ops.object.mode_set(mode="EDIT")
        raise RuntimeError("simulated failure while editing bones")

    monkeypatch.setattr(_Injector, "bones", fail_in_edit_mode)
    with pytest.raises(InjectionError, match="simulated failure while editing bones"):
        inject_scene(rich_scene())
    assert bpy.context.mode == "OBJECT"
    assert data_counts() == before


def test_refused_documents_create_nothing():
    before = data_counts()
    doc = rich_scene()
    doc["objects"][1]["mesh"]["faces"][0] = [0, 1, 99]
    with pytest.raises(
        SceneValidationError, match=r"objects\[1\].mesh.faces\[0\]: vertex index 99 out of range"
    ):
        inject_scene(doc)
    assert data_counts() == before


def test_keyframes_out_of_order_keep_their_own_handles():
    doc = rich_scene()
    curve = doc["actions"][0]["fcurves"][0]
    curve["keyframes"].reverse()
    anim = inject_scene(doc).objects[1].animation_data
    points = fcurves_of(anim)[("location", 0)].keyframe_points
    assert [tuple(p.co) for p in points] == [(1, 0), (24, 3), (48, 1)]
    assert [tuple(p.handle_right) for p in points[:2]] == [(6, 1), (30, 3)]
    assert [p.interpolation for p in points] == ["BEZIER", "BACK", "CONSTANT"]


def test_references_never_reach_the_users_own_datablocks():
    outsider = bpy.data.objects.new("Outsider", None)
    bpy.context.scene.collection.objects.link(outsider)
    doc = rich_scene()
    body = doc["objects"][1]
    body["modifiers"][2]["params"]["mirror_object"] = "Outsider"
    body["animation"]["drivers"][0]["variables"][0]["targets"][0]["id_name"] = "Outsider"
    result = inject_scene(doc)
    injected = result.objects[1]
    assert injected.modifiers["Mirror"].mirror_object is None
    assert injected.animation_data.drivers[0].driver.variables[0].targets[0].id is None
    assert (
        "objects[1].modifiers[2].params.mirror_object: no Object named 'Outsider' in this scene; left empty"
        in (result.warnings)
    )
    assert (
        "objects[1].animation.drivers[0].variables[0].targets.id_name: no Object named 'Outsider' in this scene; "
        "left empty" in result.warnings
    )


def test_unknown_node_tree_type_is_reported_and_the_rest_is_made():
    doc = rich_scene()
    doc["node_groups"][0]["type"] = "NodeTreeUndefined"  # how a group of a missing library reads
    result = inject_scene(doc)
    assert "node_groups[0].type: unknown node tree type 'NodeTreeUndefined'; group skipped" in result.warnings
    assert (
        "materials[1].node_tree.nodes[2].node_tree: no NodeTree named 'Grain' in this scene; left empty"
        in (result.warnings)
    )
    assert bpy.data.materials["Wood"].node_tree.nodes["Group"].node_tree is None
    assert "Grain" not in bpy.data.node_groups and "Scale" in bpy.data.node_groups


def test_node_trees_may_name_materials_and_objects_made_after_them():
    doc = rich_scene()
    lift = doc["node_groups"][2]
    lift["nodes"] += [
        {
            "name": "Paint",
            "type": "GeometryNodeSetMaterial",
            "inputs": [{"identifier": "Material", "default": "Red"}],
        },
        {
            "name": "Info",
            "type": "GeometryNodeObjectInfo",
            "inputs": [{"identifier": "Object", "default": "Target"}],
        },
    ]
    result = inject_scene(doc)
    nodes = bpy.data.node_groups["Lift"].nodes
    assert nodes["Paint"].inputs["Material"].default_value == bpy.data.materials["Red"]
    assert nodes["Info"].inputs["Object"].default_value == result.objects[2]
    assert result.warnings == RICH_WARNINGS


def test_geometry_node_inputs_take_integer_switches_and_integer_bounds():
    doc = rich_scene()
    lift = doc["node_groups"][2]
    lift["interface"].append(
        {
            "name": "Count",
            "identifier": "Input_Count",
            "in_out": "INPUT",
            "socket_type": "NodeSocketInt",
            "min_value": 1.0,
            "max_value": 8.0,
        }
    )
    doc["objects"][1]["modifiers"][4]["params"]["inputs"] |= {
        "Input_Height_use_attribute": 1,
        "Input_Count": 3,
    }
    result = inject_scene(doc)
    group = bpy.data.node_groups["Lift"]
    count = group.interface.items_tree["Count"]
    assert (count.min_value, count.max_value) == (1, 8)
    modifier = result.objects[1].modifiers["Lift"]
    height_id = group.interface.items_tree["Height"].identifier
    assert modifier[f"{height_id}_use_attribute"] is True and modifier[count.identifier] == 3
    assert result.warnings == RICH_WARNINGS


def test_handles_given_with_a_cycles_modifier_are_kept():
    doc = rich_scene()
    curve = doc["actions"][1]["fcurves"][0]  # Wave: two automatic-handle keys
    curve["modifiers"] = [{"type": "CYCLES"}]
    curve["keyframes"] = [
        {"co": [1, 1.0], "handle_left": [-2, 0.9], "handle_right": [4, 1.1]},
        {"co": [11, 1.5], "handle_left": [8, 1.4], "handle_right": [14, 1.6]},
    ]
    inject_scene(doc)
    action = bpy.data.actions["Wave"]
    points = action.layers[0].strips[0].channelbag(action.slots[0]).fcurves[0].keyframe_points
    assert [tuple(p.handle_left) for p in points] == [(-2, pytest.approx(0.9)), (8, pytest.approx(1.4))]
    assert [tuple(p.handle_right) for p in points] == [(4, pytest.approx(1.1)), (14, pytest.approx(1.6))]


def test_axis_angle_rotation_is_set_from_its_quaternion():
    doc = rich_scene()
    doc["objects"][2]["transform"] |= {
        "rotation_mode": "AXIS_ANGLE",
        "rotation_quaternion": [0.9238795, 0, 0, 0.3826834],
    }
    target = inject_scene(doc).objects[2]
    assert tuple(target.rotation_axis_angle) == pytest.approx((0.785398, 0.0, 0.0, 1.0), abs=1e-5)


def test_scene_settings_include_the_scene_name():
    inject_scene(rich_scene(), apply_scene_settings=True)
    assert bpy.context.scene.name == "Rich"


def test_matrix_parameters_are_set_row_by_row():
    doc = rich_scene()
    rows = [[1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 1, 4], [0, 0, 0, 1]]
    doc["objects"][2]["constraints"] = [
        {"name": "Hold", "type": "CHILD_OF", "params": {"target": "Cam", "inverse_matrix": rows}}
    ]
    result = inject_scene(doc)
    constraint = result.objects[2].constraints["Hold"]
    assert [list(row) for row in constraint.inverse_matrix] == rows
    assert result.warnings == RICH_WARNINGS


def uv_area_per_face(mesh) -> list[float]:
    uvs = mesh.uv_layers.active.data
    areas = []
    for polygon in mesh.polygons:
        corners = [uvs[i].uv for i in polygon.loop_indices]
        twice = sum(
            (corners[k] - corners[0]).cross(corners[k + 1] - corners[0]) for k in range(1, len(corners) - 1)
        )
        areas.append(abs(twice) / 2)
    return areas


def test_generated_meshes_get_a_uv_map_covering_every_face():
    """What the add-on's Insert asks for: each mesh without a UV map is unwrapped, in its own unit
    square; the user's own selected mesh is neither unwrapped nor deselected."""
    user_mesh = bpy.data.meshes.new("Mine")
    user_mesh.from_pydata([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [], [[0, 1, 2]])
    mine = bpy.data.objects.new("Mine", user_mesh)
    bpy.context.scene.collection.objects.link(mine)
    mine.select_set(True)
    bpy.context.view_layer.objects.active = mine
    document = rich_scene()  # Body has two UV maps of its own; ChildMesh has none
    document["objects"].append(
        {
            "name": "Generated",
            "mesh": {"name": "Generated", "vertices": PYRAMID_VERTICES, "faces": PYRAMID_FACES},
        }
    )
    result = inject_scene(document, add_uv_maps=True)
    made = {obj.name: obj for obj in result.objects}
    for name in ("Generated", "Child"):
        mesh = made[name].data
        assert [layer.name for layer in mesh.uv_layers] == ["UVMap"]
        areas = uv_area_per_face(mesh)
        assert len(areas) == len(mesh.polygons) and min(areas) > 0  # every face has its own UV area
        uv = [c for loop in mesh.uv_layers.active.data for c in loop.uv]
        assert min(uv) >= 0.0 and max(uv) <= 1.0
    assert [layer.name for layer in made["Body"].data.uv_layers] == ["UVMap", "Second"]  # kept as sent
    assert len(user_mesh.uv_layers) == 0
    assert mine.select_get() and bpy.context.view_layer.objects.active == mine
    assert not made["Generated"].select_get() and bpy.context.mode == "OBJECT"


def test_without_add_uv_maps_a_mesh_stays_as_the_document_says():
    """Round trips: a corpus mesh without UVs comes back without UVs."""
    document = {
        "schema_version": "1.0",
        "objects": [
            {"name": "Plain", "mesh": {"name": "Plain", "vertices": PYRAMID_VERTICES, "faces": PYRAMID_FACES}}
        ],
    }
    assert len(inject_scene(document).objects[0].data.uv_layers) == 0


def dressing() -> dict:
    return {
        "schema_version": "1.0",
        "objects": [
            {
                "name": "Anything",
                "material_slots": ["Paint"],
                "modifiers": [{"name": "Bevel", "type": "BEVEL", "params": {"width": 0.1}}],
                "animation": {"action": "Spin"},
            }
        ],
        "materials": [{"name": "Paint", "pbr": {"base_color": [0, 0, 1, 1]}}],
        "actions": [
            {
                "name": "Spin",
                "fcurves": [
                    {
                        "data_path": "rotation_euler",
                        "index": 2,
                        "keyframes": [{"co": [1, 0]}, {"co": [20, 3]}],
                    }
                ],
            }
        ],
    }


def users_object():
    mesh = bpy.data.meshes.new("Yours")
    mesh.from_pydata([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [], [[0, 1, 2]])
    mesh.materials.append(bpy.data.materials.new("Old"))
    obj = bpy.data.objects.new("Yours", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.modifiers.new("Keep", "SUBSURF")
    return obj


def test_apply_to_object_dresses_only_the_parts_asked_for():
    obj = users_object()
    result = apply_to_object(dressing(), obj, parts=("materials", "animation"))
    assert result.objects == [obj] and result.warnings == []
    assert [m.name for m in obj.data.materials] == ["Paint"]
    assert [m.name for m in obj.modifiers] == ["Keep"]  # modifiers were not asked for
    assert obj.animation_data.action.name == "Spin"
    assert len(obj.data.vertices) == 3  # the geometry stays the user's
    apply_to_object(dressing(), obj, parts=("modifiers",))
    assert [m.name for m in obj.modifiers] == ["Keep", "Bevel"]


def test_a_failed_apply_restores_the_object_and_removes_what_it_made(monkeypatch):
    obj = users_object()
    before = data_counts()

    def explode(self, target, doc, path):
        raise RuntimeError("simulated failure after materials and modifiers were applied")

    # Nothing the validator lets through fails here; the failure is injected at the last step.
    monkeypatch.setattr(_Injector, "animate", explode)
    with pytest.raises(InjectionError, match="simulated failure .* nothing was changed"):
        apply_to_object(dressing(), obj)
    assert data_counts() == before
    assert [m.name for m in obj.data.materials] == ["Old"] and [m.name for m in obj.modifiers] == ["Keep"]
    assert obj.animation_data is None
