"""Joint search of network, precision and tile (hardware-aware NAS for in-memory computing): docs/explore.md."""

from .run import STRATEGIES, ExploreConfig, explore
from .space import DIMENSIONS, ExploreError, Space

__all__ = ["DIMENSIONS", "STRATEGIES", "ExploreConfig", "ExploreError", "Space", "explore"]
