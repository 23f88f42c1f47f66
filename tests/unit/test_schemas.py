"""Schema versions: upcasting, JSON Schema export, and the breaking-change check."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from typer.testing import CliRunner

from solo_os import App, errors, sources
from solo_os.cli import cli
from solo_os.core import schemas

# --- upcasting ----------------------------------------------------------------------------------


def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    doc["amount"] = {"cents": doc.pop("amount_cents"), "currency": doc.pop("currency", "EUR")}
    doc["schema_version"] = 2
    return doc


def v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    doc["customer"] = {"id": doc.pop("customer_id")}
    doc["schema_version"] = 3
    return doc


class Amount(BaseModel):
    cents: PositiveInt
    currency: str = Field(min_length=3, max_length=3)


class Customer(BaseModel):
    id: str


class InvoiceV3(BaseModel):
    id: str
    amount: Amount
    customer: Customer
    schema_version: Literal[3] = 3


VERSIONING = schemas.Versioning.build({1: v1_to_v2, 2: v2_to_v3}, "schema_version")
V1 = {"id": "inv_1", "customer_id": "c_1", "amount_cents": 4900, "currency": "USD"}


def test_versions_are_counted_from_the_upcasters() -> None:
    assert (VERSIONING.oldest, VERSIONING.current) == (1, 3)


@pytest.mark.parametrize(
    ("upcast", "field", "message"),
    [
        ({}, "schema_version", "must map versions to functions"),
        ({0: v1_to_v2}, "schema_version", "keys must be versions"),
        ({True: v1_to_v2}, "schema_version", "keys must be versions"),
        ({"1": v1_to_v2}, "schema_version", "keys must be versions"),
        ({1: v1_to_v2, 3: v2_to_v3}, "schema_version", "no gaps"),
        ({1: "nope"}, "schema_version", "is not a function"),
        ({1: v1_to_v2}, "", "dotted path"),
        ({1: v1_to_v2}, "meta..v", "dotted path"),
    ],
)
def test_bad_versioning_is_a_config_error(upcast: Any, field: str, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        schemas.Versioning.build(upcast, field)


def test_a_payload_without_a_version_is_version_1_and_goes_through_every_upcaster() -> None:
    original = json.loads(json.dumps(V1))
    out = schemas.upcast(VERSIONING, original)
    assert out == {
        "id": "inv_1",
        "amount": {"cents": 4900, "currency": "USD"},
        "customer": {"id": "c_1"},
        "schema_version": 3,
    }
    assert original == V1  # the stored document is never mutated
    assert InvoiceV3.model_validate(out).amount.cents == 4900


def test_a_version_2_payload_only_takes_the_last_step() -> None:
    v2 = v1_to_v2(dict(V1))
    assert v2["schema_version"] == 2
    assert schemas.upcast(VERSIONING, v2)["customer"] == {"id": "c_1"}
    as_text = {**v2, "schema_version": "2"}
    assert schemas.upcast(VERSIONING, as_text)["schema_version"] == 3


def test_a_current_payload_is_returned_as_it_is() -> None:
    current = {"id": "x", "schema_version": 3}
    assert schemas.upcast(VERSIONING, current) is current
    assert schemas.upcast(None, current) is current


def test_nested_version_field() -> None:
    v = schemas.Versioning.build({1: lambda d: {**d, "meta": {"v": 2}, "new": True}}, "meta.v")
    assert schemas.upcast(v, {"meta": {"v": 1}}) == {"meta": {"v": 2}, "new": True}
    assert schemas.upcast(v, {"meta": {"v": 2}}) == {"meta": {"v": 2}}


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        ({"schema_version": 4}, "schema_version_unknown", "version 4 is newer than"),
        ({"schema_version": 0}, "schema_version", "must be a positive integer"),
        ({"schema_version": True}, "schema_version", "must be a positive integer"),
        ({"schema_version": "two"}, "schema_version", "must be a positive integer"),
        ({"schema_version": 1}, "upcast_failed", "upcaster v1_to_v2 (version 1 to 2) failed: KeyError"),
    ],
)
def test_payloads_that_cannot_be_upcast(payload: Any, kind: str, message: str) -> None:
    with pytest.raises(errors.PayloadError) as caught:
        schemas.upcast(VERSIONING, payload, "InvoiceV3")
    (detail,) = caught.value.details
    assert detail["type"] == kind and message in detail["msg"]
    assert detail["loc"] == ["schema_version"] and detail["schema"] == "InvoiceV3"


def test_no_upcaster_from_a_version_older_than_the_oldest() -> None:
    v = schemas.Versioning.build({2: v2_to_v3}, "schema_version")
    with pytest.raises(errors.PayloadError, match="invalid payload") as caught:
        schemas.upcast(v, {"id": "x"})
    assert "no upcaster from version 1 (the oldest is 2)" in caught.value.details[0]["msg"]


def test_an_upcaster_must_return_a_dict_and_errors_carry_no_values() -> None:
    v = schemas.Versioning.build({1: lambda d: [d]}, "v")
    with pytest.raises(errors.PayloadError) as caught:
        schemas.upcast(v, {"card": "4242424242424242"})
    assert "returned list, not a dict" in caught.value.details[0]["msg"]

    def leaky(d: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"bad card {d['card']}")

    v = schemas.Versioning.build({1: leaky}, "v")
    with pytest.raises(errors.PayloadError) as caught:
        schemas.upcast(v, {"card": "4242424242424242"})
    assert "4242" not in json.dumps(caught.value.details)


# --- the App: declaration, ingress validation --------------------------------------------------


def _app(schema: type[BaseModel] = InvoiceV3, **on: Any) -> App:
    app = App(service="versions")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", schema=schema, **on)
    def fulfil(event: Any, ctx: Any) -> None: ...

    return app


def test_upcast_needs_a_schema() -> None:
    app = App()
    with pytest.raises(errors.ConfigError, match="upcast= needs schema="):
        app.on("billing", "x", upcast={1: v1_to_v2})


def test_ingress_accepts_an_old_producers_payload_through_the_upcasters() -> None:
    app = _app(upcast={1: v1_to_v2, 2: v2_to_v3})
    assert app.validate("billing", "invoice.paid", V1) == []
    handler = app.handlers["fulfil"]
    assert isinstance(handler.load(V1), InvoiceV3)
    bad = app.validate("billing", "invoice.paid", {**V1, "amount_cents": -1})
    assert [(e["loc"], e["type"]) for e in bad] == [(["amount", "cents"], "greater_than")]
    newer = app.validate("billing", "invoice.paid", {**V1, "schema_version": 9})
    assert [e["type"] for e in newer] == ["schema_version_unknown"]


def test_without_upcasters_an_old_payload_fails_the_new_schema() -> None:
    app = _app()
    assert app.validate("billing", "invoice.paid", V1) != []
    with pytest.raises(pydantic.ValidationError):
        app.handlers["fulfil"].load(V1)


# --- export ------------------------------------------------------------------------------------


def test_export_describes_every_handler() -> None:
    app = _app(upcast={1: v1_to_v2, 2: v2_to_v3})

    @app.on("billing", "*")
    def audit(event: Any, ctx: Any) -> None: ...

    if hasattr(app, "cron"):  # a cron handler takes no event: it has no input contract

        @app.cron("0 2 * * *", name="nightly")
        def nightly(ctx: Any) -> None: ...

    doc = schemas.export(app.handlers, app.service)
    assert doc["format"] == "solo-os.schemas/1" and doc["service"] == "versions"
    assert list(doc["handlers"]) == ["audit", "fulfil"]
    fulfil = doc["handlers"]["fulfil"]
    assert fulfil["source"] == "billing" and fulfil["event_type"] == "invoice.paid"
    assert (fulfil["schema"], fulfil["version"], fulfil["oldest_version"]) == ("InvoiceV3", 3, 1)
    assert fulfil["json_schema"]["required"] == ["id", "amount", "customer"]
    assert "Amount" in fulfil["json_schema"]["$defs"]
    assert doc["handlers"]["audit"]["json_schema"] is None
    assert json.loads(json.dumps(doc)) == doc


# --- compare: what breaks producers ----------------------------------------------------------------


def _export(model: type[BaseModel] | None, **on: Any) -> dict[str, Any]:
    app = App(service="s")
    app.source("billing", sources.hmac(secret_env="X"))

    @app.on("billing", "invoice.paid", schema=model, **on)
    def fulfil(event: Any, ctx: Any) -> None: ...

    return schemas.export(app.handlers)


class Base(BaseModel):
    id: str
    amount: int
    note: str | None = None
    currency: str = Field("EUR", max_length=3)
    count: int = Field(1, gt=0)
    tags: list[str] = []
    status: Literal["paid", "open"] = "paid"


class Nested(BaseModel):
    sku: str
    qty: int


class WithNested(BaseModel):
    id: str
    item: Nested


class Color(Enum):
    RED = "red"
    BLUE = "blue"


def _changes(old: type[BaseModel] | None, new: type[BaseModel] | None) -> list[tuple[str, str, bool]]:
    return [(c.path, c.kind, c.breaking) for c in schemas.compare(_export(old), _export(new))]


def _model(name: str, base: type[BaseModel] = Base, **fields: Any) -> type[BaseModel]:
    return pydantic.create_model(name, __base__=base, **fields)


def test_identical_schemas_have_no_changes() -> None:
    assert _changes(Base, Base) == []
    assert _changes(WithNested, WithNested) == []


@pytest.mark.parametrize(
    ("new_fields", "expected"),
    [
        ({"extra": (int, ...)}, [("extra", "new_required_field", True)]),
        ({"extra": (int | None, None)}, [("extra", "added_field", False)]),
        ({"note": (str, ...)}, [("note", "type_changed", True), ("note", "new_required_field", True)]),
        ({"amount": (str, ...)}, [("amount", "type_changed", True)]),
        ({"amount": (float, ...)}, []),  # integer -> number accepts everything it did
        ({"currency": (str, Field("EUR", max_length=2))}, [("currency", "constraint_tightened", True)]),
        ({"currency": (str, Field("EUR", max_length=5))}, []),
        (
            {"currency": (str, Field("EUR", min_length=3, max_length=3))},
            [("currency", "constraint_tightened", True)],
        ),
        ({"count": (int, Field(1, ge=0))}, []),  # > 0 to >= 0 is looser
        ({"count": (int, Field(1, ge=1))}, []),  # for integers, >= 1 is > 0
        ({"count": (int, Field(1, ge=2))}, [("count", "constraint_tightened", True)]),
        ({"count": (int, Field(1, gt=1))}, [("count", "constraint_tightened", True)]),
        ({"status": (Literal["paid"], "paid")}, [("status", "enum_narrowed", True)]),
        ({"status": (Literal["paid", "open", "void"], "paid")}, [("status", "enum_widened", False)]),
        ({"tags": (list[int], [])}, [("tags[]", "type_changed", True)]),
        ({"note": (str | int | None, None)}, []),
    ],
)
def test_field_changes(new_fields: dict[str, Any], expected: list[tuple[str, str, bool]]) -> None:
    new = _model("Base", **new_fields)
    assert _changes(Base, new) == expected


def test_removed_field_and_forbidden_extras() -> None:
    class Smaller(BaseModel):
        id: str
        amount: int
        note: str | None = None
        currency: str = Field("EUR", max_length=3)
        count: int = Field(1, gt=0)
        tags: list[str] = []

    assert _changes(Base, Smaller) == [("status", "removed_field", True)]

    class Strict(Base):
        model_config = ConfigDict(extra="forbid")

    assert _changes(Base, Strict) == [("(payload)", "extra_forbidden", True)]
    assert _changes(Strict, Base) == []


def test_nullable_removed_is_a_type_change() -> None:
    new = _model("Base", note=(str, ""))
    assert _changes(Base, new) == [("note", "type_changed", True)]


def test_nested_models_are_compared_through_refs() -> None:
    class Nested2(BaseModel):
        sku: str
        qty: str

    class WithNested2(BaseModel):
        id: str
        item: Nested2

    assert _changes(WithNested, WithNested2) == [("item.qty", "type_changed", True)]


def test_enums_through_refs() -> None:
    class Old(BaseModel):
        color: Color

    class NewColor(Enum):
        RED = "red"

    class New(BaseModel):
        color: NewColor

    assert _changes(Old, New) == [("color", "enum_narrowed", True)]


def test_recursive_models_terminate() -> None:
    class Tree(BaseModel):
        name: str
        children: list[Tree] = []

    assert _changes(Tree, Tree) == []


def test_handler_level_changes() -> None:
    old = _export(Base)
    assert [(c.kind, c.breaking) for c in schemas.compare(old, _export(None))] == []
    assert [(c.kind, c.breaking) for c in schemas.compare(_export(None), old)] == [("schema_added", True)]
    empty = {"format": schemas.EXPORT_FORMAT, "service": "s", "handlers": {}}
    assert [(c.kind, c.breaking) for c in schemas.compare(old, empty)] == [("handler_removed", True)]
    assert [(c.kind, c.breaking) for c in schemas.compare(empty, old)] == [("handler_added", False)]
    moved = json.loads(json.dumps(old))
    moved["handlers"]["fulfil"]["event_type"] = "invoice.created"
    assert [c.kind for c in schemas.compare(old, moved)] == ["handler_rerouted"]


def test_a_breaking_change_covered_by_an_upcaster_does_not_fail() -> None:
    class V1(BaseModel):
        id: str
        amount_cents: int

    class V2(BaseModel):
        id: str
        amount: Amount

    old = _export(V1)
    bare = schemas.compare(old, _export(V2))
    assert any(c.fails for c in bare)
    covered = schemas.compare(old, _export(V2, upcast={1: v1_to_v2}))
    assert covered and all(c.covered and not c.fails for c in covered if c.breaking)
    # an upcaster chain that does not reach back to the saved version covers nothing
    v2_export = _export(V2, upcast={1: v1_to_v2})
    later = schemas.compare(v2_export, _export(InvoiceV3, upcast={2: v2_to_v3}))
    assert not any(c.fails for c in later)
    too_new = schemas.compare(old, _export(InvoiceV3, upcast={2: v2_to_v3}))
    assert any(c.fails for c in too_new)


def test_load_export_refuses_other_documents() -> None:
    for bad in ([], {}, {"format": "x", "handlers": {}}, {"format": schemas.EXPORT_FORMAT}):
        with pytest.raises(errors.ConfigError, match="not a solo-os schemas export"):
            schemas.load_export(bad, "f.json")


# --- the CLI ----------------------------------------------------------------------------------------

APP_V1 = """
from pydantic import BaseModel
from solo_os import App, sources

