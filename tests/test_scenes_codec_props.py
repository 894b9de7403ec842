"""Property tests (hypothesis) for the schema codec and the file formats:
random valid props, statics and cameras survive encode -> decode and
API -> YAML/JSON text -> API unchanged."""
from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes import (Box, Camera, Capsule, CraneRig, Crossfade, Cut, Cylinder, DollyRig, FollowRig,
                    Handheld, LookAtRig, MATERIALS, Mesh, OrbitRig, Prop, Scene, Sphere, Static,
                    StaticRig, schema)
from scenes.files import dumps, loads

# fixed examples by default (a stable CI run); HYP_N=1000 explores with fresh ones
_N = os.environ.get("HYP_N")
SETTINGS = settings(max_examples=int(_N or 60), derandomize=_N is None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
# wide exponents on purpose: 1e-05 and 1e+16 are where YAML 1.1 readers go wrong
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, exclude_min=False)
unit = st.floats(min_value=0.0, max_value=1.0)
vec3 = st.tuples(finite, finite, finite)
names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/"),
                min_size=1, max_size=10)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
colors = st.none() | st.tuples(unit, unit, unit, unit)
materials = st.sampled_from(sorted(MATERIALS))


@st.composite
def quats(draw):
    q = draw(st.tuples(*[st.floats(-1, 1)] * 4))
    n = math.sqrt(sum(c * c for c in q))
    return (1.0, 0.0, 0.0, 0.0) if n < 1e-3 else tuple(c / n for c in q)


shapes = st.one_of(
    st.builds(Box, st.tuples(positive, positive, positive)),
    st.builds(Sphere, positive),
    st.builds(Capsule, positive, positive),
    st.builds(Cylinder, positive, positive),
    st.builds(Mesh, st.just("/abs/mesh.obj"), positive, st.just(True)),
)


@st.composite
def props(draw, name=names):
    mass_or_density = draw(st.sampled_from(["mass", "density", "neither"]))
    return Prop(draw(name), draw(shapes), draw(vec3), draw(quats()), draw(materials),
                draw(positive) if mass_or_density == "mass" else None,
                draw(positive) if mass_or_density == "density" else None,
                draw(vec3), draw(vec3), draw(colors))


statics = st.builds(Static, names, shapes, vec3, quats(), materials, colors)

rigs = st.one_of(
    st.builds(StaticRig, vec3, vec3),
    st.builds(LookAtRig, vec3, st.just("ball"), vec3),
    st.builds(FollowRig, st.just("ball"), vec3, st.floats(0, 10), vec3),
    st.builds(DollyRig, st.lists(vec3, min_size=2, max_size=5), st.floats(0, 5), st.floats(0, 5),
              vec3, st.none() | st.just("ball")),
    st.builds(OrbitRig, vec3, st.none() | st.just("ball"), positive, finite, positive, finite),
    st.builds(CraneRig, vec3, st.floats(0, 10), finite, finite, finite, st.floats(0, 5),
              st.floats(0, 5), vec3, st.none() | st.just("ball")),
)
shakes = st.none() | st.builds(Handheld, st.floats(0, 20), st.floats(0, 1), st.floats(0.05, 20),
                               st.integers(-2**31, 2**31))


@st.composite
def cameras(draw, name=names):
    near = draw(st.floats(1e-4, 10))
    return Camera(draw(name), draw(rigs), draw(st.floats(5, 150)), draw(st.integers(8, 4096)),
                  draw(st.integers(8, 4096)), near, near + draw(positive), draw(shakes))


@given(props())
@SETTINGS
def test_prop_codec_identity(p):
    assert schema.decode(Prop, schema.encode(p)) == p


@given(statics)
@SETTINGS
def test_static_codec_identity(s):
    assert schema.decode(Static, schema.encode(s)) == s


@given(cameras())
@SETTINGS
def test_camera_codec_identity(c):
    assert schema.decode(Camera, schema.encode(c)) == c


@st.composite
def scenes_(draw):
    fps = draw(st.sampled_from([24, 25, 30, 60]))
    frames = draw(st.integers(2, 400))
    scene = Scene(name=draw(texts), duration=frames / fps, fps=fps,
                  physics_hz=fps * draw(st.integers(3, 40)), description=draw(texts),
                  gravity=draw(vec3))
    scene.statics = draw(st.lists(statics, max_size=3, unique_by=lambda s: s.name))
    used = {s.name for s in scene.statics}
    scene.props = [draw(props(name=st.just("ball")))] + draw(
        st.lists(props(name=names.filter(lambda n: n not in used | {"ball"})), max_size=3,
                 unique_by=lambda p: p.name))
    scene.cameras = draw(st.lists(cameras(), min_size=1, max_size=3, unique_by=lambda c: c.name))
    # a shot list covering the timeline: random cut frames, random cameras
    cuts = sorted(draw(st.sets(st.integers(1, frames - 1), max_size=min(4, frames - 1))))
    bounds = [0] + cuts + [frames]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        short = min(b - a, (bounds[i] - bounds[i - 1]) if i else b - a) / fps
        fade = draw(st.booleans()) and i > 0
        scene.shot(draw(st.sampled_from([c.name for c in scene.cameras])), a / fps, b / fps,
                   transition=Crossfade(short) if fade else Cut(), prompt=draw(texts))
    return scene.validate()


@given(scenes_(), st.sampled_from(["yaml", "json"]))
@SETTINGS
def test_scene_text_round_trip(scene, fmt):
    text = dumps(scene, fmt)
    back = loads(text, fmt)
    assert back.to_dict() == scene.to_dict()
    assert back.content_hash() == scene.content_hash()
    assert dumps(back, fmt) == text


@given(scenes_(), st.sampled_from(["yaml", "json"]), st.data())
@SETTINGS
def test_error_line_points_at_the_bad_key(scene, fmt, data):
    """An unknown key injected anywhere in a prop or camera is reported on its own
    line, with the full field path."""
    import json

    import yaml
    import pytest
    from scenes import SceneError
    from scenes.files import _Dumper

    d = scene.to_dict()
    group = data.draw(st.sampled_from(["props", "cameras"]))
    k = data.draw(st.integers(0, len(d[group]) - 1))
    d[group][k]["zz_unknown"] = 1
    if fmt == "yaml":
        text = yaml.dump(d, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(d, indent=1, ensure_ascii=False)
    line = [i + 1 for i, s in enumerate(text.split("\n")) if "zz_unknown" in s]
    with pytest.raises(SceneError) as info:
        loads(text, fmt, file="f")
    assert info.value.path == f"{group}[{k}].zz_unknown"
    assert [info.value.line] == line


def _paths(value, prefix=()):
    """Every (path tuple) into a nested dict/list value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | finite | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


@given(st.sampled_from(["yaml", "json"]), st.data())
@SETTINGS
def test_any_corruption_is_a_located_scene_error(fmt, data):
    """Replace or delete any value of a valid scene file: loading either succeeds or
    raises SceneError naming a line of the file -- never another exception."""
    import json

    import yaml
    from scenes import SceneError
    from scenes.files import _Dumper
    from test_scenes_files import rich_scene  # tests/ is on sys.path under pytest

    d = rich_scene().to_dict()
    paths = [p for p in _paths(d) if p]
    path = data.draw(st.sampled_from(paths))
    parent = d
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(json_values)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    if fmt == "yaml":
        text = yaml.dump(d, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(d, indent=1, ensure_ascii=False)
    try:
        loads(text, fmt, file="f")
    except SceneError as e:
        assert e.file == "f" and e.line is not None and 1 <= e.line <= text.count("\n") + 1, str(e)
