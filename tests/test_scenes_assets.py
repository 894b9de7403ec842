"""Bundled meshes: regenerated bit-for-bit by their generator, small, and shaped
as documented (convex props, a hut with a walk-through doorway)."""
from __future__ import annotations

import numpy as np
import pytest

from scenes.assets import ASSETS_DIR, asset_path, make_assets

MESHES = ("crate.obj", "rock.obj", "ramp.stl", "building.obj")


def test_generator_reproduces_committed_assets(tmp_path):
    written = make_assets.main(tmp_path)
    assert sorted(p.name for p in written) == sorted(MESHES)
    for p in written:
        assert p.read_bytes() == (ASSETS_DIR / p.name).read_bytes(), f"{p.name} is stale: rerun make_assets"
        assert p.stat().st_size < 100_000


@pytest.mark.parametrize("name", ["crate.obj", "rock.obj", "ramp.stl"])
def test_prop_meshes_are_closed_convex_solids(name):
    import trimesh
    mesh = trimesh.load(asset_path(name), force="mesh")
    assert mesh.is_watertight and mesh.is_convex and mesh.volume > 0


def test_crate_and_rock_are_centred_on_their_centre_of_mass():
    import trimesh
    for name in ("crate.obj", "rock.obj"):
        mesh = trimesh.load(asset_path(name), force="mesh")
        assert np.abs(mesh.center_mass).max() < 1e-6, name
    crate = trimesh.load(asset_path("crate.obj"), force="mesh")
    assert np.allclose(crate.extents, 0.6) and crate.volume < 0.6 ** 3  # bevelled


def test_building_has_a_doorway():
    import trimesh
    hut = trimesh.load(asset_path("building.obj"), force="mesh")
    assert np.allclose(hut.bounds, [[-2.0, -1.5, 0.0], [2.0, 1.5, 2.8]])
    v = hut.vertices[hut.faces]                                  # (T, 3, 3)

    def first_hit_y(x, z):
        """y of the first triangle hit by a ray from (x, -5, z) along +y
        (Moller-Trumbore over all triangles; trimesh's own ray casting needs rtree)."""
        o, d = np.array([x, -5.0, z]), np.array([0.0, 1.0, 0.0])
        e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
        p = np.cross(d, e2)
        det = np.einsum("ij,ij->i", e1, p)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = o - v[:, 0]
        u = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        w = (q @ d) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
        hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)
        return o[1] + t[hit].min()

    # through the door (1 m wide, 2 m high) a ray reaches the back wall's inner face ...
    assert first_hit_y(0.0, 1.0) == pytest.approx(1.3)
    # ... beside it, or above the lintel, it stops at the front wall
    assert first_hit_y(1.2, 1.0) == pytest.approx(-1.5)
    assert first_hit_y(0.0, 2.3) == pytest.approx(-1.5)
