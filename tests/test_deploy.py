"""Docker and compose files: valid against the Compose schema, and every command they run works
outside Docker (no Docker engine runs on these machines)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.settings import AppSettings
from indexer.cli import main as nodule_index
from tests.helpers.data import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def _compose() -> dict[str, object]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _dockerfile_json_commands(instruction: str) -> list[list[str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        match = re.match(rf"\s*{instruction}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", line)
        if match:
            commands.append(json.loads(match.group(1)))
    return commands


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"indexer", "api", "api-gpu", "ohif"} <= set(services)
    ohif = services["ohif"]
    assert ohif["profiles"] == ["ohif"]  # `docker compose up` alone does not need the bundle
    assert ohif["environment"]["NODULE_OHIF_API_URL"] == "http://api:8000"
    assert "api" in _interpolate(services["api"]["environment"]["NODULE_ALLOWED_HOSTS"])
    assert services["api"]["depends_on"]["indexer"]["condition"] == "service_completed_successfully"
    gpu = services["api-gpu"]
    assert gpu["build"]["target"] == "gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def _all_commands() -> list[list[str]]:
    commands = _dockerfile_json_commands("CMD") + _dockerfile_json_commands("HEALTHCHECK")
    services = _compose()["services"]
    assert isinstance(services, dict)
    for service in services.values():
        command = service.get("command")
        if command:
            commands.append(command if isinstance(command, list) else shlex.split(command))
        test = service.get("healthcheck", {}).get("test")
        if test:
            commands.append([part for part in test if part not in ("CMD", "CMD-SHELL")])
    return commands


@pytest.mark.slow
def test_every_command_exists_and_starts() -> None:
    commands = _all_commands()
    assert len(commands) >= 6
    for command in commands:
        program = command[0]
        if program == "python":
            assert command[1] == "-c"
            compile(command[2], "<healthcheck>", "exec")
            continue
        executable = shutil.which(program, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        assert executable, f"{program} is not installed"
        args = [a for a in command[1:] if not a.startswith("/srv")]
        subcommand = [args[0]] if program in ("nodule-index", "nodule-ohif") else []
        result = subprocess.run(
            [executable, *subcommand, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (command, result.stderr)


def _interpolate(text: str) -> str:
    """Compose's ``${NAME:-default}`` with an empty environment: the default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), text)


@pytest.mark.slow
def test_compose_indexer_command_works_outside_docker(tmp_path: Path, tiny_table: Path) -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    command = [
        _interpolate(c).replace("/srv", str(tmp_path)) for c in services["indexer"]["command"]
    ]
    assert command[:2] == ["nodule-index", "bootstrap"]
    args = [
        *command[1:],
        "--scans",
        "4",
        "--matrix",
        "96",
        "--epochs",
        "1",
        "--lidc-table",
        str(tiny_table),
    ]
    assert nodule_index(args) == 0
    assert (tmp_path / "index" / "CURRENT").is_file()
    assert nodule_index(["verify", "--index", str(tmp_path / "index")]) == 0
    # A second start finds the catalogue and does nothing.
    assert nodule_index(args) == 0


def test_empty_api_key_disables_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODULE_API_KEY", "")
    assert AppSettings().api_key is None
