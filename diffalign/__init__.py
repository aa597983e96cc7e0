"""diffalign: align diffusion models and LLMs with human preferences and rewards.

Importing the package is cheap: heavy libraries (torch, diffusers, transformers) are
imported by the submodules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
