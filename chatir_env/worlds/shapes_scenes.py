"""Shapes scenes: seeded procedural scenes of coloured shapes on a 3x3 grid, and their pixels.

A scene set is stored column-wise (numpy arrays over scenes) so that 50,000 scenes sample, answer
and render in seconds. Object slots beyond a scene's count hold -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SIZES = ("small", "large")
CELLS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
BACKGROUNDS = ("grass", "sand", "water", "stone", "wood")
MAX_OBJECTS = 4

COLOUR_RGB = {
    "red": (220, 30, 30), "green": (20, 160, 40), "blue": (30, 60, 220), "yellow": (250, 230, 30),
    "orange": (250, 140, 0), "purple": (140, 40, 170), "white": (255, 255, 255), "black": (10, 10, 10),
}
# Mid-tone backgrounds, so that every object colour (white and black included) stands out.
BACKGROUND_RGB = {
    "grass": (140, 185, 120), "sand": (215, 195, 150), "water": (110, 150, 195),
    "stone": (150, 150, 150), "wood": (165, 120, 85),
}


@dataclass
class SceneSet:
    """``count[S]``, ``background[S]``, and ``shape/colour/size/cell[S, MAX_OBJECTS]`` (-1 = no object)."""

    count: np.ndarray
    background: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    size: np.ndarray
    cell: np.ndarray

    def __len__(self) -> int:
        return len(self.count)

    def subset(self, rows) -> "SceneSet":
        return SceneSet(*(getattr(self, f)[rows] for f in ("count", "background", "shape", "colour", "size", "cell")))

    def describe(self, i: int) -> str:
        """A full description of scene ``i`` (for people and debugging, never for captions)."""
        parts = [
            f"a {SIZES[self.size[i, j]]} {COLOURS[self.colour[i, j]]} {SHAPES[self.shape[i, j]]} at {CELLS[self.cell[i, j]]}"
            for j in range(self.count[i])
        ]
        return f"{'; '.join(parts)} on {BACKGROUNDS[self.background[i]]}"


def sample_scenes(n: int, seed: int) -> SceneSet:
    """``n`` scenes with 1-4 objects in distinct cells; attributes uniform and independent."""
    rng = np.random.default_rng(seed)
    count = rng.integers(1, MAX_OBJECTS + 1, n)
    present = np.arange(MAX_OBJECTS)[None, :] < count[:, None]
    # Distinct cells: the first MAX_OBJECTS of a random permutation of the 9 cells.
    cell = np.argsort(rng.random((n, len(CELLS))), axis=1)[:, :MAX_OBJECTS]

    def attribute(k: int) -> np.ndarray:
        return np.where(present, rng.integers(0, k, (n, MAX_OBJECTS)), -1)

    return SceneSet(
        count=count,
        background=rng.integers(0, len(BACKGROUNDS), n),
        shape=attribute(len(SHAPES)),
        colour=attribute(len(COLOURS)),
        size=attribute(len(SIZES)),
        cell=np.where(present, cell, -1),
    )


PERTURBATIONS = ("shape", "colour", "size", "cell", "background")


def perturb_scenes(scenes: SceneSet, seed: int, which: np.ndarray | None = None, obj: np.ndarray | None = None) -> SceneSet:
    """A near-twin of each scene with one thing changed: a hard negative for retriever training.

    ``which[i]`` (an index into ``PERTURBATIONS``) and ``obj[i]`` (an object slot) choose the change
    for scene ``i``; a negative entry, or no array, draws it at random.
    """
    rng = np.random.default_rng(seed)
    out = scenes.subset(slice(None))
    out = SceneSet(*(np.array(getattr(out, f)) for f in ("count", "background", "shape", "colour", "size", "cell")))
    n = len(out)
    drawn_which = rng.integers(0, len(PERTURBATIONS), n)
    drawn_obj = (rng.random(n) * out.count).astype(int)
    which = drawn_which if which is None else np.where(np.asarray(which) >= 0, which, drawn_which)
    obj = drawn_obj if obj is None else np.where(np.asarray(obj) >= 0, obj, drawn_obj)
    if np.any(obj >= out.count):
        raise ValueError("perturb_scenes: an object slot is beyond its scene's object count")
    rows = np.arange(n)
    for field_id, name, k in ((0, "shape", len(SHAPES)), (1, "colour", len(COLOURS)), (2, "size", len(SIZES))):
        sel = which == field_id
        arr = getattr(out, name)
        arr[rows[sel], obj[sel]] = (arr[rows[sel], obj[sel]] + rng.integers(1, k, sel.sum())) % k
    sel = np.flatnonzero(which == 3)
    for i in sel:  # move one object to a free cell
        free = np.setdiff1d(np.arange(len(CELLS)), out.cell[i, : out.count[i]])
        out.cell[i, obj[i]] = rng.choice(free)
    sel = which == 4
    out.background[sel] = (out.background[sel] + rng.integers(1, len(BACKGROUNDS), sel.sum())) % len(BACKGROUNDS)
    return out


# --- pixels -------------------------------------------------------------------------------------------

def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            ang = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(ang), cy + rad * np.sin(ang)))
        return pts
    if shape == "cross":
        a, b = r, r * 0.36
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b), (cx + a, cy + b), (cx + b, cy + b),
                (cx + b, cy + a), (cx - b, cy + a), (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b)]
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 40)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        scale = r / 16.5
        return list(zip(cx + x * scale, cy + y * scale + r * 0.1))
    return None  # circle: drawn as an ellipse


def render_scene(scenes: SceneSet, i: int, size: int = 36, supersample: int = 4,
                 jitter_seed: int | None = None) -> Image.Image:
    """Scene ``i`` as an RGB image, drawn at ``supersample`` x and box-downsampled (anti-aliased)."""
    big = size * supersample
    img = Image.new("RGB", (big, big), BACKGROUND_RGB[BACKGROUNDS[scenes.background[i]]])
    draw = ImageDraw.Draw(img)
    cell = big / 3
    rng = np.random.default_rng(jitter_seed if jitter_seed is not None else i)
    for j in range(scenes.count[i]):
        row, col = divmod(int(scenes.cell[i, j]), 3)
        r = cell * (0.42 if SIZES[scenes.size[i, j]] == "large" else 0.25)
        slack = cell / 2 - r
        cx = (col + 0.5) * cell + rng.uniform(-0.5, 0.5) * slack
        cy = (row + 0.5) * cell + rng.uniform(-0.5, 0.5) * slack
        rgb = COLOUR_RGB[COLOURS[scenes.colour[i, j]]]
        shape = SHAPES[scenes.shape[i, j]]
        poly = _shape_polygon(shape, cx, cy, r)
        if poly is None:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
        else:
            draw.polygon(poly, fill=rgb)
    return img.resize((size, size), Image.BOX)


def render_scenes(scenes: SceneSet, size: int = 36, rows=None) -> np.ndarray:
    """``uint8[n, size, size, 3]`` pixels of the scenes at ``rows`` (all by default)."""
    rows = range(len(scenes)) if rows is None else rows
    return np.stack([np.asarray(render_scene(scenes, int(i), size)) for i in rows])
