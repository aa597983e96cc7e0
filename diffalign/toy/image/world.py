"""The toy image world "shapes": prompt grammar, renderer and the fixed train / held-out split.

Every image is one axis-aligned shape of one colour on a plain background, 32×32 RGB, rendered
4× supersampled (so edges are anti-aliased like a decoded image) with size, position and colour
jitter. Prompts come from a small grammar::

    a [small|large] <colour> <shape> [on a <background> background]

6 colours × 3 shapes × (1 + 2 sizes) × (1 + 3 backgrounds) = 216 distinct prompts. The held-out
split holds out one background per colour×shape combination (a Latin square, so every
colour×background and shape×background pair is also held out exactly once out of three): the
held-out prompts are the 54 prompts that name such a (colour, shape, background) triple. They
never appear as training captions; their images do, under captions that leave the background
unnamed ("a red circle" draws any background). So held-out prompts test composing a seen
object with a seen background phrase — generalisation to unseen prompts, as with held-out
captions of a real preference set — not drawing something never seen.

Example:
    >>> world = ShapesWorld()
    >>> specs = world.sample_specs(world.train_prompts[:4], seed=0)
    >>> images = render(specs)  # [4, 3, 32, 32] in [0, 1]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.15),
    "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.60, 0.15, 0.80),
    "orange": (1.00, 0.55, 0.00),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
}
# side of the shape's bounding box, in pixels; below ~10 px a 4×-downsampling VAE blurs
# circles, squares and triangles into the same blob
SIZES: dict[str, tuple[float, float]] = {"small": (10.0, 14.0), "large": (17.0, 24.0)}
ANY_SIZE: tuple[float, float] = (10.0, 24.0)

RESOLUTION = 32  # pixels per side
SUPERSAMPLE = 4  # render at 4× and average-pool: anti-aliased edges
MARGIN = 2.0  # pixels between the shape's bounding box and the border (the scorer reads the border)
COLOUR_JITTER = 0.05  # uniform per channel, on [0, 1]
BACKGROUND_JITTER = 0.03  # uniform per channel, on [0, 1]
SPLIT_SEED = 1234  # fixes which background is held out for each colour×shape pair


@dataclass(frozen=True)
class Prompt:
    """One parsed prompt of the grammar.

    Args:
        colour (str): one of `COLOURS` (None only from the scorer's lenient parser).
        shape (str): one of `SHAPES` (None only from the scorer's lenient parser).
        size (str | None): "small", "large" or None (any size).
        background (str | None): one of `BACKGROUNDS`, or None (any background).
    """

    colour: str | None
    shape: str | None
    size: str | None = None
    background: str | None = None

    @property
    def text(self) -> str:
        """The prompt string, e.g. "a small blue square on a white background"."""
        words = ["a"] + ([self.size] if self.size else []) + [self.colour, self.shape]
        if self.background:
            words += ["on", "a", self.background, "background"]
        return " ".join(words)


def parse_prompt(text: str) -> Prompt:
    """Parses a grammar prompt back into its attributes.

    Args:
        text (str): a prompt such as "a red circle on a black background" (case-insensitive).

    Returns:
        Prompt: its colour, shape, size and background.

    Raises:
        ValueError: if the text does not follow the grammar.
    """
    words = text.lower().strip().rstrip(".").split()
    size = background = None
    try:
        if words[0] != "a":
            raise ValueError
        rest = words[1:]
        if rest[0] in SIZES:
            size, rest = rest[0], rest[1:]
        colour, shape, rest = rest[0], rest[1], rest[2:]
        if rest:
            if len(rest) != 4 or rest[:2] != ["on", "a"] or rest[3] != "background":
                raise ValueError
            background = rest[2]
        if colour not in COLOURS or shape not in SHAPES or (background and background not in BACKGROUNDS):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"prompt {text!r} is not in the shapes grammar "
            "'a [small|large] <colour> <shape> [on a <background> background]'"
        ) from None
    return Prompt(colour, shape, size, background)


def parse_lenient(text: str) -> Prompt:
    """Reads whatever the prompt says about this world: any colour, shape (plural too), size and
    "<background> background" words, anywhere; absent attributes are None.

    Example: "two green squares" -> Prompt("green", "square"); "a dog barking" -> Prompt(None, None).
    """
    words = [w.strip(".,;:!?\"'") for w in text.lower().split()]
    words = [w[:-1] if w[:-1] in SHAPES else w for w in words]  # plurals
    first = lambda vocab: next((w for w in words if w in vocab), None)  # noqa: E731
    bgs = [a for a, b in zip(words, words[1:]) if b == "background" and a in BACKGROUNDS]
    return Prompt(first(COLOURS), first(SHAPES), first(SIZES), bgs[0] if bgs else None)


@dataclass(frozen=True)
class ShapeSpec:
    """Everything needed to render one image (pixel units, 32-px canvas).

    Args:
        prompt (Prompt): the prompt this image illustrates.
        background (str): the drawn background (equals prompt.background when the prompt names one).
        size (float): side of the shape's bounding box, pixels.
        cx (float): centre x of the bounding box, pixels.
        cy (float): centre y of the bounding box, pixels.
        rgb (tuple): jittered object colour in [0, 1].
        bg_rgb (tuple): jittered background colour in [0, 1].
    """

    prompt: Prompt
    background: str
    size: float
    cx: float
    cy: float
    rgb: tuple[float, float, float]
    bg_rgb: tuple[float, float, float]


def _held_out_backgrounds(seed: int = SPLIT_SEED) -> dict[tuple[str, str], str]:
    """Latin-square choice of one held-out background per (colour, shape).

    Returns:
        dict: (colour, shape) -> held-out background; each background is held out for
        exactly one shape per colour and for two colours per shape.
    """
    rng = np.random.default_rng(seed)
    bgs = list(BACKGROUNDS)
    colour_perm = rng.permutation(len(COLOURS))
    shape_perm = rng.permutation(len(SHAPES))
    out = {}
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            out[(colour, shape)] = bgs[(colour_perm[ci] + shape_perm[si]) % len(bgs)]
    return out


@dataclass
class ShapesWorld:
    """The world: all prompts and the fixed train / held-out split.

    Attributes:
        prompts (list[Prompt]): all 216 prompts, in a fixed order.
        held_out_triples (dict): (colour, shape) -> held-out background.
        train_prompts (list[str]): 162 training prompt strings.
        held_out_prompts (list[str]): 54 held-out prompt strings.
    """

    prompts: list[Prompt] = field(default_factory=list)
    held_out_triples: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.held_out_triples = _held_out_backgrounds()
        sizes: list[str | None] = [None, *SIZES]
        bgs: list[str | None] = [None, *BACKGROUNDS]
        self.prompts = [
            Prompt(c, s, z, b) for c, s, z, b in itertools.product(COLOURS, SHAPES, sizes, bgs)
        ]
        self.train_prompts = [p.text for p in self.prompts if not self.is_held_out(p)]
        self.held_out_prompts = [p.text for p in self.prompts if self.is_held_out(p)]

    def is_held_out(self, prompt: Prompt) -> bool:
        """Whether a prompt names a held-out (colour, shape, background) triple."""
        return prompt.background == self.held_out_triples[(prompt.colour, prompt.shape)]

    def sample_specs(self, prompts: list[str], seed: int) -> list[ShapeSpec]:
        """Draws one random image specification per prompt.

        Args:
            prompts (list[str]): grammar prompts; a prompt without a size or background gets a
                random one.
            seed (int): numpy seed; the same prompts and seed give the same specs.

        Returns:
            list[ShapeSpec]: one spec per prompt.
        """
        rng = np.random.default_rng(seed)
        specs = []
        for text in prompts:
            p = parse_prompt(text)
            bgs = list(BACKGROUNDS)
            bg = p.background or bgs[rng.integers(len(bgs))]
            lo, hi = SIZES[p.size] if p.size else ANY_SIZE
            size = float(rng.uniform(lo, hi))
            half = size / 2
            cx, cy = (float(rng.uniform(MARGIN + half, RESOLUTION - MARGIN - half)) for _ in range(2))
            rgb = np.clip(np.array(COLOURS[p.colour]) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3), 0, 1)
            bg_rgb = np.clip(np.array(BACKGROUNDS[bg]) + rng.uniform(-BACKGROUND_JITTER, BACKGROUND_JITTER, 3), 0, 1)
            specs.append(ShapeSpec(p, bg, size, cx, cy, tuple(rgb.tolist()), tuple(bg_rgb.tolist())))
        return specs


def shape_coverage(
    shape: str, cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, resolution: int = RESOLUTION
) -> np.ndarray:
    """Anti-aliased coverage of axis-aligned shapes, 4× supersampled.

    The geometry is shared with the scorer's templates: a circle (ellipse) inscribed in its
    w×h box, a w×h square (rectangle), and an upward triangle with its apex at the top centre
    and its base on the bottom edge of the box.

    Args:
        shape (str): one of `SHAPES`.
        cx, cy (np.ndarray): [N] box centres in pixels (pixel i spans [i, i + 1)).
        w, h (np.ndarray): [N] box width and height in pixels.
        resolution (int): output side in pixels. Default is 32.

    Returns:
        np.ndarray: [N, resolution, resolution] float32 coverage in [0, 1].
    """
    n_sub = resolution * SUPERSAMPLE
    coords = (np.arange(n_sub, dtype=np.float32) + 0.5) / SUPERSAMPLE  # sub-pixel centres
    x = coords[None, None, :]  # [1, 1, S]
    y = coords[None, :, None]  # [1, S, 1]
    cx, cy, w, h = (np.asarray(a, dtype=np.float32)[:, None, None] for a in (cx, cy, w, h))
    if shape == "circle":
        inside = ((x - cx) / (w / 2)) ** 2 + ((y - cy) / (h / 2)) ** 2 <= 1.0
    elif shape == "square":
        inside = (np.abs(x - cx) <= w / 2) & (np.abs(y - cy) <= h / 2)
    elif shape == "triangle":
        depth = (y - (cy - h / 2)) / h  # 0 at the apex, 1 at the base
        inside = (depth >= 0) & (depth <= 1) & (np.abs(x - cx) <= depth * w / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    inside = inside.astype(np.float32)  # [N, S, S]
    n = inside.shape[0]
    return inside.reshape(n, resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(2, 4))


def render(specs: list[ShapeSpec], resolution: int = RESOLUTION, chunk: int = 1024) -> np.ndarray:
    """Renders image specifications.

    Args:
        specs (list[ShapeSpec]): from `ShapesWorld.sample_specs`.
        resolution (int): side in pixels (positions and sizes scale with it). Default is 32.
        chunk (int): images rasterised at once (bounds the supersampling buffer). Default is 1024.

    Returns:
        np.ndarray: [N, 3, resolution, resolution] float32 in [0, 1].
    """
    scale = resolution / RESOLUTION
    out = np.empty((len(specs), 3, resolution, resolution), dtype=np.float32)
    for shape in SHAPES:
        all_idx = [i for i, s in enumerate(specs) if s.prompt.shape == shape]
        for start in range(0, len(all_idx), chunk):
            idx = all_idx[start : start + chunk]
            sel = [specs[i] for i in idx]
            size = np.array([s.size for s in sel]) * scale
            cx, cy = (np.array([getattr(s, a) for s in sel]) * scale for a in ("cx", "cy"))
            cov = shape_coverage(shape, cx, cy, size, size, resolution)[:, None]  # [n, 1, R, R]
            rgb = np.array([s.rgb for s in sel], dtype=np.float32)[:, :, None, None]  # [n, 3, 1, 1]
            bg = np.array([s.bg_rgb for s in sel], dtype=np.float32)[:, :, None, None]
            out[idx] = cov * rgb + (1.0 - cov) * bg
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, 3, H, W] floats in [0, 1] -> [N, H, W, 3] uint8 (for PIL / PNG)."""
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
