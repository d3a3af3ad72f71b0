"""Readers for the files under docker/: the compose file (with Compose's variable interpolation
and profile rules), Dockerfiles, docker/.env, nginx.conf and .dockerignore. No Docker needed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
SERVICE_DOCKERFILE = DOCKER / "Dockerfile"
JUDGE_DOCKERFILE = DOCKER / "judge-cpu.Dockerfile"
ROUTER_DOCKERFILE = DOCKER / "router.Dockerfile"
NGINX_CONF = DOCKER / "nginx.conf"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")

SERVICE = "cat-reward"  # the compose service that runs the API


# --- compose ------------------------------------------------------------------------------


def load_compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _braced_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (nesting allowed)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unterminated ${{ in {text!r}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``;
    defaults may nest. An unset variable without a default becomes the empty string."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _braced_end(text, i + 2)
            body = text[i + 2 : end]
            match = _NAME.match(body)
            if not match:
                raise ValueError(f"bad substitution ${{{body}}}")
            name, rest = match.group(), body[match.end() :]
            value = env.get(name)
            if rest == "":
                out.append(value or "")
            else:
                for operator in (":-", ":?", ":+", "-", "?", "+"):
                    if rest.startswith(operator):
                        argument = interpolate(rest[len(operator) :], env)
                        break
                else:
                    raise ValueError(f"bad substitution ${{{body}}}")
                empty_counts_as_unset = operator.startswith(":")
                is_set = value is not None and (value != "" or not empty_counts_as_unset)
                if operator.endswith("-"):
                    out.append(value if is_set else argument)
                elif operator.endswith("?"):
                    if not is_set:
                        raise ValueError(f"required variable {name} is missing: {argument}")
                    out.append(value)
                else:  # "+"
                    out.append(argument if is_set else "")
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match:
            out.append(env.get(match.group()) or "")
            i = match.end()
            continue
        out.append(char)
        i += 1
    return "".join(out)


def interpolate_tree(node, env: Mapping[str, str]):
    """Interpolate every string value (not keys, as Compose does)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict:
    """The compose file as Compose sees it with the given shell environment (default: none)."""
    return interpolate_tree(load_compose_raw(), env or {})


def read_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def default_profiles() -> set[str]:
    """The profiles of a plain ``docker compose -f docker/compose.yaml up``: COMPOSE_PROFILES
    from docker/.env (Compose reads .env from the compose file's folder)."""
    raw = read_dotenv(DOCKER / ".env").get("COMPOSE_PROFILES", "")
    return {p.strip() for p in raw.split(",") if p.strip()}


def enabled_services(doc: dict, profiles: set[str]) -> set[str]:
    """Compose's rule: a service runs when it has no profiles or one of them is active."""
    return {
        name
        for name, service in doc["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }


def depends_on(service: dict) -> dict[str, dict]:
    """depends_on in its long form: {name: {"condition": ..., "required": ...}}."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {name: {} for name in deps}
    return {
        name: {"condition": (cfg or {}).get("condition", "service_started"), "required": (cfg or {}).get("required", True)}
        for name, cfg in deps.items()
    }


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def option(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in an argument list."""
    index = argv.index(flag)
    return str(argv[index + 1])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def seconds(duration: str) -> float:
    """A Compose duration ('1m30s', '30m', '10s') in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(a + b for a, b in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts)


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are skipped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(part for part in pending if part)
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"{path}: dangling line continuation")
    return instructions


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (usable in FROM lines)."""
    values = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            values[name.strip()] = default.strip().strip("'\"")
    return values


def stages(path: Path) -> list[Stage]:
    instructions = parse_dockerfile(path)
    args = global_args(instructions)
    result: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            base = interpolate(words[0], args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=base, name=name))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; fails on the shell form."""
    text = instruction.args
    if instruction.keyword == "HEALTHCHECK":
        text = text[text.index("CMD ") + 4 :].strip()
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def image_command(path: Path) -> list[str]:
    """What the final stage runs: ENTRYPOINT followed by CMD (the last of each)."""
    final = stages(path)[-1]
    entrypoint = final.all("ENTRYPOINT")
    cmd = final.all("CMD")
    return (exec_form(entrypoint[-1]) if entrypoint else []) + (exec_form(cmd[-1]) if cmd else [])


def env_instructions(stage: Stage) -> dict[str, str]:
    """ENV KEY=VALUE pairs of a stage (the KEY=VALUE form only)."""
    values = {}
    for instruction in stage.all("ENV"):
        for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)", instruction.args):
            values[match.group(1)] = match.group(2).strip('"')
    return values


# --- nginx ------------------------------------------------------------------------------------


def nginx_text() -> str:
    return "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())


def nginx_upstreams(text: str) -> dict[str, list[list[str]]]:
    """upstream name -> its `server` directives, split into words."""
    upstreams = {}
    for match in re.finditer(r"\bupstream\s+(\S+)\s*\{([^{}]*)\}", text):
        servers = [d.split()[1:] for d in match.group(2).split(";") if d.split()[:1] == ["server"]]
        upstreams[match.group(1)] = servers
    return upstreams


def nginx_directives(text: str, name: str) -> list[list[str]]:
    return [m.group(1).split() for m in re.finditer(rf"(?:^|[;{{}}\s]){name}\s+([^;{{}}]*);", text)]


# --- .dockerignore -------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip().strip("/")
        pattern = re.sub(r"^\./", "", pattern)
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def excluded(rules: list[tuple[bool, re.Pattern]], relative: str) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parent folders, wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            result = not negate
    return result
