"""Schemathesis hooks for Custodia's HTTP API.

`POST /v1/policy` takes the policy file as `application/toml`, a media type Schemathesis has no
serializer for; this sends the generated text as UTF-8 bytes. Run with the hooks loaded:

    PYTHONPATH=crates/custodia-server/tests/schemathesis SCHEMATHESIS_HOOKS=hooks \
        schemathesis run http://127.0.0.1:PORT/openapi.json -H "Authorization: Bearer $TOKEN" \
        --checks all --exclude-checks positive_data_acceptance

`positive_data_acceptance` is left out because the schema cannot say which purposes, categories
and policy rules a request must satisfy: those come from the policy in force, and a request that
breaks them is rightly refused with 422.
"""

import schemathesis


@schemathesis.serializer("application/toml")
def toml_serializer(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8")}
