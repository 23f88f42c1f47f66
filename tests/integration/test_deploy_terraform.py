"""deploy/terraform: parsed with python-hcl2 and checked for its resources and their wiring;
``terraform validate`` too where a terraform binary and the AWS provider are installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"
DOCS = ROOT / "docs" / "deploy.md"
PLUGIN_DIRS = [os.environ.get("SOLO_OS_TF_PLUGIN_DIR", ""), "/opt/tf-plugins"]


def _clean(value: Any) -> Any:
    """python-hcl2 keeps the quotes of strings and block labels: drop them."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """(labels, body) of every ``kind`` block: resource "t" "n" -> (["t", "n"], {...})."""
    for entry in doc.get(kind, []):
        stack: list[tuple[list[str], Any]] = [([], entry)]
        while stack:
            labels, node = stack.pop()
            if (
                isinstance(node, dict)
                and len(node) == 1
                and isinstance(next(iter(node.values())), dict)
                and (len(labels) < (2 if kind in ("resource", "data", "ephemeral") else 1))
            ):
                ((label, body),) = node.items()
                stack.append(([*labels, label], body))
            else:
                yield labels, node


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "ephemeral": {},
        "variable": {},
        "output": {},
        "locals": {},
    }
    for path in sorted(TF.glob("*.tf")):
        doc = _clean(hcl2.loads(path.read_text()))
        for kind in ("resource", "data", "ephemeral"):
            for (rtype, name), body in _blocks(doc, kind):
                merged[kind][f"{rtype}.{name}"] = body
        for kind in ("variable", "output"):
            for (name,), body in _blocks(doc, kind):
                merged[kind][name] = body
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        if "terraform" in doc:
            merged["terraform"] = doc["terraform"]
    return merged


def _text() -> str:
    return "\n".join(p.read_text() for p in sorted(TF.glob("*.tf")))


def _one(body: dict[str, Any], key: str) -> Any:
    value = body[key]
    return value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) else value


def test_the_ingress_is_a_lambda_function_behind_a_function_url(tf: dict[str, Any]) -> None:
    fn = tf["resource"]["aws_lambda_function.ingress"]
    assert fn["package_type"] == "Image" and fn["image_uri"] == "${var.image}"
    config = _one(fn, "image_config")
    assert config["command"] == ["solo_os.aws_lambda.handler"]
    assert config["entry_point"] == ["python", "-m", "awslambdaric"]
    assert "aws_security_group.app.id" in str(_one(fn, "vpc_config")["security_group_ids"])
    url = tf["resource"]["aws_lambda_function_url.ingress"]
    assert url["authorization_type"] == "NONE"  # the providers' signatures authenticate
    assert "aws_lambda_function.ingress.function_name" in url["function_name"]
    permission = tf["resource"]["aws_lambda_permission.function_url"]
    assert permission["action"] == "lambda:InvokeFunctionUrl"
    assert permission["function_url_auth_type"] == "NONE"
    env = str(_one(fn, "environment")["variables"])
    assert "local.app_env" in env and "aws-sm:${aws_secretsmanager_secret.db_password.arn}" in env


def test_the_worker_is_an_ecs_fargate_service(tf: dict[str, Any]) -> None:
    task = tf["resource"]["aws_ecs_task_definition.worker"]
    assert task["requires_compatibilities"] == ["FARGATE"] and task["network_mode"] == "awsvpc"
    containers = task["container_definitions"]
    assert "solo-os db upgrade && exec solo-os worker" in containers
    assert "solo-os db upgrade && exec solo-os scheduler" in containers
    assert "aws_secretsmanager_secret.db_password.arn" in containers  # PGPASSWORD injected
    assert "local.app_env" in containers
    service = tf["resource"]["aws_ecs_service.worker"]
    assert service["launch_type"] == "FARGATE"
    assert "aws_ecs_task_definition.worker.arn" in service["task_definition"]
    assert "aws_ecs_cluster.main.id" in service["cluster"]
    network = _one(service, "network_configuration")
    assert network["assign_public_ip"] is False


def test_the_worker_command_exists_in_the_cli() -> None:
    for argv in (["db", "upgrade", "--help"], ["worker", "--help"], ["scheduler", "--help"]):
        done = subprocess.run(
            [str(Path(os.sys.executable).parent / "solo-os"), *argv], capture_output=True, timeout=60
        )
        assert done.returncode == 0, argv


def test_rds_postgres_16_private_and_encrypted(tf: dict[str, Any]) -> None:
    db = tf["resource"]["aws_db_instance.main"]
    assert db["engine"] == "postgres" and str(db["engine_version"]).startswith("16")
    assert db["publicly_accessible"] is False and db["storage_encrypted"] is True
    # the password is write-only: generated at apply time, never in the state
    assert "ephemeral.aws_secretsmanager_random_password.db" in db["password_wo"]
    assert "password" not in db
    version = tf["resource"]["aws_secretsmanager_secret_version.db_password"]
    assert version["secret_string_wo"] == db["password_wo"]
    assert "aws_security_group.db.id" in str(db["vpc_security_group_ids"])
    ingress = _one(tf["resource"]["aws_security_group.db"], "ingress")
    assert ingress["from_port"] == 5432 and "aws_security_group.app.id" in str(ingress["security_groups"])


def test_webhook_secrets_live_in_secrets_manager_and_reach_the_app_as_references(
    tf: dict[str, Any],
) -> None:
    secret = tf["resource"]["aws_secretsmanager_secret.webhook"]
    assert "var.webhook_secrets" in secret["for_each"]
    assert "secret_string" not in str(secret)  # values are put in by hand, not in the state
    assert not any(k.startswith("aws_secretsmanager_secret_version.webhook") for k in tf["resource"])
    assert '"aws-sm:${secret.arn}"' in _text()
    assert "local.webhook_secret_env" in tf["locals"]["app_env"]
    policy = tf["data"]["aws_iam_policy_document.read_secrets"]
    statement = _one(policy, "statement")
    assert statement["actions"] == ["secretsmanager:GetSecretValue"]
    assert "local.secret_arns" in statement["resources"]
    for role in ("lambda", "worker_task"):
        attached = [
            body
            for name, body in tf["resource"].items()
            if name.startswith("aws_iam_role_policy.") and f"aws_iam_role.{role}.id" in body["role"]
        ]
        assert any("read_secrets" in body["policy"] for body in attached), role


def test_variables_and_outputs_are_documented_and_used(tf: dict[str, Any]) -> None:
    text = _text()
    declared = set(tf["variable"])
    used = set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", text))
    assert used == declared, f"unused: {declared - used}, undeclared: {used - declared}"
    docs = DOCS.read_text()
    for name, body in tf["variable"].items():
        assert body.get("description"), f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"
        assert f"`{name}`" in docs, f"docs/deploy.md does not document variable {name}"
    for name, body in tf["output"].items():
        assert body.get("description"), f"output {name} has no description"
        assert f"`{name}`" in docs, f"docs/deploy.md does not document output {name}"
    assert {"webhook_base_url", "database_password_secret_arn", "webhook_secret_arns"} <= set(tf["output"])


def test_required_versions(tf: dict[str, Any]) -> None:
    block = tf["terraform"][0]
    assert block["required_version"] == ">= 1.11"
    aws = block["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"


def _plugin_dir() -> Path | None:
    for d in PLUGIN_DIRS:
        if d and (Path(d) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(d)
    return None


@pytest.mark.skipif(
    shutil.which("terraform") is None or _plugin_dir() is None,
    reason="no terraform binary with a local AWS provider (SOLO_OS_TF_PLUGIN_DIR); "
    "the HCL checks above still ran",
)
@pytest.mark.parametrize("folder", ["deploy", "scaffold"])
def test_terraform_validate(tmp_path: Path, folder: str) -> None:
    work = tmp_path / "tf"
    if folder == "deploy":
        shutil.copytree(TF, work)
    else:
        project = tmp_path / "project"
        done = subprocess.run(
            [str(Path(os.sys.executable).parent / "solo-os"), "init", str(project)],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0
        shutil.copytree(project / "terraform", work)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    fmt = subprocess.run(
        ["terraform", "fmt", "-check", "-diff"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    init = subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false", f"-plugin-dir={_plugin_dir()}"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        ["terraform", "validate", "-json"], cwd=work, capture_output=True, text=True, env=env, timeout=300
    )
    result = json.loads(validate.stdout)
    assert result["valid"] is True, result
    assert result["error_count"] == 0 and result["warning_count"] == 0, result
