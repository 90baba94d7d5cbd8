"""The flywheel's loop as an SVG: `python docs/diagrams/loop.py` writes
docs/images/flywheel-loop.svg.

Seven stages on a ring, each with the commands that run it; an arrow from each to the next, and
from the last back to the first. tests/test_docs.py checks that the committed SVG is this
script's output, so edit the STAGES here and run the script again.
"""

from __future__ import annotations

import math
import sys
from html import escape
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "images" / "flywheel-loop.svg"

# (stage, the commands that run it: one or two lines)
STAGES = [
    ("collect", ("synth · robot teleop", "collect · hilserl")),
    ("outcomes", ("outcomes", "episode_success")),
    ("value", ("train-estimator", "estimate")),
    ("labels", ("label", "advantage prompts")),
    ("policy", ("train-policy", "AWBC or BC")),
    ("gate", ("eval-policy", "paired seeds")),
    ("serve", ("export", "serve-reward")),
]
WIDTH, HEIGHT = 900, 540
CX, CY, RX, RY = WIDTH / 2, HEIGHT / 2 + 6, 330, 200
BOX_W, BOX_H = 170, 64


def centre(i: int) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * i / len(STAGES)
    return CX + RX * math.cos(angle), CY + RY * math.sin(angle)


def edge_point(x: float, y: float, tx: float, ty: float) -> tuple[float, float]:
    """Where the line from a box's centre (x, y) towards (tx, ty) leaves the box."""
    dx, dy = tx - x, ty - y
    scale = min(
        (BOX_W / 2 + 6) / abs(dx) if dx else math.inf,
        (BOX_H / 2 + 6) / abs(dy) if dy else math.inf,
    )
    return x + dx * scale, y + dy * scale


def svg() -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
        "<title>The flywheel: collect, outcomes, value, labels, policy, gate, serve, and round "
        "again</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#455a64"/></marker></defs>',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{CX}" y="{CY - 8}" text-anchor="middle" font-size="22" font-weight="bold" '
        'fill="#263238">Flywheel</text>',
        f'<text x="{CX}" y="{CY + 16}" text-anchor="middle" font-size="13" fill="#546e7a">'
        "LeRobot datasets in, on Ray</text>",
    ]
    for i in range(len(STAGES)):
        (x0, y0), (x1, y1) = centre(i), centre((i + 1) % len(STAGES))
        sx, sy = edge_point(x0, y0, x1, y1)
        ex, ey = edge_point(x1, y1, x0, y0)
        # bend outwards from the ring's centre
        mx, my = (sx + ex) / 2, (sy + ey) / 2
        ox, oy = mx - CX, my - CY
        norm = math.hypot(ox, oy) or 1.0
        qx, qy = mx + 28 * ox / norm, my + 28 * oy / norm
        parts.append(
            f'<path d="M {sx:.1f} {sy:.1f} Q {qx:.1f} {qy:.1f} {ex:.1f} {ey:.1f}" fill="none" '
            'stroke="#455a64" stroke-width="2" marker-end="url(#arrow)"/>'
        )
    for i, (name, commands) in enumerate(STAGES):
        x, y = centre(i)
        parts += [
            f'<rect x="{x - BOX_W / 2:.1f}" y="{y - BOX_H / 2:.1f}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="10" fill="#e3f2fd" stroke="#1565c0" stroke-width="1.5"/>',
            f'<text x="{x:.1f}" y="{y - 10:.1f}" text-anchor="middle" font-size="16" '
            f'font-weight="bold" fill="#0d47a1">{escape(name)}</text>',
        ]
        for k, line in enumerate(commands):
            parts.append(
                f'<text x="{x:.1f}" y="{y + 8 + 13 * k:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#37474f">{escape(line)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    OUT.write_text(svg())
    print(OUT, file=sys.stderr)
