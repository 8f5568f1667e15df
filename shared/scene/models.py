"""The scene format: the one contract between extractor, datasets, models, gateway and add-on.

A document is plain JSON. Datablocks that Blender shares between users (materials, node groups,
actions, images) live once at scene level and are referenced by name; meshes are stored inline on
their object because every consumer (geometry training, the injector) wants them there.

Conventions, matching Blender:
- coordinates are in Blender units, Z up, right-handed;
- faces are n-gons as authored, each a list of vertex indices in winding order;
- per-corner ("loop") data such as UVs follows the faces in order, so its length is the sum of the
  face sizes;
- node links name sockets by their identifier (unique per node side), never by display name;
- matrices are 4x4, row-major.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

SCHEMA_VERSION = "1.0"
SUPPORTED_SCHEMA_VERSIONS = frozenset({"1.0"})

Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]
Vec4 = tuple[float, float, float, float]
Matrix4 = Annotated[list[float], Field(min_length=16, max_length=16, description="4x4, row-major")]
Name = Annotated[str, Field(min_length=1, max_length=255)]

# A property value as Blender RNA exposes it: numbers, strings, enums, vectors, colours, matrices,
# references to other datablocks by name, and small nested records (curve mappings, colour ramps).
ParamValue = TypeAliasType(
    "ParamValue",
    "bool | int | float | str | None | list[ParamValue] | dict[str, ParamValue]",  # type: ignore[misc]
)


class SceneModel(BaseModel):
    """Base for every record: unknown fields and NaN/infinity are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=False)


# ---- meshes ---------------------------------------------------------------------------------


class UVLayer(SceneModel):
    name: Name
    uvs: list[Vec2] = Field(description="One (u, v) per face corner, in face order.")
    active_render: bool = False


class ShapeKey(SceneModel):
    name: Name
    vertices: list[Vec3] = Field(description="Absolute positions, one per mesh vertex.")
    value: float = 0.0
    relative_key: str | None = Field(None, description="Name of the key this one is relative to.")
    slider_min: float = 0.0
    slider_max: float = 1.0
    vertex_group: str | None = None
    mute: bool = False


class Mesh(SceneModel):
    name: Name
    vertices: list[Vec3]
    faces: list[list[int]] = Field(description="N-gons as authored: vertex indices, at least three each.")
    loose_edges: list[tuple[int, int]] = Field(default_factory=list, description="Edges used by no face.")
    normals: list[Vec3] | None = Field(None, description="Per-vertex normals.")
    face_smooth: list[bool] | None = Field(None, description="Per-face shade smooth flag.")
    material_indices: list[int] | None = Field(
        None, description="Per-face index into the object's material slots."
    )
    uv_layers: list[UVLayer] = Field(default_factory=list)
    shape_keys: list[ShapeKey] = Field(default_factory=list, description="The first one is the basis.")
    shape_key_animation: Animation | None = None


# ---- materials and node graphs -------------------------------------------------------------


class SocketValue(SceneModel):
    identifier: Name
    name: str = ""
    type: str = Field("", description="Socket type, e.g. RGBA, VALUE, VECTOR, SHADER.")
    default: ParamValue = None
    hidden: bool = False


class Node(SceneModel):
    name: Name
    type: Name = Field(description="bl_idname, e.g. ShaderNodeBsdfPrincipled.")
    label: str = ""
    location: Vec2 = (0.0, 0.0)
    parent: str | None = Field(None, description="Name of the frame node holding this one.")
    properties: dict[str, ParamValue] = Field(default_factory=dict, description="Node RNA properties.")
    inputs: list[SocketValue] = Field(default_factory=list)
    outputs: list[SocketValue] = Field(default_factory=list)
    node_tree: str | None = Field(None, description="For group nodes: name of a scene node group.")
    image: str | None = Field(None, description="For image nodes: name of a scene image.")


class Link(SceneModel):
    from_node: Name
    from_socket: Name = Field(description="Output socket identifier.")
    to_node: Name
    to_socket: Name = Field(description="Input socket identifier.")
    muted: bool = False


class InterfaceSocket(SceneModel):
    name: str
    identifier: Name
    in_out: Literal["INPUT", "OUTPUT"]
    socket_type: Name = Field(description="e.g. NodeSocketFloat, NodeSocketColor, NodeSocketGeometry.")
    default: ParamValue = None
    min_value: float | None = None
    max_value: float | None = None


class NodeTree(SceneModel):
    name: Name
    type: Name = Field(
        "ShaderNodeTree", description="ShaderNodeTree, GeometryNodeTree, CompositorNodeTree..."
    )
    nodes: list[Node] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    interface: list[InterfaceSocket] = Field(default_factory=list, description="Group inputs and outputs.")


class TextureRef(SceneModel):
    image: str = Field(description="Name of a scene image.")
    uv_layer: str | None = None


