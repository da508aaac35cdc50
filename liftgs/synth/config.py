"""Configuration of the synthetic benchmark (typed, validated; presets are Python objects)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthConfig:
    """How one synthetic room is generated and rendered."""

    width: int = 128  # image width in pixels
    height: int = 128  # image height in pixels
    fov_deg: float = 70.0  # vertical field of view
    num_frames: int = 20  # camera poses along the scan trajectory (10-30 like a short scan)
    min_objects: int = 6
    max_objects: int = 15
    room_min: float = 3.4  # room side length range in metres
    room_max: float = 4.8
    wall_height: float = 2.5
    camera_height: float = 1.45
    camera_jitter: float = 0.08  # metres of positional jitter of the hand-held camera
    voxel_size: float = 0.05  # fusion voxel (paper appendix A.1: 5 cm)
    near: float = 0.05
    far: float = 20.0
    max_expressions: int = 16  # referring expressions kept per room
    val_fraction: float = 0.2  # share of rooms in the "val" split

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 2048 and 16 <= self.height <= 2048):
            raise ValueError(f"image size {self.width}x{self.height}: use 16..2048 pixels per side")
        if not 20.0 <= self.fov_deg <= 120.0:
            raise ValueError(f"fov_deg={self.fov_deg}: use a vertical field of view in [20, 120] degrees")
        if not 10 <= self.num_frames <= 30:
            raise ValueError(f"num_frames={self.num_frames}: a scan-like trajectory has 10..30 frames")
        if not 6 <= self.min_objects <= self.max_objects <= 15:
            raise ValueError(
                f"objects {self.min_objects}..{self.max_objects}: need 6 <= min_objects <= max_objects <= 15"
            )
        if not 3.0 <= self.room_min <= self.room_max <= 8.0:
            raise ValueError(f"room sides {self.room_min}..{self.room_max} m: need 3 <= room_min <= room_max <= 8")
        if not 2.2 <= self.wall_height <= 4.0:
            raise ValueError(f"wall_height={self.wall_height}: use 2.2..4.0 m")
        if not 1.0 <= self.camera_height < self.wall_height:
            raise ValueError(f"camera_height={self.camera_height}: use 1.0 m .. wall_height")
        if not 0.0 <= self.camera_jitter <= 0.3:
            raise ValueError(f"camera_jitter={self.camera_jitter}: use 0..0.3 m")
        if not 0.005 <= self.voxel_size <= 0.5:
            raise ValueError(f"voxel_size={self.voxel_size}: use 0.005..0.5 m (paper: 0.05)")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"near={self.near}, far={self.far}: need 0 < near < far")
        if self.max_expressions < 1:
            raise ValueError(f"max_expressions={self.max_expressions}: keep at least one expression per room")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction}: use 0 <= val_fraction < 1")


#: Tiny rooms for tests: few objects, small images, few frames.
QUICK = SynthConfig(width=80, height=64, num_frames=10, min_objects=6, max_objects=8,
                    room_min=3.4, room_max=4.2, max_expressions=8)
#: The demo benchmark: 128x128, 20 frames, 6-15 objects.
STANDARD = SynthConfig()
PRESETS: dict[str, SynthConfig] = {"quick": QUICK, "standard": STANDARD}
