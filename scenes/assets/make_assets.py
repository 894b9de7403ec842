"""Generate the bundled example meshes (deterministic; run from anywhere).

    python -m scenes.assets.make_assets

Writes, next to this file:
    crate.obj     0.6 m crate with 4 cm bevelled edges (convex; a prop)
    rock.obj      a convex rock about 0.5 m across (seeded hull of a noisy sphere)
    ramp.stl      a 2 m x 1 m wedge rising 0.5 m along +x (convex; static or prop)
    building.obj  a 4 x 3 x 2.6 m hut with a doorway, walls and roof as a static
                  triangle mesh (not convex: props can go through the door)
Origins: the crate and the rock are centred on their centre of mass; the ramp and
the building are centred in x and y with z = 0 at their bottom.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def crate(size: float = 0.6, bevel: float = 0.04):
    import trimesh
    h = size / 2
    # each corner of the box cut by the bevel: three points pulled in along one axis
    pts = []
    for sx, sy, sz in itertools.product((-1, 1), repeat=3):
        c = np.array([sx * h, sy * h, sz * h])
        for axis in range(3):
            p = c.copy()
            p[[a for a in range(3) if a != axis]] -= np.sign(p[[a for a in range(3) if a != axis]]) * bevel
            pts.append(p)
    mesh = trimesh.convex.convex_hull(np.array(pts))
    mesh.apply_translation(-mesh.center_mass)
    return mesh


def rock(radius: float = 0.25, seed: int = 7):
    import trimesh
    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    v = sphere.vertices * rng.uniform(0.75, 1.15, size=(len(sphere.vertices), 1))
    v[:, 2] *= 0.7  # flatter than tall, as rocks lie
    mesh = trimesh.convex.convex_hull(v)
    mesh.apply_translation(-mesh.center_mass)
    return mesh


def ramp(length: float = 2.0, width: float = 1.0, rise: float = 0.5):
    import trimesh
    w = width / 2
    pts = np.array([[0, -w, 0], [0, w, 0], [length, -w, 0], [length, w, 0],
                    [length, -w, rise], [length, w, rise]], float)
    pts[:, 0] -= length / 2
    return trimesh.convex.convex_hull(pts)


def building(width: float = 4.0, depth: float = 3.0, height: float = 2.6, wall: float = 0.2,
             door_width: float = 1.0, door_height: float = 2.0):
    import trimesh

    def box(lo, hi):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        b = trimesh.creation.box(extents=hi - lo)
        b.apply_translation((lo + hi) / 2)
        return b

    x, y = width / 2, depth / 2
    parts = [
        box((-x, -y, 0), (-x + wall, y, height)),           # left wall
        box((x - wall, -y, 0), (x, y, height)),             # right wall
        box((-x + wall, y - wall, 0), (x - wall, y, height)),  # back wall
        box((-x, -y, height), (x, y, height + wall)),       # roof slab
        # front wall at -y with a centred doorway: two jambs and a lintel
        box((-x + wall, -y, 0), (-door_width / 2, -y + wall, height)),
        box((door_width / 2, -y, 0), (x - wall, -y + wall, height)),
        box((-door_width / 2, -y, door_height), (door_width / 2, -y + wall, height)),
    ]
    return trimesh.util.concatenate(parts)


def main(out_dir: Path = HERE) -> list[Path]:
    out = []
    for name, mesh in (("crate.obj", crate()), ("rock.obj", rock()), ("ramp.stl", ramp()),
                       ("building.obj", building())):
        path = Path(out_dir) / name
        mesh.export(path)
        out.append(path)
    return out


if __name__ == "__main__":
    for p in main():
        print(p, p.stat().st_size, "bytes")
