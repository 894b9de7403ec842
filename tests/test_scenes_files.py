"""Scene files (scenes/files.py): strict errors naming file, line, field and the
valid choices, in YAML and JSON; round trips API -> file -> API."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

import scenes
from scenes import (Box, Capsule, CraneRig, Cylinder, DollyRig, FollowRig, Handheld,
                    LookAtRig, Material, Mesh, OrbitRig, Scene, SceneError, Sphere, StaticRig,
                    crossfade)
from scenes.assets import asset_path
from scenes.files import dumps, load_file, loads, save_file

FORMATS = ("yaml", "json")


def small_scene() -> Scene:
    s = Scene(name="small", duration=2.0, fps=24, physics_hz=480)
    s.add_ground()
    s.add_prop("ball", Sphere(0.1), pos=(0.0, 0.0, 1.0), material="rubber", mass=0.5)
    s.add_prop("crate", Box((0.2, 0.2, 0.2)), pos=(1.0, 0.0, 0.21), material="wood")
    hero = s.add_character("hero", pos=(-2.0, 0.0))
    hero.walk_to((0.0, 1.0), at=0.5)
    s.kick("crate", (3.0, 0.0, 0.0), at=0.7)
    s.add_camera("wide", StaticRig(pos=(0.0, -6.0, 2.0), look_at=(0.0, 0.0, 0.5)))
    s.add_camera("close", FollowRig(target="ball"))
    s.shot("wide", 0.0, 1.0).shot("close", 1.0, 2.0, transition=crossfade(0.5))
    return s.validate()


def write(tmp_path, data: dict, fmt: str, name: str = "scene"):
    """Write ``data`` as-is (no validation) in ``fmt``; return (path, text)."""
    if fmt == "yaml":
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    else:
        text = json.dumps(data, indent=2)
    path = tmp_path / f"{name}.{fmt}"
    path.write_text(text, encoding="utf-8")
    return path, text


def line_with(text: str, token: str) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if token in line]
    assert len(hits) == 1, f"token {token!r} on lines {hits}"
    return hits[0]


def load_error(path) -> SceneError:
    with pytest.raises(SceneError) as info:
        load_file(path)
    return info.value


# --------------------------------------------------------------------------- errors
def _unknown_key(d):
    d["props"][0]["colour_zz"] = [1, 0, 0, 1]
    return "colour_zz", "props[0].colour_zz", ["angvel", "color", "density"]


def _wrong_type(d):
    d["props"][1]["mass"] = "heavy_zz"
    return "heavy_zz", "props[1].mass", None


def _out_of_range(d):
    d["cameras"][0]["fov"] = 500.5
    return "500.5", "cameras[0].fov", None


def _unknown_material(d):
    d["props"][0]["material"] = "unobtainium"
    return "unobtainium", "props[0].material", ["concrete", "flesh", "glass", "metal", "rubber", "wood"]


def _unknown_shape(d):
    d["props"][1]["shape"] = {"type": "torus", "radius": 1.0}
    return "torus", "props[1].shape.type", ["box", "capsule", "cylinder", "mesh", "sphere"]


def _unknown_action(d):
    d["characters"][0]["actions"].append({"type": "moonwalk", "at": 1.25})
    return "moonwalk", "characters[0].actions[1].type", ["fall", "jump", "kick", "punch", "walk_to"]


def _unknown_rig(d):
    d["cameras"][1]["rig"]["type"] = "drone"
    return "drone", "cameras[1].rig.type", ["crane", "dolly", "follow", "orbit", "static"]


def _shot_outside(d):
    d["shots"][1]["end"] = 3.25
    d["duration"] = 2.0
    return "3.25", "shots[1].end", None


def _overlap(d):
    d["shots"][1]["start"] = 0.75
    return "0.75", "shots[1].start", None


def _gap(d):
    d["shots"][1]["start"] = 1.25
    return "1.25", "shots[1].start", None


def _physics_hz(d):
    d["physics_hz"] = 500
    return "500", "physics_hz", None


def _missing_mesh(d):
    d["statics"].append({"name": "hut", "shape": {"type": "mesh", "path": "no_such_mesh.obj",
                                                  "convex": False}})
    return "no_such_mesh.obj", "statics[1].shape.path", None


def _unknown_body(d):
    d["impulses"][0]["body"] = "ghost_zz"
    return "ghost_zz", "impulses[0].body", ["ball", "crate"]


def _bad_version(d):
    d["schema_version"] = 99
    return "99", "schema_version", ["1"]


def _unreadable_mesh(d):
    d["props"][1]["shape"] = {"type": "mesh", "path": "garbage.obj"}
    return "garbage.obj", "props[1].shape.path", None


CASES = {
    "unreadable mesh": (_unreadable_mesh, "holds no triangles"),
    "unknown key": (_unknown_key, "unknown key 'colour_zz'"),
    "wrong type": (_wrong_type, "expected a number"),
    "out of range": (_out_of_range, "must be <= 150"),
    "unknown material": (_unknown_material, "unknown material 'unobtainium'"),
    "unknown shape": (_unknown_shape, "unknown shape type 'torus'"),
    "unknown action": (_unknown_action, "unknown action type 'moonwalk'"),
    "unknown rig": (_unknown_rig, "unknown rig type 'drone'"),
    "shot outside timeline": (_shot_outside, "outside the timeline"),
    "overlapping shots": (_overlap, "overlapping the previous shot"),
    "gap between shots": (_gap, "gap in the shot list from 1.0 s to 1.25 s"),
    "physics_hz not a multiple": (_physics_hz, "not a whole multiple of the frame rate 24"),
    "missing mesh": (_missing_mesh, "mesh file 'no_such_mesh.obj' not found"),
    "unknown impulse body": (_unknown_body, "unknown prop 'ghost_zz'"),
    "schema version": (_bad_version, "unsupported scene schema version 99"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_error_names_file_line_field_and_choices(tmp_path, fmt, case):
    mutate, reason = CASES[case]
    data = small_scene().to_dict()
    token, field, choices = mutate(data)
    path, text = write(tmp_path, data, fmt)
    (tmp_path / "garbage.obj").write_bytes(b"not a mesh \x00\x01\n")
    err = load_error(path)
    assert err.file == str(path)
    assert err.path == field
    assert err.line == line_with(text, token), (str(err), text)
    assert reason in err.reason
    msg = str(err)
    assert msg.startswith(f"{path}:{err.line}: field '{field}': ")
    if choices:
        assert err.choices is not None and set(choices) <= set(map(str, err.choices)), msg
        assert "valid choices: " in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_required_key_points_at_its_parent(tmp_path, fmt):
    data = small_scene().to_dict()
    del data["props"][1]["shape"]
    path, text = write(tmp_path, data, fmt)
    err = load_error(path)
    assert err.path == "props[1].shape" and "missing required key 'shape'" in err.reason
    # the line of the list item that lacks the key
    name_line = line_with(text, '"name": "crate"' if fmt == "json" else "name: crate")
    assert err.line == (name_line - 1 if fmt == "json" else name_line)


def test_yaml_duplicate_key_names_second_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nduration: 2.0\nfps: 24\nname: b\n")
    err = load_error(path)
    assert (err.line, err.path) == (4, "name")
    assert "duplicate key 'name' (first given on line 1)" in str(err)


def test_json_duplicate_key_names_second_line(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{\n  "props": [\n    {"name": "a",\n     "name": "b"}\n  ]\n}\n')
    err = load_error(path)
    assert (err.line, err.path) == (4, "props[0].name")
    assert "duplicate key 'name'" in str(err)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: a\nduration: 2.0\nprops:\n  - name: [unclosed\n  - name: b\n")
    err = load_error(path)
    assert err.file == str(path) and err.line in (4, 5)
    assert str(err).startswith(f"{path}:{err.line}: YAML syntax error")


def test_json_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "a",\n  "duration": 2.0,\n}\n')
    err = load_error(path)
    assert err.line == 4 and "JSON syntax error" in str(err)


def test_json_rejects_nan_with_line(tmp_path):
    data = small_scene().to_dict()
    data["props"][0]["mass"] = float("nan")
    path, text = write(tmp_path, data, "json")
    err = load_error(path)
    assert err.path == "props[0].mass" and err.line == line_with(text, "NaN")
    assert "not a JSON number" in str(err)


def test_yaml_nan_is_rejected_as_not_finite(tmp_path):
    data = small_scene().to_dict()
    data["props"][0]["mass"] = float("nan")
    path, text = write(tmp_path, data, "yaml")
    err = load_error(path)
    assert err.path == "props[0].mass" and err.line == line_with(text, ".nan")
    assert "finite" in str(err)


def test_control_character_and_bom(tmp_path):
    p = tmp_path / "bell.yaml"
    p.write_text('name: a\nduration: 2.0\ndescription: "ring \x07"\n')
    err = load_error(p)
    assert err.line == 3 and "U+0007" in str(err)
    p = tmp_path / "bom.json"
    p.write_text(dumps(small_scene(), "json"), encoding="utf-8-sig")
    assert load_file(p).content_hash() == small_scene().content_hash()


def test_file_not_found_names_file(tmp_path):
    err = load_error(tmp_path / "nowhere.yaml")
    assert str(err) == f"{tmp_path / 'nowhere.yaml'}: scene file not found"


def test_unknown_suffix_and_non_mapping(tmp_path):
    p = tmp_path / "scene.toml"
    p.write_text("name = 'a'")
    err = load_error(p)
    assert "unknown scene file type '.toml'" in str(err) and ".yaml" in err.choices
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    assert "expected a mapping of scene fields" in str(load_error(p))
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing\n")
    assert "the scene file is empty" in str(load_error(p))
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    assert "not UTF-8" in str(load_error(p))


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"name: !!python/object/apply:os.mkdir ['{marker}']\nduration: 2.0\n")
    err = load_error(p)
    assert "unsupported YAML tag" in str(err) and err.line == 1 and err.path == "name"
    assert not marker.exists()


def test_alias_bomb_is_cheap(tmp_path):
    # ten levels of ten-fold aliases would expand to 10^10 strings if copied
    lines = ['a0: &a0 "lol"']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    err = load_error(p)
    assert time.perf_counter() - t0 < 2.0
    assert "unknown key 'a0'" in str(err) and err.line == 1


def test_yaml_core_schema_scalars():
    # YAML 1.2: 'no' and 'on' are strings, 1e-3 is a number, 010 is ten
    base = dumps(small_scene(), "yaml")
    text = base.replace("name: small", "name: no").replace("mass: 0.5", "mass: 5e-1")
    text = text.replace("width: 512", "width: 0512", 1)
    s = loads(text, "yaml")
    assert s.name == "no" and s.props[0].mass == 0.5 and s.cameras[0].width == 512
    s.name = "on"
    s.props[0].name = "1e3"
    s.impulses[0].body = "1e3"
    s.cameras[1].rig.target = "1e3"
    s.description = "two\nlines"
    for fmt in FORMATS:
        assert loads(dumps(s, fmt), fmt).to_dict() == s.to_dict()


def test_json_with_tabs_unicode_and_escapes():
    d = small_scene().to_dict()
    d["description"] = "domin\u00f3 \U0001f3b2 caf\u00e9 a/b"
    text = json.dumps(d, indent="\t", ensure_ascii=True)  # \ud83c\udfb2 surrogate pair
    assert "\t" in text and "\\ud83c\\udfb2" in text
    text = text.replace('"description"', '"description"\t', 1).replace("/", "\\/")
    s = loads(text, "json")
    assert s.description == "domin\u00f3 \U0001f3b2 caf\u00e9 a/b"
    assert s.to_dict() == d


# --------------------------------------------------------------------------- round trips
def rich_scene() -> Scene:
    """Every kind of description element, meshes by absolute path."""
    s = Scene(name="rich", duration=3.0, fps=30, physics_hz=900, gravity=(0.0, 0.0, -9.8),
              description="all the things")
    s.add_material("steel", Material(0.3, 0.5, 7900.0, "metal", (0.5, 0.5, 0.55, 1.0)))
    s.add_ground(material="concrete")
    s.add_wall("wall", (-5.0, 4.0), (5.0, 4.0))
    s.add_ramp("ramp", (3.0, 0.0, 0.0), 2.0, 1.0, 0.5, yaw=0.3)
    s.add_stairs("stairs", (-4.0, -3.0, 0.0), steps=3)
    s.add_mesh("hut", asset_path("building.obj"), pos=(0.0, 8.0, 0.0))
    s.add_prop("crate", Mesh(asset_path("crate.obj")), pos=(1.0, 1.0, 0.31), mass=10.0)
    s.add_prop("can", Cylinder(0.05, 0.1), pos=(1.0, -1.0, 0.11), material="steel", density=2700.0)
    s.add_prop("pill", Capsule(0.05, 0.1), pos=(-1.0, -1.0, 0.5), linvel=(1.0, 0.0, 0.0),
               angvel=(0.0, 0.0, 3.0), color=(1.0, 0.0, 0.0, 1.0))
    s.kick("crate", (1.0, 2.0, 3.0), at=0.5, point=(1.0, 1.0, 0.5))
    s.push("can", (0.0, 5.0, 0.0), 0.2, 0.4)
    a = s.add_character("a", pos=(0.0, -2.0), yaw=1.0, height=1.8)
    b = s.add_character("b", pos=(1.0, -2.0), yaw=-2.0)
    a.walk_to((0.5, -2.0), at=0.1).punch("b", at=1.0).kick("b/torso", at=1.6, foot="left")
    a.jump(2.0, velocity=(1.0, 0.0, 3.0)).land(2.5)
    b.turn(0.5, at=0.1).receive_hit(1.2).fall(1.8).get_up(2.4)
    s.add_camera("static", StaticRig(), shake=Handheld(seed=3))
    s.add_camera("look", LookAtRig(pos=(3.0, 3.0, 2.0), target="a"), fov=35.0, width=640, height=360)
    s.add_camera("dolly", DollyRig(points=[(0, -5, 1), (2, -5, 1), (4, -4, 2)], start=0.0, end=1.0,
                                   target="crate"))
    s.add_camera("orbit", OrbitRig(target="b", radius=3.0, period=5.0))
    s.add_camera("crane", CraneRig(swing=0.5, start=1.0, end=3.0))
    s.add_camera("follow", FollowRig(target="a/torso", halflife=0.0))
    for i, cam in enumerate(["static", "look", "dolly", "orbit", "crane", "follow"]):
        s.shot(cam, i * 0.5, (i + 1) * 0.5, transition=crossfade(0.2) if i % 2 else None,
               prompt=f"shot {i}")
    return s.validate()


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_file_api_round_trip(tmp_path, fmt):
    for scene in (small_scene(), rich_scene()):
        path = save_file(scene, tmp_path / f"{scene.name}.{fmt}")
        back = load_file(path)
        assert back.to_dict() == scene.to_dict()
        assert back.content_hash() == scene.content_hash()
        # file -> API -> file is textually stable too
        assert dumps(back, fmt) == path.read_text(encoding="utf-8")
        assert scenes.load(str(path)).content_hash() == scene.content_hash()


def test_yaml_and_json_give_the_same_scene(tmp_path):
    s = rich_scene()
    a = load_file(save_file(s, tmp_path / "a.yml"))
    b = load_file(save_file(s, tmp_path / "b.json"))
    assert a.to_dict() == b.to_dict() == s.to_dict()


def test_saved_yaml_is_readable_block_style(tmp_path):
    text = save_file(small_scene(), tmp_path / "s.yaml").read_text()
    assert text.startswith("schema_version: 1\nname: small\n")
    assert "  pos: [0.0, 0.0, 1.0]\n" in text and "props:\n- name: ball\n" in text
    data = json.loads(save_file(small_scene(), tmp_path / "s.json").read_text())
    assert data["schema_version"] == scenes.SCHEMA_VERSION


def test_save_refuses_invalid_scene_and_keeps_old_file(tmp_path):
    path = save_file(small_scene(), tmp_path / "s.yaml")
    before = path.read_text()
    bad = small_scene()
    bad.shots[1].end = 5.0
    with pytest.raises(SceneError, match="outside the timeline"):
        save_file(bad, path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_relative_mesh_paths_resolve_against_the_file(tmp_path, monkeypatch):
    (tmp_path / "meshes").mkdir()
    shutil.copy(asset_path("crate.obj"), tmp_path / "meshes" / "box.obj")
    d = small_scene().to_dict()
    d["props"][1]["shape"] = {"type": "mesh", "path": "meshes/box.obj"}
    path, _ = write(tmp_path, d, "yaml")
    monkeypatch.chdir("/")
    s = load_file(path)
    assert s.props[1].shape.path == str(tmp_path / "meshes" / "box.obj")
    # absolute paths survive save -> load anywhere
    again = load_file(save_file(s, tmp_path / "elsewhere" / "copy.json"))
    assert again.to_dict() == s.to_dict()


def test_scene_hash_follows_mesh_contents_not_folders(tmp_path):
    """The same scene file with its mesh, copied to two folders: one hash; another mesh
    file of the same name: another hash; the scene's description keeps the path."""
    d = small_scene().to_dict()
    d["props"][1]["shape"] = {"type": "mesh", "path": "meshes/box.obj"}
    paths = []
    for folder, mesh in (("a", "crate.obj"), ("b", "crate.obj"), ("c", "rock.obj")):
        (tmp_path / folder / "meshes").mkdir(parents=True)
        shutil.copy(asset_path(mesh), tmp_path / folder / "meshes" / "box.obj")
        paths.append(write(tmp_path / folder, d, "yaml")[0])
    a, b, c = (load_file(p) for p in paths)
    assert a.to_dict() != b.to_dict()                     # absolute paths differ
    assert a.content_hash() == b.content_hash() != c.content_hash()
    canonical = a.to_dict()
    assert a.content_hash(canonical) == a.content_hash() and canonical == a.to_dict()
    assert canonical["props"][1]["shape"]["path"] == str(tmp_path / "a" / "meshes" / "box.obj")


