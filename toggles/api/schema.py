"""OpenAPI for the deployment-facing endpoints.

The hot-path views (GET /api/v1/config and OFREP) are plain Django views that drf-spectacular
cannot see, so `document_plain_views` adds them to the generated schema; the OFREP part follows
the OpenFeature Remote Evaluation Protocol's own OpenAPI description.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

SECURITY = [{"DeploymentToken": []}, {"DeploymentApiKey": []}]
SECURITY_SCHEMES = {
    "DeploymentToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A deployment token (`manage.py issue_token <tenant>/<deployment>`).",
    },
    "DeploymentApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same deployment token, for clients that send API keys.",
    },
}


class DeploymentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.DeploymentTokenAuthentication"
    name = list(SECURITY_SCHEMES)

    def get_security_requirement(self, auto_schema):
        return SECURITY

    def get_security_definition(self, auto_schema):
        return list(SECURITY_SCHEMES.values())


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": _ref(name)}}}
    if headers:
        response["headers"] = headers
    return response


STRING = {"schema": {"type": "string"}}
SECONDS = {"schema": {"type": "string", "pattern": "^[0-9]+$"}}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of the copy the client has: 304 with no body when it is current.",
}
VALUE = {"oneOf": [{"type": "boolean"}, {"type": "string"}, {"type": "number"}]}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": STRING}
THROTTLED_HEADERS = {
    "Retry-After": {**SECONDS, "description": "whole seconds until the rate limit resets"}
}

SCHEMAS = {
    "ConfigDocument": {
        "type": "object",
        "required": ["tenant", "profile", "version", "issued_at", "values", "red_lines", "digest"],
        "properties": {
            "tenant": {"type": "string"},
            "profile": {"type": "string"},
            "version": {"type": "integer", "minimum": 1, "description": "only ever increases"},
            "issued_at": {"type": "string", "format": "date-time"},
            "values": {
                "type": "object",
                "additionalProperties": VALUE,
                "description": "every capability's effective value, red lines at theirs",
            },
            "red_lines": {"type": "array", "items": {"type": "string"}},
            "digest": {
                "type": "string",
                "pattern": "^sha256:[0-9a-f]{64}$",
                "description": "SHA-256 of the canonical JSON (sorted keys, no whitespace) "
                "of the document without `digest`",
            },
        },
    },
    "ConfigError": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "OfrepEvaluationRequest": {
        "type": "object",
        "properties": {
            "context": {
                "type": "object",
                "description": "accepted and ignored: the token selects the deployment's config",
            }
        },
    },
    "OfrepEvaluationSuccess": {
        "type": "object",
        "required": ["key", "value", "reason", "variant", "metadata"],
        "properties": {
            "key": {"type": "string"},
            "value": VALUE,
            "reason": {"type": "string", "enum": ["STATIC", "TARGETING_MATCH", "DEFAULT"]},
            "variant": {"type": "string", "enum": ["red_line", "profile", "default"]},
            "metadata": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [{"type": "boolean"}, {"type": "string"}, {"type": "number"}]
                },
            },
        },
    },
    "OfrepEvaluationFailure": {
        "type": "object",
        "required": ["key", "errorCode"],
        "properties": {
            "key": {"type": "string"},
            "errorCode": {"type": "string", "enum": ["PARSE_ERROR", "INVALID_CONTEXT"]},
            "errorDetails": {"type": "string"},
        },
    },
    "OfrepFlagNotFound": {
        "type": "object",
        "required": ["key", "errorCode"],
        "properties": {
            "key": {"type": "string"},
            "errorCode": {"type": "string", "enum": ["FLAG_NOT_FOUND"]},
            "errorDetails": {"type": "string"},
        },
    },
    "OfrepBulkEvaluationSuccess": {
        "type": "object",
        "required": ["flags"],
        "properties": {"flags": {"type": "array", "items": _ref("OfrepEvaluationSuccess")}},
    },
    "OfrepBulkEvaluationFailure": {
        "type": "object",
        "required": ["errorCode"],
        "properties": {
            "errorCode": {"type": "string", "enum": ["PARSE_ERROR", "INVALID_CONTEXT"]},
            "errorDetails": {"type": "string"},
        },
    },
    "OfrepGeneralError": {
        "type": "object",
        "properties": {"errorDetails": {"type": "string"}},
    },
}

OFREP_BODY = {
    "required": False,
    "content": {"application/json": {"schema": _ref("OfrepEvaluationRequest")}},
}
OFREP_COMMON = {
    "401": _json(
        "OfrepGeneralError", "Missing, malformed, unknown or revoked token", UNAUTHORIZED_HEADERS
    ),
    "429": _json("OfrepGeneralError", "Rate limit of the token reached", THROTTLED_HEADERS),
}

PATHS = {
    "/api/v1/config": {
        "get": {
            "operationId": "config",
            "tags": ["config"],
            "summary": "The effective config of the calling deployment, signed",
            "description": 'The body is signed with Ed25519: `Config-Signature: kid="…", '
            'alg="Ed25519", sig="<base64url>"` over the exact body bytes; the keys are at '
            "/api/v1/signing-keys. Versions only increase.",
            "security": SECURITY,
            "parameters": [IF_NONE_MATCH],
            "responses": {
                "200": _json(
                    "ConfigDocument",
                    "The config document",
                    {
                        "ETag": {**STRING, "description": "strong, from the digest"},
                        "Cache-Control": STRING,
                        "Config-Signature": STRING,
                        "Config-Version": SECONDS,
                    },
                ),
                "304": {"description": "Not modified", "headers": {"ETag": STRING}},
                "401": _json(
                    "ConfigError",
                    "Missing, malformed, unknown or revoked token",
                    UNAUTHORIZED_HEADERS,
                ),
                "404": _json("ConfigError", "The deployment's profile does not exist"),
                "429": _json("ConfigError", "Rate limit of the token reached", THROTTLED_HEADERS),
            },
        }
    },
    "/ofrep/v1/evaluate/flags/{key}": {
        "post": {
            "operationId": "ofrep_evaluate_flag",
            "tags": ["ofrep"],
            "summary": "OFREP single flag evaluation",
            "security": SECURITY,
            "parameters": [
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": OFREP_BODY,
            "responses": {
                "200": _json("OfrepEvaluationSuccess", "The flag's value"),
                "400": _json("OfrepEvaluationFailure", "Bad evaluation request"),
                "404": _json("OfrepFlagNotFound", "No such flag"),
                **OFREP_COMMON,
            },
        }
    },
    "/ofrep/v1/evaluate/flags": {
        "post": {
            "operationId": "ofrep_evaluate_flags",
            "tags": ["ofrep"],
            "summary": "OFREP bulk flag evaluation",
            "security": SECURITY,
            "parameters": [IF_NONE_MATCH],
            "requestBody": OFREP_BODY,
            "responses": {
                "200": _json("OfrepBulkEvaluationSuccess", "Every flag's value", {"ETag": STRING}),
                "304": {"description": "Not modified", "headers": {"ETag": STRING}},
                "400": _json("OfrepBulkEvaluationFailure", "Bad evaluation request"),
                "404": _json("OfrepGeneralError", "The deployment's profile does not exist"),
                **OFREP_COMMON,
            },
        }
    },
}


def document_plain_views(result, generator, request, public):
    """drf-spectacular postprocessing hook: add the plain views' operations."""
    result.setdefault("paths", {}).update(PATHS)
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return result
