"""The command line: fast start, clear errors, stage round trip."""
import subprocess
import sys

import pytest

import physcut_cli


def test_help_starts_fast_without_heavy_imports():
    code = ("import sys, time; t=time.perf_counter(); import physcut_cli; "
            "physcut_cli.build_parser().format_help(); "
            "heavy=[m for m in ('torch','diffusers','mujoco','pybullet','cv2','av') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_has_help(capsys):
    for cmd in ("scenes", "simulate", "inspect", "render", "generate", "run", "bench"):
        with pytest.raises(SystemExit) as e:
            physcut_cli.main([cmd, "--help"])
        assert e.value.code == 0
        assert "usage: physcut" in capsys.readouterr().out


def test_noise_kind_choices_are_the_bridges():
    """The parser spells the choices out (importing bridge would slow --help); they must
    stay the bridge's."""
    from bridge.noise import KINDS, MEANS
    parser = physcut_cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for cmd in ("render", "run"):
        opt = next(a for a in sub.choices[cmd]._actions if a.dest == "noise_kind")
        assert sorted(opt.choices) == sorted(KINDS)
        opt = next(a for a in sub.choices[cmd]._actions if a.dest == "noise_means")
        assert sorted(opt.choices) == sorted(MEANS)


def test_noise_period_reaches_the_bridge():
    parser = physcut_cli.build_parser()
    kw = physcut_cli._render_options(parser.parse_args(["render", "t.npz", "-o", "d", "--noise-period", "8"]))
    assert kw["noise_period"] == 8
    assert "noise_period" not in physcut_cli._render_options(parser.parse_args(["render", "t.npz", "-o", "d"]))
    assert physcut_cli._render_options(parser.parse_args(["run", "drop_test", "-o", "d", "--noise-period", "4"])
                                       )["noise_period"] == 4
    kw = physcut_cli._render_options(parser.parse_args(["run", "drop_test", "-o", "d", "--noise-means", "octaves"]))
    assert kw["noise_means"] == "octaves" and "noise_means" not in physcut_cli._render_options(
        parser.parse_args(["render", "t.npz", "-o", "d"]))


def test_no_carry_reaches_the_builtin_pipeline_and_other_backends_refuse_it():
    import generator
    from generator.base import GeneratorError
    parser = physcut_cli.build_parser()
    kw = physcut_cli._generator_options(parser.parse_args(["generate", "c", "--no-carry"]))
    assert kw == {"carry": False}
    assert "carry" not in physcut_cli._generator_options(parser.parse_args(["run", "drop_test"]))
    assert generator.load("builtin", **kw).carry is False
    with pytest.raises(GeneratorError, match="carry"):
        generator.load("preview", **kw)


def test_unknown_scene_is_a_clear_error(capsys):
    rc = physcut_cli.main(["simulate", "no_such_scene", "-o", "/tmp/x.npz"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown scene 'no_such_scene'" in err and "valid choices" in err


def test_missing_trajectory_is_a_clear_error(tmp_path, capsys):
    rc = physcut_cli.main(["inspect", str(tmp_path / "missing.npz")])
    assert rc == 2
    assert "file not found" in capsys.readouterr().err


def test_bad_resolution_flag(capsys, tmp_path):
    with pytest.raises(physcut_cli.CLIError, match="WIDTHxHEIGHT"):
        physcut_cli._parse_resolution("512by288")


def test_param_parsing():
    assert physcut_cli._parse_params(["n=3", "name=abc", "xs=[1,2]"]) == {"n": 3, "name": "abc", "xs": [1, 2]}
    with pytest.raises(physcut_cli.CLIError, match="KEY=VALUE"):
        physcut_cli._parse_params(["oops"])


def test_scene_export_and_simulate_from_file(tmp_path, capsys):
    f = tmp_path / "drop.yaml"
    assert physcut_cli.main(["scenes", "drop_test", "--param", "duration=1.0", "--save", str(f)]) == 0
    assert f.exists()
    out = tmp_path / "t.npz"
    assert physcut_cli.main(["simulate", str(f), "-o", str(out), "-q"]) == 0
    assert physcut_cli.main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scene 'drop_test'" in text and ("24 frames" in text or "30 frames" in text)


def test_scene_file_error_names_line(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    physcut_cli.main(["scenes", "drop_test", "--param", "duration=1.0", "--save", str(f)])
    text = f.read_text().replace("material: rubber", "material: unobtainium", 1)
    f.write_text(text)
    assert physcut_cli.main(["simulate", str(f), "-o", str(tmp_path / "t.npz"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:" in err and "unobtainium" in err and "valid choices" in err


def test_bench_audio_writes_its_results(tmp_path, capsys):
    import json
    out = tmp_path / "audio.json"
    assert physcut_cli.main(["bench", "audio", "--scenes", "drop_test", "-o", str(out)]) == 0
    row = json.loads(out.read_text())["scenes"][0]
    assert row["scene"] == "drop_test" and row["impacts"] > 10
    # drop_test's impacts are far apart: nearly every one is heard as its own onset
    assert row["share_with_onset"] >= 0.8
    assert "drop_test" in capsys.readouterr().out
