"""Schemathesis against a live node's OpenAPI schema (``/api/schema/``): requests generated from the
raw API and history operations, valid and invalid, with a valid token. Every answer must be a
documented status with a body that matches the schema (a JSON ``{"error", "detail"}`` for errors),
never a server error, and invalid input must be refused; the node's log stays free of tracebacks.

Bounded and derandomized: the same ~300 requests on every run, in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from spread_core.testing import LiveNode

from .test_bad_input import CRASH_MARKERS

pytestmark = pytest.mark.e2e

#: Operations fuzzed: the raw API and the topic history (not tokens, docs or replication).
FUZZED_PATHS = r"^/(raw|history)/"
EXAMPLES = 300
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def schema_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    return module_nodes("fuzz-schema")


@pytest.fixture(scope="module")
def schema(schema_node: LiveNode) -> Any:
    return schemathesis.openapi.from_url(f"{schema_node.url}/api/schema/").include(path_regex=FUZZED_PATHS)


def test_generated_requests_get_documented_answers_and_never_a_server_error(
    schema_node: LiveNode, schema: Any, auth: dict[str, str]
) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = {(operation.method.upper(), operation.path) for operation in operations}
    assert fuzzed == {
        ("GET", "/raw/{topic}"),
        ("POST", "/raw/{topic}"),
        ("DELETE", "/raw/{topic}"),
        ("GET", "/history/{topic}"),
    }
    cases = st.one_of(
        [
            operation.as_strategy(generation_mode=mode)
            for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )
    assert schema_node.log_path is not None
    log_offset = schema_node.log_path.stat().st_size

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call(base_url=schema_node.url, headers=auth)
        case.validate_response(response, checks=CHECKS, headers=auth)

    check()
    with open(schema_node.log_path, "rb") as log:
        log.seek(log_offset)
        text = log.read().decode(errors="replace")
    for marker in CRASH_MARKERS:
        assert marker not in text, f"{marker!r} in the node's log:\n{text[-3000:]}"
    # The node still serves.
    assert httpx.post(f"{schema_node.url}/raw/after/fuzz", content=b"ok", headers=auth).status_code == 200


def test_the_schema_documents_the_json_errors_of_the_raw_api(schema: Any) -> None:
    """The statuses the raw API answers with (see test_bad_input) are in the schema, each with
    the JSON error body; schemathesis holds answers to them."""
    documented = {
        (operation.method.upper(), status)
        for operation in (result.ok() for result in schema.get_all_operations())
        for status in operation.definition.raw["responses"]
    }
    for method, statuses in {
        "GET": ("304", "400", "401", "403", "404"),
        "POST": ("400", "401", "403", "408", "409", "413"),
        "DELETE": ("400", "401", "403", "409"),
    }.items():
        for status in statuses:
            assert (method, status) in documented, (method, status)