def test_example_scene_file_loads_with_its_meshes(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = scenes.load(asset_path("example_scene.yaml"))
    meshes = [b.shape.path for b in s.statics + s.props if isinstance(b.shape, Mesh)]
    assert len(meshes) == 4 and all(p.startswith("/") for p in meshes)
    assert s.duration == 4.0 and len(s.shots) == 2


def test_unknown_asset_lists_choices():
    with pytest.raises(SceneError, match="unknown asset 'nope.obj'.*crate.obj"):
        asset_path("nope.obj")
    with pytest.raises(SceneError):
        asset_path("../files.py")


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_api_file_api_same_rollout(tmp_path, engine):
    """A scene and its file give bit-identical trajectories."""
    import sim

    s = Scene(name="roll", duration=1.0, fps=24, physics_hz=480)
    s.add_ground()
    s.add_prop("ball", Sphere(0.1), pos=(0.0, 0.0, 0.8), material="rubber", linvel=(1.0, 0.3, 0.0))
    s.add_prop("crate", Mesh(asset_path("crate.obj")), pos=(0.9, 0.0, 0.31), mass=8.0, angvel=(0, 0, 1))
    s.add_prop("can", Cylinder(0.05, 0.1), pos=(-0.5, 0.2, 0.4), material="metal")
    s.kick("can", (0.5, 0.0, 1.0), at=0.25)
    s.add_camera("cam", StaticRig())
    s.shot("cam", 0.0, 1.0)
    s.validate()
    for fmt in FORMATS:
        back = load_file(save_file(s, tmp_path / f"roll.{fmt}"))
        a = sim.rollout(s, engine=engine, seed=0)
        b = sim.rollout(back, engine=engine, seed=0)
        assert a.scene_hash == b.scene_hash == s.content_hash()
        assert a.body_names == b.body_names and a.status == b.status == "ok"
        for name in ("body_pos", "body_quat", "body_linvel", "body_angvel", "contact_impulse"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.shape == y.shape and x.tobytes() == y.tobytes(), name
        assert abs(a.body_pos[-1, a.body_names.index("ball"), 2] - 0.8) > 0.3  # it moved


@pytest.mark.parametrize("fmt", FORMATS)
def test_awkward_strings_round_trip(fmt):
    # NEL (U+0085) inside single quotes is folded by PyYAML; line/paragraph
    # separators, BOM, NUL, quotes and YAML indicators must all survive
    s = small_scene()
    for text in ("\x85", "a\x85b", "a\n\x85b", "\u2028", "x\u2029", "\ufeff", "\x00", " lead",
                 "trail ", "'\"", "- item", "key: value", "#hash", "&anchor", "*alias", "!tag",
                 "~", "null", "True", "0x1F", "1_000", "12:30", ".inf", "", "a  \nb", "\r\n"):
        s.description = text
        s.shots[0].prompt = text
        assert loads(dumps(s, fmt), fmt).to_dict() == s.to_dict(), repr(text)


def test_example_scene_simulates_from_any_folder(tmp_path, monkeypatch):
    """Relative mesh paths in a file work wherever the process runs: the rock
    rolls down the ramp mesh and off its foot (x = -1 m)."""
    import sim
    monkeypatch.chdir(tmp_path)
    scene = scenes.load(asset_path("example_scene.yaml"))
    traj = sim.rollout(scene, engine="mujoco")
    rock = traj.body_names.index("rock")
    assert traj.status == "ok" and traj.body_pos[-1, rock, 0] < -0.8
