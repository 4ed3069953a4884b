"""Structural checks of docker/compose.yaml (no Docker engine runs here): the
services the two-node topology needs, health checks everywhere, the nodes sharing
one database, one Redis and one key-encryption key, and only settings gatehouse
knows (the names in the README's configuration reference)."""

import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker" / "compose.yaml").read_text())
readme = (root / "README.md").read_text()
known = set(re.findall(r"`(GATEHOUSE_[A-Z_]+)`", readme))

failures = []
passes = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    (passes if ok else failures).append(what)


services = compose.get("services", {})
for name in ["postgres", "redis", "gatehouse-a", "gatehouse-b", "proxy"]:
    check(name in services, f"service {name} exists")
for name, svc in services.items():
    check("healthcheck" in svc, f"{name} has a health check")
nodes = [services.get("gatehouse-a", {}), services.get("gatehouse-b", {})]
envs = [n.get("environment", {}) for n in nodes]
for key in ["GATEHOUSE_DATABASE_URL", "GATEHOUSE_REDIS_URL", "GATEHOUSE_KEY_ENCRYPTION_KEY", "GATEHOUSE_ISSUER"]:
    check(all(key in e for e in envs) and envs[0].get(key) == envs[1].get(key), f"both nodes share {key}")
for e in envs:
    for key in e:
        check(key in known, f"{key} is a documented setting")
check(str(envs[0].get("GATEHOUSE_DATABASE_URL", "")).startswith("postgres://"), "the nodes use PostgreSQL")
for n in nodes:
    deps = n.get("depends_on", {})
    check(all(deps.get(d, {}).get("condition") == "service_healthy" for d in ["postgres", "redis"]), "nodes wait for healthy backends")
    check(n.get("build", {}).get("dockerfile") == "docker/Dockerfile", "nodes build docker/Dockerfile")
conf = (root / "docker" / "nginx.conf").read_text()
check("gatehouse-a:8080" in conf and "gatehouse-b:8080" in conf, "the proxy balances both nodes")
check("X-Forwarded-For" in conf, "the proxy passes the client address")
dockerfile = (root / "docker" / "Dockerfile").read_text()
check(re.search(r"^USER\s+(?!root|0\b)", dockerfile, re.M) is not None, "the runtime image runs as a non-root user")
check(dockerfile.count("FROM ") >= 2, "the Dockerfile is multi-stage")


print()
print(f"docker: {len(passes)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
