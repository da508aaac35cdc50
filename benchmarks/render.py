"""Renderer speed and memory: fast CPU path vs the dense reference.

    python benchmarks/render.py                 # full table (takes a few minutes)
    python benchmarks/render.py --quick         # the three target configurations only

Each configuration runs in its own subprocess so that peak memory (ru_maxrss delta over the
process's baseline after set-up) is per configuration. Times are medians over repeats, with
torch.set_num_threads(2). Layouts: "room" = Gaussians on the surfaces of a furnished box room
seen from inside (5 cm scales, opacities 0.5-0.9); "random" = Gaussians in a frustum.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

CHANNELS = {"3": 3, "3+96": 99, "3+96+256": 355}


def room_scene(n: int, res: int, seed: int = 0) -> dict:
    """Gaussians sampled on a 6 x 5 x 3 m room's walls, floor, ceiling and a few boxes."""
    g = torch.Generator().manual_seed(seed)
    boxes = [((0, 0, 0), (6, 5, 3))]  # the room itself (inside faces)
    boxes += [((1.0, 3.2, 0), (2.6, 4.2, 0.75)), ((3.5, 0.5, 0), (4.3, 1.3, 0.9)),
              ((4.6, 3.0, 0), (5.6, 4.8, 2.0)), ((2.0, 1.0, 0), (2.5, 1.5, 0.45))]
    faces = []  # (origin, edge u, edge v)
    for lo, hi in boxes:
        lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
        size = hi - lo
        for axis in range(3):
            u, v = [a for a in range(3) if a != axis]
            for side in (lo, hi):
                o = lo.clone()
                o[axis] = side[axis]
                eu, ev = torch.zeros(3), torch.zeros(3)
                eu[u], ev[v] = size[u], size[v]
                faces.append((o, eu, ev))
    areas = torch.tensor([torch.linalg.cross(eu, ev).norm().item() for _, eu, ev in faces])
    f = torch.multinomial(areas, n, replacement=True, generator=g)
    st = torch.rand(n, 2, generator=g)
    O = torch.stack([faces[i][0] for i in range(len(faces))])[f]
    EU = torch.stack([faces[i][1] for i in range(len(faces))])[f]
    EV = torch.stack([faces[i][2] for i in range(len(faces))])[f]
    means = O + st[:, :1] * EU + st[:, 1:] * EV
    return _gaussians(means, g) | _camera(res, eye=(0.8, 0.7, 1.6), target=(4.5, 4.0, 0.9))


def random_scene(n: int, res: int, seed: int = 0) -> dict:
    """Gaussians uniformly in a camera frustum 1-6 m deep (a harder, deeper layout)."""
    g = torch.Generator().manual_seed(seed)
    z = 1.0 + 5.0 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * math.tan(math.radians(35))
    cam = _camera(res, eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 1.0), up=(0.0, -1.0, 0.0))
    means = torch.cat([xy, z[:, None]], 1)
    vm = cam["viewmat"]
    means = (means - vm[:3, 3]) @ vm[:3, :3]  # camera -> world
    return _gaussians(means, g) | cam


def _gaussians(means: torch.Tensor, g: torch.Generator) -> dict:
    n = means.shape[0]
    scales = 0.05 * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    return {"means": means.float(), "quats": torch.randn(n, 4, generator=g),
            "scales": scales, "opacities": 0.5 + 0.4 * torch.rand(n, generator=g)}


def _camera(res: int, eye, target, up=(0.0, 0.0, 1.0)) -> dict:
    eye, target, up = (torch.tensor(x, dtype=torch.float32) for x in (eye, target, up))
    fwd = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up), dim=0)
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # world -> camera rows
    vm = torch.eye(4)
    vm[:3, :3], vm[:3, 3] = R, -R @ eye
    f = 0.5 * res / math.tan(math.radians(30))  # 60 degree horizontal field of view
    K = torch.tensor([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])
    return {"viewmat": vm, "K": K, "width": res, "height": res}