app = App(service="cli-test")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

class Invoice(BaseModel):
    id: str
    amount_cents: int

@app.on("billing", "invoice.paid", schema=Invoice)
def fulfil(event, ctx):
    pass
"""


def test_cli_export_and_check(tmp_path: Path) -> None:
    runner = CliRunner()
    app_file = tmp_path / "app.py"
    app_file.write_text(APP_V1)
    contract = tmp_path / "schemas.json"
    done = runner.invoke(cli, ["schemas", "export", str(app_file), "--out", str(contract)])
    assert done.exit_code == 0, done.output
    saved = json.loads(contract.read_text())
    assert saved["handlers"]["fulfil"]["json_schema"]["required"] == ["id", "amount_cents"]
    to_stdout = runner.invoke(cli, ["schemas", "export", str(app_file)])
    assert to_stdout.exit_code == 0 and json.loads(to_stdout.stdout) == saved

    ok = runner.invoke(cli, ["schemas", "check", str(contract), str(app_file)])
    assert ok.exit_code == 0, ok.output
    assert "no breaking change" in ok.stdout

    v2 = tmp_path / "v2.py"
    v2.write_text(APP_V1.replace("amount_cents: int", "amount_cents: str\n    currency: str"))
    broken = runner.invoke(cli, ["schemas", "check", str(contract), str(v2), "--json"])
    assert broken.exit_code == 1
    found = {(c["path"], c["kind"]) for c in json.loads(broken.stdout)}
    assert found == {("amount_cents", "type_changed"), ("currency", "new_required_field")}

    human = runner.invoke(cli, ["schemas", "check", str(contract), str(v2)])
    assert human.exit_code == 1
    assert "BREAKING" in human.stdout and "2 breaking change(s)" in human.stderr


def test_cli_check_with_a_bad_file_is_a_config_error(tmp_path: Path) -> None:
    runner = CliRunner()
    app_file = tmp_path / "app.py"
    app_file.write_text(APP_V1)
    missing = runner.invoke(cli, ["schemas", "check", str(tmp_path / "nope.json"), str(app_file)])
    assert missing.exit_code == 2 and "cannot read" in " ".join(missing.stderr.split())
    (tmp_path / "bad.json").write_text("{not json")
    bad = runner.invoke(cli, ["schemas", "check", str(tmp_path / "bad.json"), str(app_file)])
    assert bad.exit_code == 2 and "is not JSON" in " ".join(bad.stderr.split())
    (tmp_path / "other.json").write_text("[]")
    other = runner.invoke(cli, ["schemas", "check", str(tmp_path / "other.json"), str(app_file)])
    assert other.exit_code == 2
    assert "not a solo-os schemas export" in " ".join(other.stderr.split())
