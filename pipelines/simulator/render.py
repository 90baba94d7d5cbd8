"""OpenCV rendering of the SO-101 world: a fixed front camera and a wrist camera.

Pinhole projection of 3D points; images are RGB uint8, H x W x 3. The table (with a 5 cm grid, so
motion shows in the wrist view) is drawn first, then the cube's shadow, then the cube's visible
faces and the arm's links (tapered quads, thickness by perspective) far-to-near (painter's
algorithm, one depth per item). Geometry behind the camera is clipped at a near plane. The front
camera's background (table, grid, base) is drawn once per renderer and copied per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.simulator import kinematics as kin
from pipelines.simulator.world import TABLE_X, TABLE_Y, SO101World

SHIFT = 4  # fixed-point bits for sub-pixel drawing
SCALE = 1 << SHIFT
NEAR = 0.01  # m

BACKGROUND_RGB = (58, 62, 70)
TABLE_RGB = (196, 178, 150)
GRID_RGB = (160, 142, 116)
SHADOW_RGB = (120, 108, 92)
CUBE_RGB = (215.0, 30.0, 35.0)
ARM_RGB = (240, 200, 40)  # the URDF's 3D-printed yellow
SERVO_RGB = (35, 35, 38)
JAW_RGB = (225, 150, 30)
LIGHT = np.array([0.3, -0.4, 0.87]) / np.linalg.norm([0.3, -0.4, 0.87])

# Wrist camera on the gripper link (gripper frame): beside the jaws, looking past the fingertips.
WRIST_EYE_IN_GRIPPER = np.array([-0.006, -0.042, -0.045])
WRIST_JAW_VISIBLE = 0.5  # the wrist view draws each jaw from half its length to its tip
WRIST_TARGET_IN_GRIPPER = np.array([-0.008, 0.0, -0.13])
FRONT_EYE = np.array([0.34, -0.52, 0.38])
FRONT_TARGET = np.array([0.15, 0.0, 0.07])

# Cube corners (unit half-size) and faces as corner indices, in order around each face.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
_FACES = np.array(
    [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
)
_FACE_AXES = ((0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0), (2, -1.0), (2, 1.0))  # outward normals

# Links are tapered quads between scene points: start, end, radius (m), colour. The front camera
# sees the arm (its static base is drawn once into the background); the wrist camera sits on the
# gripper body, so it sees only the jaws.
_BASE = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.085]])
_JAW_POINTS_IN_GRIPPER = np.stack(
    [kin.JAW_ROOT_IN_GRIPPER, kin.FIXED_TIP_IN_GRIPPER, kin.JAW_HINGE_IN_GRIPPER]
)
_GRIPPER_BODY_END = np.array([0.0, 0.0, -0.045])  # gripper frame: end of the motor housing
_BOTTOM = [0, 2, 6, 4]  # cube corners of its local z = -1 face


def _link_table(*links: tuple) -> tuple:
    """Column form of link rows: ((N, 2) start/end indices, radii, colours)."""
    starts, ends, radii, colours = zip(*links, strict=True)
    return np.stack([starts, ends], axis=1), np.array(radii), list(colours)


# Jaw points: 0 fixed-jaw root, 1 fixed tip, 2 moving-jaw hinge, 3 moving tip.
_JAW_LINKS = _link_table((0, 1, 0.005, JAW_RGB), (2, 3, 0.005, JAW_RGB))
# Arm points: the jaw points, then 4 pan axis, 5 shoulder_lift, 6 elbow_flex, 7 wrist_flex,
# 8 wrist_roll, 9 gripper body end.
_ARM_LINKS = _link_table(
    (0, 1, 0.005, JAW_RGB),  # fixed jaw
    (2, 3, 0.005, JAW_RGB),  # moving jaw
    (4, 5, 0.022, ARM_RGB),  # shoulder bracket
    (5, 6, 0.017, ARM_RGB),  # upper arm
    (6, 7, 0.016, ARM_RGB),  # forearm
    (7, 8, 0.016, SERVO_RGB),  # wrist
    (8, 9, 0.019, SERVO_RGB),  # gripper body
)
_BASE_LINKS = _link_table((0, 1, 0.032, SERVO_RGB))

_TABLE = np.array(
    [[TABLE_X[0], TABLE_Y[0], 0], [TABLE_X[1], TABLE_Y[0], 0], [TABLE_X[1], TABLE_Y[1], 0],
     [TABLE_X[0], TABLE_Y[1], 0]],
    dtype=float,
)  # fmt: skip


def _grid_lines(spacing: float = 0.05) -> np.ndarray:
    """Table grid lines as (N, 2, 3) start/end points."""
    xs = np.arange(math.ceil(TABLE_X[0] / spacing), math.floor(TABLE_X[1] / spacing) + 1) * spacing
    ys = np.arange(math.ceil(TABLE_Y[0] / spacing), math.floor(TABLE_Y[1] / spacing) + 1) * spacing
    lines = [[[x, TABLE_Y[0], 0.0], [x, TABLE_Y[1], 0.0]] for x in xs]
    lines += [[[TABLE_X[0], y, 0.0], [TABLE_X[1], y, 0.0]] for y in ys]
    return np.array(lines)


_GRID = _grid_lines()


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: ``rotation`` rows are the camera axes (x right, y down, z forward)."""

    rotation: np.ndarray
    position: np.ndarray
    focal: float
    size: int

    @classmethod
    def look_at(
        cls, eye: np.ndarray, target: np.ndarray, right_hint: np.ndarray, fov_deg: float, size: int
    ) -> Camera:
        """Camera at ``eye`` looking at ``target``; image x is ``right_hint`` made orthogonal."""
        forward = target - eye
        forward = forward / math.sqrt(forward @ forward)
        right = right_hint - (right_hint @ forward) * forward
        right = right / math.sqrt(right @ right)
        down = kin.cross(forward, right)
        focal = size / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
        return cls(np.stack([right, down, forward]), np.asarray(eye, float), focal, size)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera coordinates (..., 3)."""
        return (points - self.position) @ self.rotation.T

    def to_image(self, camera_points: np.ndarray) -> np.ndarray:
        """Camera coordinates (..., 3) with depth >= NEAR -> pixel coordinates (float)."""
        return camera_points[..., :2] * (self.focal / camera_points[..., 2:3]) + self.size / 2.0


def _fixed_point(pixels: np.ndarray) -> np.ndarray:
    """Float pixels -> OpenCV fixed-point coordinates (``SHIFT`` fractional bits)."""
    return np.rint(pixels * SCALE).astype(np.int32)


def _clip_polygon(points: np.ndarray) -> np.ndarray:
    """Clip a polygon (camera coordinates, (N, 3)) to depth >= NEAR (Sutherland-Hodgman)."""
    out = []
    count = len(points)
    for i in range(count):
        a, b = points[i], points[(i + 1) % count]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            out.append(a + (NEAR - a[2]) / (b[2] - a[2]) * (b - a))
    return np.array(out).reshape(-1, 3)


def _clip_segments(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip segments (camera coordinates, (N, 2, 3)) to depth >= NEAR.

    Returns the clipped segments of those not wholly behind, and the kept mask.
    """
    depth = segments[:, :, 2]
    keep = depth.max(axis=1) >= NEAR
    segments = segments[keep]
    if depth[keep].min(initial=NEAR) >= NEAR:
        return segments, keep
    a, b = segments[:, 0], segments[:, 1]
    da, db = a[:, 2:3], b[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((NEAR - da) / (db - da), 0.0, 1.0)
    a = np.where(da < NEAR, a + t * (b - a), a)
    b = np.where(db < NEAR, b + t * (a - b), b)
    return np.stack([a, b], axis=1), keep


def _fill(
    image: np.ndarray, camera: Camera, polygon_cam: np.ndarray, colour, line_type=cv2.LINE_AA
) -> None:
    """Fill a convex polygon given in camera coordinates, clipped at the near plane."""
    if polygon_cam[:, 2].min() < NEAR:
        polygon_cam = _clip_polygon(polygon_cam)
        if len(polygon_cam) < 3:
            return
    points = _fixed_point(camera.to_image(polygon_cam))
    cv2.fillConvexPoly(image, points, colour, line_type, SHIFT)


# Quad corner k = end[_QUAD_END[k]] + half_width * (_QUAD_ALONG[k] * unit + _QUAD_ACROSS[k] *
# normal): both ends stretch by 0.6 half-widths so consecutive links overlap at the joints.
_QUAD_END = np.array([0, 1, 1, 0])
_QUAD_ALONG = np.array([-0.6, 0.6, 0.6, -0.6])[None, :, None]
_QUAD_ACROSS = np.array([1.0, 1.0, -1.0, -1.0])[None, :, None]


def _link_quads(camera: Camera, points_cam: np.ndarray, links: tuple) -> list:
    """(mean depth, fixed-point quad, colour) per link in front of the camera; tapered."""
    ends_index, radii, colours = links
    segments = points_cam[ends_index]  # (N, 2, 3)
    if segments[:, :, 2].min() < NEAR:
        segments, keep = _clip_segments(segments)
        radii = radii[keep]
        colours = [colour for colour, kept in zip(colours, keep, strict=True) if kept]
        if not len(segments):
            return []
    depth = segments[:, :, 2]
    ends_px = segments[:, :, :2] * (camera.focal / depth)[:, :, None] + camera.size / 2.0
    half = (radii[:, None] * camera.focal / depth)[:, _QUAD_END, None]  # (N, 4, 1)
    direction = ends_px[:, 1] - ends_px[:, 0]
    unit = direction / np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-6)[:, None]
    normal = unit[:, ::-1] * _FLIP
    offsets = _QUAD_ALONG * unit[:, None] + _QUAD_ACROSS * normal[:, None]
    quads = _fixed_point(ends_px[:, _QUAD_END] + half * offsets)
    return list(zip(((depth[:, 0] + depth[:, 1]) * 0.5).tolist(), quads, colours, strict=True))


