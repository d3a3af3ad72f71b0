"""Draws docs/images/topology.png, the deployment topologies of docs/deploying.md: one host with
Docker Compose, a Kubernetes namespace (deploy/kubernetes), and a Ray cluster (deploy/ray).

    python docs/topology.py [OUT.png]        (needs matplotlib: pip install 'cat-reward[eval]')

Generated, not drawn by hand: edit the boxes and arrows here and run it again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "images" / "topology.png"

COLORS = {
    "trainer": "#dbe9f6",
    "service": "#c7e9c0",
    "router": "#fdd0a2",
    "judge": "#fcbba1",
    "store": "#dadaeb",
    "edge": "#f0f0f0",
}

# Each panel: title, frame label, boxes {key: (x, y, w, h, label, kind)}, arrows [(from, to, label)].
PANELS = [
    (
        "Docker Compose: one host",
        "docker/compose.yaml",
        {
            "trainer": (0.30, 0.88, 0.40, 0.08, "trainer (TRL, verl, OpenRLHF)", "trainer"),
            "nginx": (0.30, 0.72, 0.40, 0.07, "nginx :8000", "edge"),
            "svc1": (0.08, 0.54, 0.38, 0.08, "cat-reward", "service"),
            "svc2": (0.54, 0.54, 0.38, 0.08, "cat-reward", "service"),
            "router": (0.30, 0.36, 0.40, 0.07, "vllm-router", "router"),
            "judge1": (0.08, 0.20, 0.38, 0.08, "vLLM judge (GPU)", "judge"),
            "judge2": (0.54, 0.20, 0.38, 0.08, "vLLM judge (GPU)", "judge"),
            "redis": (0.08, 0.04, 0.38, 0.07, "Redis", "store"),
            "pg": (0.54, 0.04, 0.38, 0.07, "PostgreSQL", "store"),
        },
        [
            ("trainer", "nginx", "HTTP"), ("nginx", "svc1", ""), ("nginx", "svc2", ""),
            ("svc1", "router", ""), ("svc2", "router", ""), ("router", "judge1", ""), ("router", "judge2", ""),
        ],
    ),
    (
        "Kubernetes",
        "deploy/kubernetes (Kustomize)",
        {
            "trainer": (0.30, 0.88, 0.40, 0.08, "trainer pods / Ingress", "trainer"),
            "svc": (0.30, 0.73, 0.40, 0.07, "Service cat-reward :8000", "edge"),
            "dep": (0.06, 0.53, 0.55, 0.11, "Deployment cat-reward\n(HPA or KEDA, PDB, probes)", "service"),
            "job": (0.66, 0.53, 0.30, 0.11, "Job\nmigrate", "service"),
            "router": (0.22, 0.36, 0.56, 0.08, "judge-router (vllm-router,\nfinds judges by label)", "router"),
            "judges": (0.16, 0.19, 0.68, 0.09, "Deployment vllm-judge\n(nvidia.com/gpu, KEDA)", "judge"),
            "redis": (0.06, 0.04, 0.40, 0.08, "Redis (external;\ndev: StatefulSet)", "store"),
            "pg": (0.54, 0.04, 0.40, 0.08, "PostgreSQL (external;\ndev: StatefulSet)", "store"),
        },
        [
            ("trainer", "svc", "HTTP"), ("svc", "dep", ""), ("dep", "router", ""), ("router", "judges", ""),
            ("job", "pg", "alembic"),
        ],
    ),
    (
        "Ray cluster",
        "deploy/ray (Ray Serve)",
        {
            "trainer": (0.05, 0.84, 0.50, 0.11, "Ray trainer (verl, OpenRLHF)\nCatRewardHandle", "trainer"),
            "other": (0.60, 0.84, 0.35, 0.11, "other clients\n(HTTP)", "trainer"),
            "proxy": (0.60, 0.69, 0.35, 0.07, "Serve proxy :8000", "edge"),
            "app": (0.05, 0.48, 0.90, 0.13, "Serve app cat-reward: CatReward replicas\n(autoscaled on ongoing requests)", "service"),
            "router": (0.22, 0.31, 0.56, 0.08, "vllm-router, or vLLM URLs,\nor Ray Serve LLM", "router"),
            "judges": (0.16, 0.17, 0.68, 0.08, "vLLM judges", "judge"),
            "redis": (0.06, 0.03, 0.40, 0.08, "Redis", "store"),
            "pg": (0.54, 0.03, 0.40, 0.08, "PostgreSQL", "store"),
        },
        [
            ("trainer", "app", "handle (no HTTP)"), ("other", "proxy", ""), ("proxy", "app", "HTTP"),
            ("app", "router", ""), ("router", "judges", ""),
        ],
    ),
]


def center(box, side: str) -> tuple[float, float]:
    x, y, w, h = box[:4]
    return {"top": (x + w / 2, y + h), "bottom": (x + w / 2, y), "mid": (x + w / 2, y + h / 2)}[side]


def draw(out: Path = OUT) -> Path:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 6.6))
    for ax, (title, frame, boxes, arrows) in zip(axes, PANELS):
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.0)
        ax.axis("off")
        ax.set_title(f"{title}\n{frame}", fontsize=11)
        for x, y, w, h, label, kind in boxes.values():
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.008", facecolor=COLORS[kind],
                                        edgecolor="#555555", linewidth=0.8))
            ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8)
        for source, target, label in arrows:
            a, b = boxes[source], boxes[target]
            start, end = (center(a, "bottom"), center(b, "top")) if a[1] > b[1] else (center(a, "top"), center(b, "bottom"))
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color="#333333", linewidth=0.8))
            if label:
                ax.text((start[0] + end[0]) / 2 + 0.02, (start[1] + end[1]) / 2, label, fontsize=7, color="#333333")
        # The service's shared state: every replica reaches Redis and PostgreSQL.
        service = next(b for b in boxes.values() if b[5] == "service")
        for key in ("redis", "pg"):
            ax.add_patch(FancyArrowPatch(center(service, "mid"), center(boxes[key], "top"), arrowstyle="-|>",
                                         mutation_scale=8, color="#8888aa", linewidth=0.6, linestyle="--"))
    legend = [FancyBboxPatch((0, 0), 1, 1, facecolor=c, edgecolor="#555555") for c in COLORS.values()]
    fig.legend(legend, ["caller", "cat-reward", "router", "judges", "shared state", "edge"], loc="lower center",
               ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
