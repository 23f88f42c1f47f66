"""``solo-os init``: a new project whose own tests pass right away, and no file overwritten."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import solo_os
from solo_os.cli import cli, init

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXPECTED = {
    ".dockerignore",
    ".env.example",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "app.py",
    "docker-compose.yml",
    "invoice.json",
    "pyproject.toml",
    "requirements-dev.txt",
    "requirements.txt",
    "terraform/iam.tf",
    "terraform/ingress.tf",
    "terraform/main.tf",
    "terraform/outputs.tf",
    "terraform/terraform.tfvars.example",
    "terraform/variables.tf",
    "terraform/versions.tf",
    "terraform/worker.tf",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_app.py",
}


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def clean_env(folder: Path) -> dict[str, str]:
    """An environment like a new shell's: nothing of this repository's test set-up."""
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(folder)}


def scaffold(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "solo-os"), "init", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(folder.parent),
    )


def test_init_writes_the_project_and_its_tests_pass(tmp_path: Path) -> None:
    folder = tmp_path / "My Shop_2"
    done = scaffold(folder)
    assert done.returncode == 0, done.stderr
    assert "service 'my-shop-2'" in done.stdout
    assert files_in(folder) == EXPECTED
    for name in EXPECTED:
        text = (folder / name).read_text()
        assert "__SERVICE__" not in text and "__SOLO_OS_" not in text, name
    assert (folder / "requirements.txt").read_text() == f"solo-os=={solo_os.__version__}\n"
    assert 'App(service="my-shop-2")' in (folder / "app.py").read_text()
    assert "name: my-shop-2" in (folder / "docker-compose.yml").read_text()

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(folder),
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout


def test_the_env_example_configures_the_app(tmp_path: Path) -> None:
    """Copying .env.example to .env is enough for the app to start (secrets in the right form)."""
    folder = tmp_path / "shop"
    assert scaffold(folder).returncode == 0
    shutil.copy(folder / ".env.example", folder / ".env")
    check = subprocess.run(
        [str(BIN / "solo-os"), "config", "check", "app.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(folder),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 source(s)" in check.stdout  # its two and the implied internal one
    export = subprocess.run(
        [str(BIN / "solo-os"), "schemas", "export", "app.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(folder),
    )
    assert export.returncode == 0, export.stderr
    assert json.loads(export.stdout)["handlers"]["fulfil"]["schema"] == "InvoicePaid"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text("# mine\n")
    refused = scaffold(folder)
    assert refused.returncode == 1
    assert "exists:" in refused.stderr and "nothing was written" in refused.stderr
    assert files_in(folder) == {"app.py"}  # all or nothing
    assert (folder / "app.py").read_text() == "# mine\n"
    forced = scaffold(folder, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "(1 overwritten)" in forced.stdout
    assert "solo_os" in (folder / "app.py").read_text()
    assert files_in(folder) == EXPECTED


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["init", str(tmp_path / "x"), "--service", "Bad Name"])
    assert bad.exit_code == 2 and "--service" in bad.stderr
    a_file = tmp_path / "file"
    a_file.write_text("")
    not_dir = runner.invoke(cli, ["init", str(a_file)])
    assert not_dir.exit_code == 2 and "is not a folder" in not_dir.stderr


@pytest.mark.parametrize(
    ("folder", "service"),
    [("shop", "shop"), ("My_Shop", "my-shop"), ("2fast", "app-2fast"), ("---", "solo-os-app")],
)
def test_service_names(tmp_path: Path, folder: str, service: str) -> None:
    assert init.service_name(tmp_path / folder) == service


def test_the_scaffolds_terraform_is_the_repositorys() -> None:
    """terraform/ in the template is deploy/terraform/: one set of files, tested once."""
    template = Path(init.template_root()) / "terraform"  # type: ignore[arg-type]
    deployed = ROOT / "deploy" / "terraform"
    names = sorted(p.name for p in deployed.glob("*.tf"))
    assert names == sorted(p.name for p in template.glob("*.tf"))
    _, mismatch, errors = filecmp.cmpfiles(deployed, template, names, shallow=False)
    assert mismatch == [] and errors == []


def test_the_template_ships_in_the_package() -> None:
    files = {str(p.target) for p in init.plan("svc")}
    assert files == EXPECTED
