"""Build script for the one compiled part of physcut: `sim._native`, the MuJoCo
rollout's per-physics-step loop in C (see sim/_native.c). Everything else is in
pyproject.toml. The extension compiles against the headers shipped in the mujoco
wheel and links to its libmujoco; it is optional: without a C compiler the build
goes on and `sim.rollout` uses the equivalent Python loop."""
import os

from setuptools import Extension, setup


def _mujoco_paths():
    import mujoco
    root = os.path.dirname(mujoco.__file__)
    lib = sorted(f for f in os.listdir(root) if f.startswith("libmujoco.so"))
    return os.path.join(root, "include"), root, lib[0]


include, libdir, libname = _mujoco_paths()
setup(ext_modules=[Extension(
    "sim._native", ["sim/_native.c"],
    include_dirs=[include], library_dirs=[libdir], libraries=[":" + libname],
    # the same IEEE double arithmetic as the Python loop (no fused multiply-add)
    extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11"],
    optional=True,
)])
