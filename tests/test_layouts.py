"""Joint layouts: sizes, SDK enum orders and bone graphs every drawing and retarget relies on."""
import pytest

from gaitcam.skeleton.layouts import (
    AZURE_KINECT, CANONICAL, KGBD, KINECT_V2, LAYOUTS, MEDIAPIPE_POSE, JointLayout,
)

SIZES = {"kinect_v1": 20, "kgbd": 20, "kinect_v2": 25, "azure_kinect": 32, "mediapipe_pose": 33}
# MediaPipe's own connections have cycles (torso quad, hand and foot triangles).
TREES = ("kinect_v1", "kgbd", "kinect_v2", "azure_kinect")


def _components(layout: JointLayout) -> int:
    """Connected components of the bone graph (union-find)."""
    root = list(range(layout.n_joints))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for a, b in layout.bone_indices():
        root[find(a)] = find(b)
    return len({find(i) for i in range(layout.n_joints)})


def test_registry_holds_every_layout_by_name():
    assert set(LAYOUTS) == set(SIZES)
    assert all(name == layout.name for name, layout in LAYOUTS.items())


@pytest.mark.parametrize("name", SIZES)
def test_joint_count_and_unique_names(name):
    layout = LAYOUTS[name]
    assert layout.n_joints == SIZES[name]
    assert len(set(layout.joints)) == layout.n_joints


@pytest.mark.parametrize("name", SIZES)
def test_bones_are_distinct_edges_between_known_joints(name):
    layout = LAYOUTS[name]
    assert {j for bone in layout.bones for j in bone} <= set(layout.joints)
    assert all(a != b for a, b in layout.bones)
    assert len({frozenset(bone) for bone in layout.bones}) == len(layout.bones)


@pytest.mark.parametrize("name", SIZES)
def test_bones_connect_every_joint(name):
    assert _components(LAYOUTS[name]) == 1


@pytest.mark.parametrize("name", TREES)
def test_bones_form_a_tree_with_one_parent_per_joint(name):
    layout = LAYOUTS[name]
    children = [child for _, child in layout.bones]
    assert len(layout.bones) == layout.n_joints - 1  # connected + J-1 edges = tree
    assert len(set(children)) == len(children)


def test_unknown_bone_joint_is_rejected():
    with pytest.raises(ValueError, match="unknown joints"):
        JointLayout("bad", ("a", "b"), (("a", "c"),))


def test_sdk_enum_positions():
    """Spot checks against the SDK enums (values from their headers / docs)."""
    assert CANONICAL.joints[:4] == ("HipCenter", "Spine", "ShoulderCenter", "Head")
    assert KGBD.index("Hip-centro") == 11
    assert (KINECT_V2.index("SpineShoulder"), KINECT_V2.index("ThumbRight")) == (20, 24)
    assert KINECT_V2.index("FootRight") == 19
    assert (AZURE_KINECT.index("NECK"), AZURE_KINECT.index("HIP_LEFT")) == (3, 18)
    assert (AZURE_KINECT.index("HEAD"), AZURE_KINECT.index("EAR_RIGHT")) == (26, 31)
    assert (MEDIAPIPE_POSE.index("left_shoulder"), MEDIAPIPE_POSE.index("left_hip")) == (11, 23)
    assert MEDIAPIPE_POSE.index("right_foot_index") == 32


def test_azure_bones_match_sdk_parent_table():
    parent = {child: par for par, child in AZURE_KINECT.bones}
    assert parent["CLAVICLE_LEFT"] == "SPINE_CHEST"
    assert parent["THUMB_RIGHT"] == "WRIST_RIGHT"
    assert parent["HEAD"] == "NECK"
    face = ("NOSE", "EYE_LEFT", "EAR_LEFT", "EYE_RIGHT", "EAR_RIGHT")
    assert {parent[j] for j in face} == {"HEAD"}


def test_mediapipe_order_and_connections_match_the_installed_package():
    pose = pytest.importorskip("mediapipe.python.solutions.pose")
    assert MEDIAPIPE_POSE.joints == tuple(lm.name.lower() for lm in pose.PoseLandmark)
    official = {frozenset((MEDIAPIPE_POSE.joints[a], MEDIAPIPE_POSE.joints[b]))
                for a, b in pose.POSE_CONNECTIONS}
    assert official <= {frozenset(bone) for bone in MEDIAPIPE_POSE.bones}
