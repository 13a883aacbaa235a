"""Writes the golden inputs (`<case>/routes.json`, `base.json`, `settings.json`) with fresh fixed-date certificates.

Run once by hand (`python tests/testdata/render/make_inputs.py`), then `UPDATE_GOLDEN=1 pytest
tests/unit/test_render.py` to rewrite the expected outputs, and review the diff. The certificates are throwaway
test material from `DemoCA`, valid 2020-01-01 to 2120-01-01 so that the goldens do not expire; their keys protect
nothing.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from coretraffic.caddyjson.base import BASE_SENTINEL_HOST
from coretraffic.testing.pki import DemoCA

HERE = Path(__file__).parent
NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2120, 1, 1, tzinfo=datetime.UTC)


def _config(ca: DemoCA, host: str, san: str, ips: list[str], ports: list[int], **extra: Any) -> dict[str, Any]:
    issued = ca.issue([san], not_before=NOT_BEFORE, not_after=NOT_AFTER)
    return {
        "hostName": host,
        "destinationIps": ips,
        "destinationPorts": ports,
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
        **extra,
    }


def _write(case: str, name: str, document: Any) -> None:
    (HERE / case).mkdir(exist_ok=True)
    (HERE / case / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def write_buckets_case(ca: DemoCA) -> None:
    """More hosts than `flat_max`: plain hosts in buckets by upstream count, auth and wildcard on their own."""
    one = [_config(ca, f"h{i}.example.test", f"h{i}.example.test", ["10.0.1.1"], [80 + i]) for i in range(4)]
    two = [_config(ca, f"t{i}.example.test", f"t{i}.example.test", ["10.0.2.1", "10.0.2.2"], [80]) for i in range(2)]
    authed = _config(
        ca, "auth.example.test", "auth.example.test", ["10.0.3.1"], [80],
        authentication={"type": "Basic", "user": "bob", "pass": "builder"},
    )  # fmt: skip
    wildcard = _config(ca, "*.w.example.test", "*.w.example.test", ["10.0.4.1"], [80])
    _write("buckets", "routes.json", [wildcard, *reversed(one), authed, *two])
    settings = {"version": "1.2.3", "flat_max": 2, "bucket_size": 3}
    _write("buckets", "settings.json", settings)


def main() -> None:
    ca = DemoCA("coretraffic golden CA")
    write_buckets_case(ca)
    _write("plain", "routes.json", [_config(ca, "app.example.test", "app.example.test", ["10.0.0.1"], [8080])])
    _write("plain", "settings.json", {"version": "1.2.3"})

    # Deliberately out of order, with a mixed-case name, a wildcard, basic auth, IPv6 and a DNS upstream.
    _write(
        "multi",
        "routes.json",
        {
            "reverseConfigs": [
                _config(
                    ca,
                    "Shop.Example.Test",
                    "shop.example.test",
                    ["2001:db8::10", "10.0.0.2", "2001:DB8::10"],
                    [443, 8443, 443],
                    authentication={"type": "Basic", "user": "alice", "pass": "wonderland"},
                ),
                _config(ca, "*.wild.example.test", "*.wild.example.test", ["backend.internal"], [80]),
            ]
        },
    )
    _write(
        "multi",
        "settings.json",
        {"version": "1.2.3", "listen_host": "0.0.0.0"},
    )

    _write("base", "routes.json", [_config(ca, "app.example.test", "app.example.test", ["127.0.0.1"], [3000])])
    operator = ca.issue(["operator.example.test"], not_before=NOT_BEFORE, not_after=NOT_AFTER)
    # What `caddy adapt` makes of a Caddyfile with global `servers` options, one operator site on :9000 and the
    # sentinel site (captured from Caddy 2.11.7), plus an admin block, logging and an operator certificate.
    _write(
        "base",
        "base.json",
        {
            "admin": {"listen": "localhost:2019", "config": {"persist": False}},
            "logging": {"logs": {"default": {"level": "WARN"}}},
            "apps": {
                "http": {
                    "grace_period": 5000000000,
                    "servers": {
                        "srv0": {
                            "listen": [":80"],
                            "read_header_timeout": 10000000000,
                            "max_header_bytes": 16000,
                            "routes": [{"match": [{"host": [BASE_SENTINEL_HOST]}], "terminal": True}],
                        },
                        "srv1": {
                            "listen": [":9000"],
                            "read_header_timeout": 10000000000,
                            "max_header_bytes": 16000,
                            "routes": [
                                {"handle": [{"body": "operator", "handler": "static_response", "status_code": 200}]}
                            ],
                        },
                    },
                },
                "tls": {
                    "certificates": {
                        "load_pem": [
                            {
                                "certificate": operator.certificate_pem,
                                "key": operator.private_key_pem,
                                "tags": ["operator"],
                            }
                        ]
                    }
                },
            },
        },
    )
    _write(
        "base",
        "settings.json",
        {"version": "0.1.0", "http3": True},
    )


if __name__ == "__main__":
    main()
