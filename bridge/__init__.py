"""physcut bridge: trajectory + shot list -> conditioning maps, contact audio, previews."""
from .conditioning import Conditioning, ConditioningError, ShotConditioning

__all__ = ["Conditioning", "ConditioningError", "ShotConditioning"]
