"""Joint layouts: the names, order and bones of every skeleton source gaitcam reads.

The model's input is the canonical 20-joint Kinect v1 layout (SGE-LA spec §1.3, the order of
BIWI, IAS-Lab and KGBD's preprocessed files); every other layout is retargeted to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointLayout:
    """A named joint order plus the bones (parent, child) that draw and measure it."""

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        unknown = {j for bone in self.bones for j in bone} - set(self.joints)
        if unknown:
            raise ValueError(f"{self.name}: bones name unknown joints {sorted(unknown)}")

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    def bone_indices(self) -> np.ndarray:
        """Bones as an int array [B, 2] of (parent, child) joint indices."""
        return np.array([(self.index(a), self.index(b)) for a, b in self.bones], dtype=np.int64)


def _chain(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple(zip(names[:-1], names[1:]))


# Canonical: Kinect v1 SDK order (spec §1.3). The model sees joints in exactly this order.
CANONICAL = JointLayout(
    name="kinect_v1",
    joints=(
        "HipCenter", "Spine", "ShoulderCenter", "Head",
        "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
        "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
        "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
        "HipRight", "KneeRight", "AnkleRight", "FootRight",
    ),
    bones=(
        *_chain("HipCenter", "Spine", "ShoulderCenter", "Head"),
        *_chain("ShoulderCenter", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft"),
        *_chain("ShoulderCenter", "ShoulderRight", "ElbowRight", "WristRight", "HandRight"),
        *_chain("HipCenter", "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft"),
        *_chain("HipCenter", "HipRight", "KneeRight", "AnkleRight", "FootRight"),
    ),
)

# KGBD text files: the same 20 Kinect v1 joints in the authors' own order (its README),
# with their own names ("Hip-centro" is the Portuguese-named hip centre).
KGBD = JointLayout(
    name="kgbd",
    joints=(
        "Head", "Shoulder-Center", "Shoulder-Right", "Shoulder-Left", "Elbow-Right",
        "Elbow-Left", "Wrist-Right", "Wrist-Left", "Hand-Right", "Hand-Left", "Spine",
        "Hip-centro", "Hip-Right", "Hip-Left", "Knee-Right", "Knee-Left", "Ankle-Right",
        "Ankle-Left", "Foot-Right", "Foot-Left",
    ),
    bones=(
        *_chain("Hip-centro", "Spine", "Shoulder-Center", "Head"),
        *_chain("Shoulder-Center", "Shoulder-Left", "Elbow-Left", "Wrist-Left", "Hand-Left"),
        *_chain("Shoulder-Center", "Shoulder-Right", "Elbow-Right", "Wrist-Right", "Hand-Right"),
        *_chain("Hip-centro", "Hip-Left", "Knee-Left", "Ankle-Left", "Foot-Left"),
        *_chain("Hip-centro", "Hip-Right", "Knee-Right", "Ankle-Right", "Foot-Right"),
    ),
)

# Kinect for Windows SDK 2.0 `JointType` order; also NTU RGB+D and KS20 (spec §1.3).
# Bones follow the SDK's BodyBasics sample: a tree rooted at SpineBase.
KINECT_V2 = JointLayout(
    name="kinect_v2",
    joints=(
        "SpineBase", "SpineMid", "Neck", "Head",
        "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
        "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
        "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
        "HipRight", "KneeRight", "AnkleRight", "FootRight",
        "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
    ),
    bones=(
        *_chain("SpineBase", "SpineMid", "SpineShoulder", "Neck", "Head"),
        *_chain("SpineShoulder", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
                "HandTipLeft"),
        ("WristLeft", "ThumbLeft"),
        *_chain("SpineShoulder", "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
                "HandTipRight"),
        ("WristRight", "ThumbRight"),
        *_chain("SpineBase", "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft"),
        *_chain("SpineBase", "HipRight", "KneeRight", "AnkleRight", "FootRight"),
    ),
)

# Azure Kinect Body Tracking SDK `k4abt_joint_id_t` order (K4ABT_JOINT_ prefix dropped). Bones are
# the SDK's documented parent table: a tree rooted at PELVIS; clavicles hang off SPINE_CHEST,
# thumbs off the wrists, the face points off HEAD.
AZURE_KINECT = JointLayout(
    name="azure_kinect",
    joints=(
        "PELVIS", "SPINE_NAVEL", "SPINE_CHEST", "NECK",
        "CLAVICLE_LEFT", "SHOULDER_LEFT", "ELBOW_LEFT", "WRIST_LEFT", "HAND_LEFT", "HANDTIP_LEFT",
        "THUMB_LEFT",
        "CLAVICLE_RIGHT", "SHOULDER_RIGHT", "ELBOW_RIGHT", "WRIST_RIGHT", "HAND_RIGHT",
        "HANDTIP_RIGHT", "THUMB_RIGHT",
        "HIP_LEFT", "KNEE_LEFT", "ANKLE_LEFT", "FOOT_LEFT",
        "HIP_RIGHT", "KNEE_RIGHT", "ANKLE_RIGHT", "FOOT_RIGHT",
        "HEAD", "NOSE", "EYE_LEFT", "EAR_LEFT", "EYE_RIGHT", "EAR_RIGHT",
    ),
    bones=(
        *_chain("PELVIS", "SPINE_NAVEL", "SPINE_CHEST", "NECK", "HEAD", "NOSE"),
        ("HEAD", "EYE_LEFT"), ("HEAD", "EAR_LEFT"), ("HEAD", "EYE_RIGHT"), ("HEAD", "EAR_RIGHT"),
        *_chain("SPINE_CHEST", "CLAVICLE_LEFT", "SHOULDER_LEFT", "ELBOW_LEFT", "WRIST_LEFT",
                "HAND_LEFT", "HANDTIP_LEFT"),
        ("WRIST_LEFT", "THUMB_LEFT"),
        *_chain("SPINE_CHEST", "CLAVICLE_RIGHT", "SHOULDER_RIGHT", "ELBOW_RIGHT", "WRIST_RIGHT",
                "HAND_RIGHT", "HANDTIP_RIGHT"),
        ("WRIST_RIGHT", "THUMB_RIGHT"),
        *_chain("PELVIS", "HIP_LEFT", "KNEE_LEFT", "ANKLE_LEFT", "FOOT_LEFT"),
        *_chain("PELVIS", "HIP_RIGHT", "KNEE_RIGHT", "ANKLE_RIGHT", "FOOT_RIGHT"),
    ),
)

# MediaPipe Pose `PoseLandmark` order (enum names lower-cased). Bones are MediaPipe's own
# POSE_CONNECTIONS, so a MediaPipe source is drawn as MediaPipe draws it (its torso quad and
# hand / foot triangles are cycles, so this one is a connected graph, not a tree), plus the
# edges MediaPipe leaves out to join the face to the body: nose to each shoulder and to each
# mouth corner.
MEDIAPIPE_POSE = JointLayout(
    name="mediapipe_pose",
    joints=(
        "nose", "left_eye_inner", "left_eye", "left_eye_outer",
        "right_eye_inner", "right_eye", "right_eye_outer", "left_ear", "right_ear",
        "mouth_left", "mouth_right", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    bones=(
        *_chain("nose", "left_eye_inner", "left_eye", "left_eye_outer", "left_ear"),
        *_chain("nose", "right_eye_inner", "right_eye", "right_eye_outer", "right_ear"),
        ("mouth_left", "mouth_right"),
        ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
        *_chain("left_shoulder", "left_elbow", "left_wrist", "left_pinky", "left_index"),
        ("left_wrist", "left_index"), ("left_wrist", "left_thumb"),
        *_chain("right_shoulder", "right_elbow", "right_wrist", "right_pinky", "right_index"),
        ("right_wrist", "right_index"), ("right_wrist", "right_thumb"),
        *_chain("left_hip", "left_knee", "left_ankle", "left_heel", "left_foot_index"),
        ("left_ankle", "left_foot_index"),
        *_chain("right_hip", "right_knee", "right_ankle", "right_heel", "right_foot_index"),
        ("right_ankle", "right_foot_index"),
        # Not in POSE_CONNECTIONS: attach the face to the body.
        ("left_shoulder", "nose"), ("right_shoulder", "nose"),
        ("nose", "mouth_left"), ("nose", "mouth_right"),
    ),
)

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout for layout in (CANONICAL, KGBD, KINECT_V2, AZURE_KINECT, MEDIAPIPE_POSE)
}
