"""``liftgs convert`` (ScanNet scans / RGB-D folders -> scene directories) and ``liftgs inspect``.

Each scene is written atomically (see :func:`liftgs.io.scene_dir.write_scene`), so a failed
conversion leaves the scenes converted before it complete and nothing half-written. A bad input
raises and ``liftgs`` prints it on one line (status 2); with ``--keep-going`` a bad scan is
reported on one line, skipped, and the command ends with status 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from liftgs.config import parse_cli
from liftgs.io.errors import DataError

__all__ = ["convert_main", "inspect_main", "ConvertScanNetArgs", "ConvertRGBDArgs", "InspectArgs"]


@dataclass
class ConvertScanNetArgs:
    """Convert ScanNet v2 scans (SensReader exports + annotations) into scene directories."""

    scans: Annotated[tuple[Path, ...], tyro.conf.Positional]  # scan folders, or folders of scan folders
    out: Path  # dataset root to write <scene_id>/ folders (and splits.json) into
    frames_root: Path | None = None  # SensReader exports as <frames_root>/<scene_id>/color...; default the scans
    frame_stride: int = 10
    image_size: tuple[int, int] | None = None  # (width, height); default the depth size (640x480)
    point_source: Literal["sensor", "mesh"] = "sensor"
    voxel_size: float = 0.05
    pixel_stride: int = 2
    max_depth: float = 6.0
    label_map: Path | None = None  # scannetv2-labels.combined.tsv
    scanrefer: tuple[Path, ...] = ()  # ScanRefer_filtered_*.json files
    referit3d: tuple[Path, ...] = ()  # sr3d*.csv / nr3d*.csv files
    locate3d: tuple[Path, ...] = ()  # Locate 3D (L3DD) *_scannet.json files; ScanNet records are attached
    multi3drefer: tuple[Path, ...] = ()  # Multi3DRefer multi3drefer_*.json files (zero / one / several targets)
    train_list: Path | None = None  # scannetv2_train.txt -> splits.json "train"
    val_list: Path | None = None  # scannetv2_val.txt -> splits.json "val"
    image_format: Literal["jpg", "png"] = "jpg"
    keep_going: bool = False  # report a bad scan and continue instead of stopping

    def __post_init__(self) -> None:
        if not self.scans:
            raise ValueError("give at least one scan folder (or a folder of scans)")


@dataclass
class ConvertRGBDArgs:
    """Convert posed RGB-D captures (7-Scenes, TUM RGB-D, ScanNet exports, color/depth/pose
    folders; recognised by their files) into z-up scene directories."""

    roots: Annotated[tuple[Path, ...], tyro.conf.Positional]  # one folder per capture
    out: Path
    layout: Literal["auto", "7scenes", "tum", "scannet", "folders"] = "auto"  # auto: recognise by the files
    intrinsics: Path | None = None  # default: the layout's file (camera-intrinsics.txt, intrinsics.txt, ...)
    fxfycxcy: tuple[float, float, float, float] | None = None
    depth_scale: float | None = None  # raw units per metre; default: the layout's (TUM 5000, else 1000)
    invalid_depth: int | None = None  # default: 65535 for 7-Scenes
    poses_world_to_camera: bool = False
    frame_stride: int = 1
    image_size: tuple[int, int] | None = None
    voxel_size: float = 0.05
    pixel_stride: int = 2
    max_depth: float = 6.0
    align: Literal["auto", "none"] = "auto"  # auto: z-up from axisAlignment, gravity or the floor; none: as recorded
    max_time_diff: float = 0.02  # seconds; TUM colour/depth/pose association tolerance
    image_format: Literal["jpg", "png"] = "png"
    keep_going: bool = False

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("give at least one RGB-D sequence folder")


@dataclass
class InspectArgs:
    """Summarise scene directories: points, frames, objects, expressions per scene."""

    paths: Annotated[tuple[Path, ...], tyro.conf.Positional]  # dataset roots or scene folders
    check: bool = False  # fully load every scene (all images), reporting any bad file


def _scan_dirs(paths: tuple[Path, ...]) -> list[Path]:
    out = []
    for p in paths:
        if (p / f"{p.name}.txt").is_file():
            out.append(p)
            continue
        found = sorted(d for d in p.iterdir() if d.is_dir() and (d / f"{d.name}.txt").is_file()) if p.is_dir() else []
        if not found:
            raise DataError("neither a ScanNet scan folder (<scene>/<scene>.txt) nor a folder of scans", p)
        out.extend(found)
    return out


def _load_expressions(args: ConvertScanNetArgs) -> dict[str, list]:
    from liftgs.io.referring import read_locate3d, read_multi3drefer, read_referit3d, read_scanrefer

    merged: dict[str, list] = {}
    for path in args.scanrefer:
        for sid, exprs in read_scanrefer(path).items():
            merged.setdefault(sid, []).extend(exprs)
    for path in args.referit3d:
        for sid, exprs in read_referit3d(path).items():
            merged.setdefault(sid, []).extend(exprs)
    for path in args.multi3drefer:
        for sid, exprs in read_multi3drefer(path).items():
            merged.setdefault(sid, []).extend(exprs)
    for path in args.locate3d:
        scannet = read_locate3d(path, scene_dataset="ScanNet")
        if not scannet and read_locate3d(path):
            raise DataError("holds no ScanNet record (field 'scene_dataset'); `convert scannet` attaches "
                            "ScanNet scenes only", path)
        for sid, exprs in scannet.items():
            merged.setdefault(sid, []).extend(exprs)
    return merged


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError("split list is missing", path)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _convert_each(items: list[Path], build, out: Path, image_format: str, keep_going: bool) -> int:
    """Run ``build(item) -> Scene`` and write each scene; returns the number of failures."""
    from tqdm import tqdm

    from liftgs.io.scene_dir import write_scene

    failures = 0
    for item in tqdm(items, desc="scenes", unit="scene"):
        try:
            write_scene(build(item), out, image_format=image_format)
        except ValueError as exc:  # DataError: bad input, named in the message
            if not keep_going:
                raise
            failures += 1
            print(f"liftgs convert: skipped: {exc}", file=sys.stderr)
    return failures


def _convert_scannet(args: ConvertScanNetArgs) -> int:
    from liftgs.io.referring import attach_expressions
    from liftgs.io.scannet import ScanNetConfig, read_scannet_scene
    from liftgs.io.scene_dir import list_scenes, write_splits

    scans = _scan_dirs(args.scans)
    expressions = _load_expressions(args)

    def build(scan: Path):
        config = ScanNetConfig(
            scan_dir=scan, frames_dir=args.frames_root / scan.name if args.frames_root else None,
            frame_stride=args.frame_stride, image_size=args.image_size, point_source=args.point_source,
            voxel_size=args.voxel_size, pixel_stride=args.pixel_stride, max_depth=args.max_depth,
            label_map=args.label_map)
        scene = read_scannet_scene(config)
        return attach_expressions(scene, expressions.get(scene.scene_id, []), where=scan)

    failures = _convert_each(scans, build, args.out, args.image_format, args.keep_going)
    if args.train_list or args.val_list:
        present = {p.name for p in list_scenes(args.out)}
        splits = {name: [s for s in _read_list(path) if s in present]
                  for name, path in (("train", args.train_list), ("val", args.val_list)) if path}
        write_splits(args.out, splits)
    return 1 if failures else 0


def _convert_rgbd(args: ConvertRGBDArgs) -> int:
    from liftgs.io.rgbd import RGBDFolderConfig, read_rgbd_folder

    def build(root: Path):
        return read_rgbd_folder(RGBDFolderConfig(
            root=root, layout=args.layout, intrinsics=args.intrinsics, fxfycxcy=args.fxfycxcy,
            depth_scale=args.depth_scale, invalid_depth=args.invalid_depth,
            poses_world_to_camera=args.poses_world_to_camera, frame_stride=args.frame_stride,
            image_size=args.image_size, voxel_size=args.voxel_size, pixel_stride=args.pixel_stride,
            max_depth=args.max_depth, align=args.align, max_time_diff=args.max_time_diff))

    return 1 if _convert_each(list(args.roots), build, args.out, args.image_format, args.keep_going) else 0


_CONVERTERS = {"scannet": (ConvertScanNetArgs, _convert_scannet), "rgbd": (ConvertRGBDArgs, _convert_rgbd)}


def convert_main(argv: list[str]) -> int:
    """``liftgs convert scannet|rgbd INPUT... --out DIR [options]``."""
    if not argv or argv[0] not in _CONVERTERS:
        print("usage: liftgs convert {scannet,rgbd} INPUT... --out DIR [options]\n\n"
              "  scannet  ScanNet v2 scans exported by SensReader (+ ScanRefer / Sr3d / Nr3d / Locate 3D)\n"
              "  rgbd     posed RGB-D captures (7-Scenes, TUM RGB-D, ScanNet exports, color/depth/pose)\n\n"
              "Run `liftgs convert scannet --help` for options.", file=sys.stderr if argv else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    args_cls, run = _CONVERTERS[argv[0]]
    args = parse_cli(args_cls, argv[1:], prog=f"liftgs convert {argv[0]}")
    return run(args)


def _scene_rows(paths: tuple[Path, ...], check: bool) -> list[list[str]]:
    from tqdm import tqdm

    from liftgs.io.scene_dir import SCENE_JSON, list_scenes, read_scene, read_scene_json, read_splits

    rows = []
    for root in paths:
        scene_dirs = [root] if (root / SCENE_JSON).is_file() else list_scenes(root)
        split_of: dict[str, str] = {}
        if (root / "splits.json").is_file():
            split_of = {s: name for name, ids in read_splits(root).items() for s in ids}
        for sd in tqdm(scene_dirs, desc="scenes", unit="scene", disable=not check, leave=False):
            doc = read_scene_json(sd)
            if check:
                read_scene(sd)
            frames = doc["frames"]
            size = f"{frames[0]['width']}x{frames[0]['height']}" if frames else "-"
            rows.append([doc["scene_id"], split_of.get(sd.name, "-"), str(doc["num_points"]), str(len(frames)),
                         size, str(len(doc["objects"])), str(len(doc["expressions"])),
                         str(doc["meta"].get("source", "-"))])
    return rows


def inspect_main(argv: list[str]) -> int:
    """``liftgs inspect DIR...``: one table row per scene plus a total."""
    args = parse_cli(InspectArgs, argv, prog="liftgs inspect")
    rows = _scene_rows(args.paths, args.check)  # a bad scene raises: `liftgs` prints it on one line
    header = ["scene", "split", "points", "frames", "size", "objects", "expressions", "source"]
    totals = ["TOTAL", f"{len(rows)} scenes"] + [str(sum(int(r[i]) for r in rows)) for i in (2, 3)] + ["-"] + [
        str(sum(int(r[i]) for r in rows)) for i in (5, 6)] + ["-"]
    table = [header] + rows + [totals]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0 or i == len(table) - 2:
            print("  ".join("-" * w for w in widths))
    return 0
