"""The fixed credentials every emulated platform accepts.

Anything else presented to a platform gets that platform's 401.
"""

from __future__ import annotations

CREDENTIALS: dict[str, dict[str, str]] = {
    "redivis": {"token": "sbx-redivis-token-0001"},
    "dexi": {"account_id": "sbx-dexi-account", "api_key": "sbx-dexi-key-0001"},
    "reinfer": {"token": "sbx-reinfer-token-0001"},
    "invision": {"api_key": "sbx-invision-key-0001"},
    "datalinx": {
        "api_key": "sbx-datalinx-key-0001",
        "email": "demo@example.com",
        "password": "sbx-datalinx-pass-0001",
    },
}