class PBRSummary(SceneModel):
    """What a real-time engine would need; derived from the node graph, or from a legacy material."""

    base_color: Vec4 = (0.8, 0.8, 0.8, 1.0)
    metallic: float = 0.0
    roughness: float = 0.5
    specular: float = 0.5
    ior: float = 1.5
    alpha: float = 1.0
    emission_color: Vec4 = (0.0, 0.0, 0.0, 1.0)
    emission_strength: float = 0.0
    transmission: float = 0.0
    normal_strength: float = 1.0
    textures: dict[str, TextureRef] = Field(
        default_factory=dict, description="Which PBR inputs are driven by an image: base_color, normal..."
    )


class Material(SceneModel):
    name: Name
    pbr: PBRSummary = Field(default_factory=PBRSummary)
    node_tree: NodeTree | None = Field(
        None, description="The full shader graph; absent for legacy materials."
    )
    source: Literal["nodes", "legacy", "generated"] = "nodes"
    diffuse_color: Vec4 = Field((0.8, 0.8, 0.8, 1.0), description="Viewport display colour.")
    blend_method: str = "OPAQUE"
    use_backface_culling: bool = False


class Image(SceneModel):
    name: Name
    filepath: str = ""
    packed: bool = False
    missing: bool = Field(False, description="Referenced but its file could not be found.")
    size: tuple[int, int] = (0, 0)
    colorspace: str = "sRGB"


# ---- modifiers, constraints, rigs ----------------------------------------------------------


class Modifier(SceneModel):
    name: Name
    type: Name = Field(description="Blender modifier type, e.g. SUBSURF, MIRROR, BEVEL, NODES.")
    show_viewport: bool = True
    show_render: bool = True
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="Every RNA property; datablock references by name."
    )


class Constraint(SceneModel):
    name: Name
    type: Name = Field(description="e.g. COPY_LOCATION, TRACK_TO, IK, CHILD_OF.")
    mute: bool = False
    influence: float = 1.0
    params: dict[str, ParamValue] = Field(default_factory=dict)


class VertexGroup(SceneModel):
    name: Name
    indices: list[int] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)


class Bone(SceneModel):
    name: Name
    parent: str | None = None
    head: Vec3
    tail: Vec3
    roll: float = 0.0
    use_connect: bool = False
    use_deform: bool = True
    constraints: list[Constraint] = Field(default_factory=list, description="Pose-bone constraints.")


class Armature(SceneModel):
    name: Name
    bones: list[Bone] = Field(default_factory=list)


class Camera(SceneModel):
    type: Literal["PERSP", "ORTHO", "PANO"] = "PERSP"
    lens: float = 50.0
    ortho_scale: float = 6.0
    sensor_width: float = 36.0
    clip_start: float = 0.1
    clip_end: float = 1000.0


class Light(SceneModel):
    type: Literal["POINT", "SUN", "SPOT", "AREA"] = "POINT"
    color: Vec3 = (1.0, 1.0, 1.0)
    energy: float = 10.0
    radius: float = 0.1
    spot_size: float | None = None
    spot_blend: float | None = None


# ---- animation ------------------------------------------------------------------------------

Interpolation = Literal[
    "CONSTANT",
    "LINEAR",
    "BEZIER",
    "SINE",
    "QUAD",
    "CUBIC",
    "QUART",
    "QUINT",
    "EXPO",
    "CIRC",
    "BACK",
    "BOUNCE",
    "ELASTIC",
]
HandleType = Literal["FREE", "ALIGNED", "VECTOR", "AUTO", "AUTO_CLAMPED"]


class Keyframe(SceneModel):
    co: Vec2 = Field(description="(frame, value)")
    interpolation: Interpolation = "BEZIER"
    handle_left: Vec2 | None = None
    handle_right: Vec2 | None = None
    handle_left_type: HandleType = "AUTO_CLAMPED"
    handle_right_type: HandleType = "AUTO_CLAMPED"
    easing: Literal["AUTO", "EASE_IN", "EASE_OUT", "EASE_IN_OUT"] = "AUTO"


class FCurve(SceneModel):
    data_path: Name = Field(
        description='RNA path on the animated datablock, e.g. location or pose.bones["arm"].rotation_quaternion.'
    )
    index: int = Field(0, ge=0)
    group: str | None = None
    extrapolation: Literal["CONSTANT", "LINEAR"] = "CONSTANT"
    auto_smoothing: Literal["NONE", "CONT_ACCEL"] = Field(
        "NONE", description="How Blender computes automatic handles (CONT_ACCEL: continuous acceleration)."
    )
    keyframes: list[Keyframe] = Field(default_factory=list)
    modifiers: list[dict[str, ParamValue]] = Field(
        default_factory=list, description="F-curve modifiers as data."
    )


class Action(SceneModel):
    name: Name
    fcurves: list[FCurve] = Field(default_factory=list)
    frame_range: Vec2 | None = None
    id_root: str = Field("OBJECT", description="Kind of datablock it animates: OBJECT, KEY, MATERIAL...")


class DriverTarget(SceneModel):
    id_type: str = "OBJECT"
    id_name: str | None = Field(None, description="Name of the target datablock.")
    data_path: str = ""
    bone_target: str = ""
    transform_type: str = "LOC_X"
    transform_space: str = "WORLD_SPACE"
    rotation_mode: str = "AUTO"