_FLIP = np.array([-1.0, 1.0])


class Renderer:
    """Renders the front and wrist images of a ``SO101World`` (RGB uint8, size x size x 3)."""

    def __init__(self, size: int = 128, front_fov_deg: float = 52.0, wrist_fov_deg: float = 90.0):
        self.size = size
        self.wrist_fov_deg = wrist_fov_deg
        right = np.array([0.6, 0.8, 0.0])  # front image x: roughly the world's +y
        self.front = Camera.look_at(FRONT_EYE, FRONT_TARGET, right, front_fov_deg, size)
        # The wrist camera's pose in the gripper link frame.
        self._wrist_in_gripper = Camera.look_at(
            WRIST_EYE_IN_GRIPPER, WRIST_TARGET_IN_GRIPPER, np.array([1.0, 0.0, 0.0]),
            wrist_fov_deg, size,
        )  # fmt: skip
        self._backdrop = np.empty((size, size, 3), np.uint8)
        self._backdrop[:] = BACKGROUND_RGB
        self._front_background = self._table_image(self.front)
        for _depth, quad, colour in _link_quads(
            self.front, self.front.to_camera(_BASE), _BASE_LINKS
        ):
            cv2.fillConvexPoly(self._front_background, quad, colour, cv2.LINE_AA, SHIFT)

    def wrist_camera(self, pose: kin.ArmPose) -> Camera:
        """The camera fixed to the gripper link; image x runs from the fixed to the moving jaw."""
        rotation = self._wrist_in_gripper.rotation @ pose.gripper_rotation.T
        return Camera(rotation, pose.to_world(WRIST_EYE_IN_GRIPPER), self._wrist_in_gripper.focal,
                      self.size)  # fmt: skip

    def render(self, world: SO101World) -> dict[str, np.ndarray]:
        """Both camera images of the current state: {"front": ..., "wrist": ...}."""
        return {"front": self.render_front(world), "wrist": self.render_wrist(world)}

    def render_front(self, world: SO101World) -> np.ndarray:
        image = self._front_background.copy()
        pose = world.pose
        points = np.concatenate(
            [_jaw_points(pose), pose.joint_origins[:5], pose.to_world(_GRIPPER_BODY_END)[None]]
        )
        self._draw_scene(image, self.front, world, points, _ARM_LINKS)
        return image

    def render_wrist(self, world: SO101World) -> np.ndarray:
        pose = world.pose
        camera = self.wrist_camera(pose)
        image = self._table_image(camera)
        jaws = _jaw_points(pose)
        # The camera sits beside the jaw roots: draw only the jaws' outer parts (no clipping).
        jaws[0] += WRIST_JAW_VISIBLE * (jaws[1] - jaws[0])
        jaws[2] += WRIST_JAW_VISIBLE * (jaws[3] - jaws[2])
        self._draw_scene(image, camera, world, jaws, _JAW_LINKS)
        return image

    def _table_image(self, camera: Camera) -> np.ndarray:
        """Backdrop, table and grid."""
        image = self._backdrop.copy()
        _fill(image, camera, camera.to_camera(_TABLE), TABLE_RGB, cv2.LINE_8)
        lines, _ = _clip_segments(camera.to_camera(_GRID))
        if len(lines):
            lines = _fixed_point(camera.to_image(lines))
            cv2.polylines(image, lines, False, GRID_RGB, 1, cv2.LINE_8, SHIFT)
        return image

    def _draw_scene(
        self, image: np.ndarray, camera: Camera, world: SO101World, points: np.ndarray, links
    ) -> None:
        """Cube shadow, then the cube and the links far-to-near (painter's algorithm)."""
        corners = world.cube_position + _CORNERS @ (world.cube_rotation.T * (world.cube_size / 2))
        footprint = corners[_BOTTOM]
        footprint[:, 2] = 0.0
        cam = camera.to_camera(np.concatenate([corners, footprint, points]))
        _fill(image, camera, cam[8:12], SHADOW_RGB)
        items = _link_quads(camera, cam[12:], links)
        items.append((float(cam[:8, 2].mean()), None, None))
        items.sort(key=lambda item: -item[0])
        for _depth, quad, colour in items:
            if quad is None:
                self._draw_cube(image, camera, world, cam[:8])
            else:
                cv2.fillConvexPoly(image, quad, colour, cv2.LINE_AA, SHIFT)

    @staticmethod
    def _draw_cube(image: np.ndarray, camera: Camera, world: SO101World, corners_cam: np.ndarray):
        """The cube's camera-facing faces, each shaded by a fixed directional light."""
        # Camera position and light direction in the cube frame: face (axis, sign) faces the
        # camera when sign * eye[axis] > half size; its brightness follows sign * light[axis].
        rotation = world.cube_rotation
        eye = (rotation.T @ (camera.position - world.cube_position)).tolist()
        light = (LIGHT @ rotation).tolist()
        half = world.cube_size / 2.0
        pixels = None
        if corners_cam[:, 2].min() >= NEAR:
            pixels = _fixed_point(camera.to_image(corners_cam))
        for face, (axis, sign) in enumerate(_FACE_AXES):
            if sign * eye[axis] <= half:
                continue
            shade = 0.45 + 0.55 * max(sign * light[axis], 0.0)
            colour = (CUBE_RGB[0] * shade, CUBE_RGB[1] * shade, CUBE_RGB[2] * shade)
            if pixels is not None:
                cv2.fillConvexPoly(image, pixels[_FACES[face]], colour, cv2.LINE_AA, SHIFT)
            else:
                _fill(image, camera, corners_cam[_FACES[face]], colour)


def _jaw_points(pose: kin.ArmPose) -> np.ndarray:
    """Fixed-jaw root, fixed tip, moving-jaw hinge, moving tip (world)."""
    return np.concatenate([pose.to_world(_JAW_POINTS_IN_GRIPPER), pose.moving_tip[None]])
