"""Writes the inputs of the `coretraffic diff` golden cases: `<case>/running.json`, `routes.json`, `desired.json`.

Run once by hand (`python -m tests.testdata.diff.make_inputs`), then `UPDATE_GOLDEN=1 pytest tests/unit/test_diff.py` to
rewrite the expected outputs, and review the diff. The certificates of `app`, `shop` and `*.wild` are the fixed ones
of `tests/testdata/render/`; the others are new throwaway test material from `DemoCA` (valid 2020-2120, except the
expired one); their keys protect nothing. `running.json` holds real bcrypt hashes (cost 4) of the passwords it was
rendered with, so the diff's password check runs for real. `desired.json` is `routes.json` rendered (with the fake
hasher of the render goldens): fixed too, so a later change of the renderer does not move these goldens.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.render import RenderSettings, render, with_admin_listen
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import validate_route_set
from coretraffic.testing.pki import DemoCA
from tests.support.golden import fake_hash

HERE = Path(__file__).parent
GOLDEN = HERE.parent / "render"
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2120, 1, 1, tzinfo=datetime.UTC)
SETTINGS = {"version": "1.2.3"}
# Both sides as `run` loads them: with the admin address of the Caddy they are for.
ADMIN_LISTEN = "unix//run/coretraffic/admin.sock"


def _golden_config(case: str, index: int = 0) -> dict[str, Any]:
    document = json.loads((GOLDEN / case / "routes.json").read_text())
    configs: list[dict[str, Any]] = document["reverseConfigs"] if isinstance(document, dict) else document
    return configs[index]


def _auth(user: str, password: str) -> dict[str, str]:
    return {"type": "Basic", "user": user, "pass": password}


class _Maker:
    def __init__(self) -> None:
        self.ca = DemoCA("coretraffic diff golden CA")

    def config(self, host: str, ip: str = "10.0.1.1", **extra: Any) -> dict[str, Any]:
        not_after = extra.pop("not_after", NOT_AFTER)
        issued = self.ca.issue([host], not_before=NOT_BEFORE, not_after=not_after)
        return {
            "hostName": host,
            "destinationIps": [ip],
            "destinationPorts": [8080],
            "privateKey": issued.private_key_pem,
            "publicKey": issued.certificate_pem,
            **extra,
        }


def _running(configs: list[dict[str, Any]], settings: dict[str, Any], base: dict[str, Any] | None = None) -> Any:
    validation = validate_route_set(configs, NOW)
    assert not validation.errors, validation.errors
    config = render(validation.routes, RenderSettings(**settings), BaseConfig(base or {}), BcryptHasher(4))
    return with_admin_listen(config, ADMIN_LISTEN)


def _write(case: str, name: str, document: Any) -> None:
    (HERE / case).mkdir(exist_ok=True)
    (HERE / case / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _write_desired(
    case: str, configs: list[dict[str, Any]], settings: dict[str, Any], base: dict[str, Any] | None = None
) -> None:
    _write(case, "routes.json", configs)
    _write(case, "settings.json", settings)
    routes = validate_route_set(configs, NOW).routes
    desired = render(routes, RenderSettings(**settings), BaseConfig(base or {}), fake_hash)
    _write(case, "desired.json", with_admin_listen(desired, ADMIN_LISTEN))


def main() -> None:
    make = _Maker()
    app_a, app_b = _golden_config("plain"), _golden_config("base")
    shop, wild = _golden_config("multi", 0), _golden_config("multi", 1)
    users = make.config("users.example.test", authentication=_auth("bob", "builder"))
    locked = make.config("locked.example.test", authentication=_auth("frank", "open-sesame"))
    keep = make.config("keep.example.test", authentication=_auth("gina", "unchanged"))
    gone, broken, same = (
        make.config("gone.example.test"),
        make.config("broken.example.test"),
        make.config("same.example.test"),
    )

    # Every kind of host change; a server the base config keeps and one it no longer has (`retired`); a foreign
    # server, added by hand, that run leaves alone (`legacy`) and one on coretraffic's HTTPS port (`squatter`).
    srv1 = {"listen": [":9000"], "routes": [{"handle": [{"body": "operator", "handler": "static_response"}]}]}
    retired = {"listen": [":9200"], "routes": [{"handle": [{"body": "retired", "handler": "static_response"}]}]}
    base = {"apps": {"http": {"servers": {"srv1": srv1}}}}
    base_before = {"apps": {"http": {"servers": {"srv1": srv1, "retired": retired}}}}
    running = _running([app_a, shop, wild, users, locked, keep, gone, broken, same], SETTINGS, base_before)
    running["apps"]["http"]["servers"]["legacy"] = {
        "listen": [":9100"],
        "routes": [{"match": [{"host": ["legacy.example.test"]}], "handle": [{"handler": "static_response"}]}],
    }
    running["apps"]["http"]["servers"]["squatter"] = {
        "listen": [":8000"],
        "routes": [{"handle": [{"body": "squatter", "handler": "static_response"}]}],
    }
    _write("changes", "running.json", running)
    _write_desired(
        "changes",
        [
            {**app_b, "destinationIps": ["10.0.0.1", "10.0.0.2"], "destinationPorts": [8080]},
            {**shop, "authentication": _auth("alice", "looking-glass")},
            {**wild, "authentication": _auth("erin", "wildcard")},
            {**users, "authentication": _auth("carol", "builder")},
            {k: v for k, v in locked.items() if k != "authentication"},
            keep,
            same,
            {**broken, "privateKey": gone["privateKey"]},
            {k: v for k, v in same.items() if k != "hostName"},
            make.config("new.example.test", authentication=_auth("dave", "fresh")),
            make.config("expired.example.test", not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)),
        ],
        SETTINGS,
        base,
    )

    # The same set again, basic auth included: nothing to do.
    _write("unchanged", "running.json", _running([keep, same], SETTINGS))
    _write_desired("unchanged", [keep, same], SETTINGS)

    # A new coretraffic version on another HTTPS port: every host's header, and the settings outside the hosts.
    _write("upgrade", "running.json", _running([same], {**SETTINGS, "https_port": 8000}))
    _write_desired("upgrade", [same], {**SETTINGS, "version": "1.3.0", "https_port": 8443})

    # A Caddy that coretraffic never configured, as `caddy adapt` writes a small Caddyfile site.
    _write(
        "foreign",
        "running.json",
        {
            "admin": {"listen": "localhost:2019"},
            "apps": {
                "http": {
                    "servers": {
                        "srv0": {
                            "listen": [":443"],
                            "routes": [
                                {
                                    "match": [{"host": ["example.com"]}],
                                    "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "localhost:8080"}]}],
                                    "terminal": True,
                                }
                            ],
                        }
                    }
                },
                "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
            },
        },
    )
    _write_desired("foreign", [same], SETTINGS)

    # Caddy answers `null` when it runs nothing at all.
    _write("empty", "running.json", None)
    _write_desired("empty", [keep], SETTINGS)


if __name__ == "__main__":
    main()