class DriverVariable(SceneModel):
    name: Name
    type: Literal["SINGLE_PROP", "TRANSFORMS", "ROTATION_DIFF", "LOC_DIFF", "CONTEXT_PROP"] = "SINGLE_PROP"
    targets: list[DriverTarget] = Field(default_factory=list)


class Driver(SceneModel):
    """A driver as data. A SCRIPTED expression is stored as text and is never evaluated by this system."""

    data_path: Name
    index: int = Field(0, ge=0)
    type: Literal["AVERAGE", "SUM", "SCRIPTED", "MIN", "MAX"] = "SCRIPTED"
    expression: str = Field("", max_length=4096)
    use_self: bool = False
    variables: list[DriverVariable] = Field(default_factory=list)
    keyframes: list[Keyframe] = Field(default_factory=list)


class NLAStrip(SceneModel):
    name: Name
    action: str | None = None
    frame_start: float = 1.0
    frame_end: float = 2.0
    action_frame_start: float | None = None
    action_frame_end: float | None = None
    scale: float = 1.0
    repeat: float = 1.0
    blend_type: Literal["REPLACE", "COMBINE", "ADD", "SUBTRACT", "MULTIPLY"] = "REPLACE"
    extrapolation: Literal["HOLD", "HOLD_FORWARD", "NOTHING"] = "HOLD"
    influence: float | None = None
    mute: bool = False


class NLATrack(SceneModel):
    name: Name
    mute: bool = False
    is_solo: bool = False
    strips: list[NLAStrip] = Field(default_factory=list)


class Animation(SceneModel):
    """A datablock's animation data: its active action, drivers and NLA tracks."""

    action: str | None = Field(None, description="Name of a scene action.")
    drivers: list[Driver] = Field(default_factory=list)
    nla_tracks: list[NLATrack] = Field(default_factory=list)


# ---- objects and the scene -----------------------------------------------------------------


class Transform(SceneModel):
    location: Vec3 = (0.0, 0.0, 0.0)
    rotation_mode: str = Field("XYZ", description="XYZ..ZYX Euler orders, QUATERNION or AXIS_ANGLE.")
    rotation_euler: Vec3 = (0.0, 0.0, 0.0)
    rotation_quaternion: Vec4 = (1.0, 0.0, 0.0, 0.0)
    scale: Vec3 = (1.0, 1.0, 1.0)


class Object(SceneModel):
    name: Name
    type: Name = Field("MESH", description="MESH, EMPTY, ARMATURE, CAMERA, LIGHT, CURVE...")
    parent: str | None = Field(None, description="Name of the parent object.")
    parent_type: Literal["OBJECT", "BONE", "ARMATURE", "VERTEX", "VERTEX_3"] = "OBJECT"
    parent_bone: str | None = None
    parent_inverse: Matrix4 | None = Field(None, description="matrix_parent_inverse; identity when absent.")
    transform: Transform = Field(default_factory=Transform)
    mesh: Mesh | None = Field(None, description="The mesh as authored (modifiers not applied).")
    evaluated_mesh: Mesh | None = Field(None, description="With modifiers applied; for geometry training.")
    material_slots: list[str | None] = Field(
        default_factory=list, description="Material names; None = empty slot."
    )
    modifiers: list[Modifier] = Field(default_factory=list, description="The stack, first applied first.")
    constraints: list[Constraint] = Field(default_factory=list)
    vertex_groups: list[VertexGroup] = Field(default_factory=list)
    armature: Armature | None = None
    camera: Camera | None = None
    light: Light | None = None
    animation: Animation | None = None
    hide_viewport: bool = False
    hide_render: bool = False
    collection: str | None = None


class Units(SceneModel):
    system: Literal["NONE", "METRIC", "IMPERIAL"] = "METRIC"
    scale_length: float = Field(1.0, gt=0)
    length_unit: str = "METERS"


class Provenance(SceneModel):
    sha256: str | None = None
    source_url: str | None = None
    license: str | None = None
    attribution: str | None = None
    path: str | None = None
    blender_version: str | None = Field(None, description="Version that saved the file.")


class Scene(SceneModel):
    schema_version: str = SCHEMA_VERSION
    name: str = "Scene"
    units: Units = Field(default_factory=Units)
    frame_start: int = 1
    frame_end: int = 250
    frame_current: int | None = Field(
        None, description="The frame the scene was saved at: animated values in the document are taken there."
    )
    fps: float = Field(24.0, gt=0)
    objects: list[Object] = Field(default_factory=list)
    materials: list[Material] = Field(default_factory=list)
    node_groups: list[NodeTree] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    libraries: list[str] = Field(
        default_factory=list, description="Linked library paths, recorded not followed."
    )
    provenance: Provenance | None = None
    warnings: list[str] = Field(default_factory=list, description="Non-fatal problems met while extracting.")


Mesh.model_rebuild()
