"""The bundled scene library: importing this package registers every scene.

Each module holds one scene factory decorated with `scenes.register`; list them
with `scenes.available()` or `physcut scenes`.
"""
from . import bowling, brawl, dominoes, drop_test, rooftop_chase  # noqa: F401
