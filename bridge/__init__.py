"""physcut bridge: trajectory + shot list -> conditioning maps, contact audio, previews."""
from .conditioning import Conditioning, ConditioningError, ShotConditioning
from .layers import LAYERS, RenderError, register_layer
from .render import MAX_RESOLUTION, render, render_to_dir

__all__ = ["Conditioning", "ConditioningError", "ShotConditioning", "LAYERS", "RenderError",
           "register_layer", "render", "render_to_dir", "MAX_RESOLUTION"]
