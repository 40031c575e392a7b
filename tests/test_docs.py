"""The README documents what the code reads and runs."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def env_vars_read_by(path: Path) -> set[str]:
    source = path.read_text()
    pattern = r"""(?:envbool|envint|envfloat|envlist|envsecret|os\.getenv|os\.environ\.get)\(\s*(?:f)?["']([A-Z_]+)"""
    return set(re.findall(pattern, source))


def test_readme_configuration_table_lists_every_setting():
    names = env_vars_read_by(ROOT / "playground" / "settings.py")
    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "FIELD_ENCRYPTION_KEYS"} <= names
    table_rows = set(re.findall(r"^\|\s*`([A-Z_]+)`", README, flags=re.M))
    assert names - table_rows == set(), "settings read but not in the README's configuration table"


def test_readme_documents_the_bootstrap_variables():
    names = env_vars_read_by(ROOT / "chat" / "management" / "commands" / "bootstrap.py")
    # f-string names such as {prefix}_BASE_URL are spelled out in the README
    names |= {f"{p}_{s}" for p in ("QWEN", "LLAMA", "MISTRAL", "GEMMA") for s in ("BASE_URL", "MODEL")}
    table_rows = set(re.findall(r"^\|\s*`([A-Z_]+)`", README, flags=re.M))
    assert names - table_rows == set()


def test_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README


def test_readme_lists_every_dependency_with_its_job():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0)
        assert re.search(rf"`{re.escape(name)}`", README, flags=re.I), f"{name} is not listed in the README"


def test_dockerfile_copies_paths_that_exist_and_runs_what_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, flags=re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert "python -m playground.serve" in dockerfile  # the launcher, which serves playground.asgi:application
    assert (ROOT / "playground" / "serve.py").exists() and (ROOT / "playground" / "asgi.py").exists()
    assert "USER playground" in dockerfile and "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "collectstatic" in dockerfile
    assert "constraints.txt" in dockerfile


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
