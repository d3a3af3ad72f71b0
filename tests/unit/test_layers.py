"""Import directions: data flows route -> service -> engine -> ports, never back up.

Every import in the package (lazy ones inside functions too) is read from the source with
``ast`` and held to the layer rules below, so a new module cannot reintroduce a climb:

    api/                 the HTTP edge: may import anything below it
    service layer        rewarding, audit, admission, evaluation/, ...: never api/
    adapters             backends/, cache/, storage/, assembly/, local_judge/: never the service layer or api/
    engine/              pure async Python: only engine/ and the standard library's kind of code
                         (no FastAPI, pydantic, Redis, SQL or HTTP clients)

The composition roots (the command line, which builds the app) are the only modules outside
api/ that may import it. bench/ scripts must not import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "service" / "cat_reward"

# Entry points that assemble the whole application (the command line, the eval command's run,
# which builds the services in process); they sit above every layer.
COMPOSITION_ROOTS = {
    "cat_reward.cli", "cat_reward.wiring", "cat_reward.evaluation.runner", "cat_reward.evaluation.command",
    "cat_reward.ray_serve",  # the Ray Serve deployment builds the app in each replica, as the command line does
    "cat_reward.evaluation.judge_quality",  # cat-reward judge-quality: builds the services in process, as eval's runner
    "cat_reward.offline.scorers",  # cat-reward score: builds the services in process (its rows come read by api.rows)
}
# The composition roots that may import the HTTP layer: the ones that serve it. Building the
# services is not a reason to read the wire: cat-reward score gets its row reader handed in.
HTTP_ROOTS = {"cat_reward.cli", "cat_reward.ray_serve"}
ADAPTERS = ("backends", "cache", "storage", "assembly", "local_judge")
SERVICE_LAYER = ("rewarding", "audit", "admission", "evaluation", "offline")
ENGINE_FORBIDDEN_LIBRARIES = (
    "fastapi", "starlette", "pydantic", "pydantic_settings", "redis", "sqlalchemy", "asyncpg", "alembic",
    "httpx", "aiohttp", "prometheus_client", "uvicorn",
)


def module_name(path: Path, package_root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of everything a module's source imports (relative imports resolved)."""
    found: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` names modules
    return found


def _layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "cat_reward" or len(parts) < 2:
        return None
    return parts[1]


def violations(module: str, imported: set[str]) -> list[str]:
    """Why a module's imports break the layer rules ([] when they don't)."""
    own = _layer(module)
    problems = []
    for name in sorted(imported):
        target = _layer(name)
        top = name.split(".")[0]
        if own == "engine":
            if top in ENGINE_FORBIDDEN_LIBRARIES:
                problems.append(f"{module} imports {name}: the engine is pure Python, no frameworks or I/O clients")
            elif top == "cat_reward" and target not in ("engine", None):
                problems.append(f"{module} imports {name}: the engine depends only on itself (ports are its interfaces)")
        if target == "api" and own != "api" and module not in HTTP_ROOTS:
            problems.append(f"{module} imports {name}: only api/ (and the composition roots) may import the HTTP layer")
        if own in ADAPTERS and target in (*SERVICE_LAYER, "api", "wiring", "cli"):
            problems.append(f"{module} imports {name}: an adapter must not depend on the service layer above it")
        if own in SERVICE_LAYER and target in ("wiring", "cli") and module not in COMPOSITION_ROOTS:
            problems.append(f"{module} imports {name}: the service layer must not depend on the composition root")
    return problems


def package_violations(package_root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package_root.rglob("*.py")):
        module = module_name(path, package_root)
        imported = imports_of(path.read_text(), module, path.name == "__init__.py")
        problems.extend(violations(module, imported))
    return problems


def test_package_keeps_its_import_directions():
    problems = package_violations()
    assert not problems, "layer rules broken:\n" + "\n".join(problems)


def test_no_module_outside_api_imports_api():
    climbing = [
        p for p in package_violations() if "may import the HTTP layer" in p
    ]
    assert climbing == []
    # ... and the rule is live: the service modules that used to climb are clean because they changed,
    # not because the checker skips them.
    for module in ("rewarding", "evaluation/scoring"):
        path = PACKAGE / f"{module}.py"
        name = module_name(path)
        assert not any(n.startswith("cat_reward.api") for n in imports_of(path.read_text(), name, False))


def test_checker_catches_each_kind_of_climb(tmp_path):
    """The check can fail: a scratch package with one climb of each kind is caught, by name."""
    root = tmp_path / "cat_reward"
    for folder in ("api", "engine", "backends", "evaluation"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "rewarding.py").write_text("from .api.schemas import RewardRequest\n")
    (root / "engine" / "pipeline.py").write_text("import httpx\nfrom ..settings import Settings\n")
    (root / "backends" / "client.py").write_text("def f():\n    from ..rewarding import RewardService\n")
    (root / "evaluation" / "scoring.py").write_text("from ..api import schemas\n")
    (root / "cli.py").write_text("from .api import create_app\n")  # a composition root: allowed
    problems = package_violations(root)
    text = "\n".join(problems)
    assert "cat_reward.rewarding imports cat_reward.api.schemas" in text
    assert "cat_reward.engine.pipeline imports httpx" in text
    assert "cat_reward.engine.pipeline imports cat_reward.settings" in text
    assert "cat_reward.backends.client imports cat_reward.rewarding" in text
    assert "cat_reward.evaluation.scoring imports cat_reward.api" in text
    assert not any(p.startswith("cat_reward.cli ") for p in problems)


def test_bench_modules_import_no_cycle():
    bench = ROOT / "bench"
    local = {p.stem for p in bench.glob("*.py")}
    graph = {
        p.stem: {name.split(".")[0] for name in imports_of(p.read_text(), p.stem, False)} & local - {p.stem}
        for p in bench.glob("*.py")
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, f"bench import cycle: {' -> '.join(visiting[visiting.index(node):] + [node])}"
        visiting.append(node)
        for child in sorted(graph[node]):
            visit(child)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
