"""Fuzz the lease API from its own OpenAPI document, against a real operator.

schemathesis reads ``GET /openapi.json`` from the running operator (auth on,
on the real control plane), generates requests that fit the document and
requests that break it, sends them with a valid worker token, and checks
every answer: no 5xx, only statuses the document declares, bodies and
content types as declared, schema-breaking requests refused, schema-valid
ones accepted (or refused with a declared 409/413). Then the operator must
still be up and dispatching: a worker started afterwards runs a Task.

The CI run is bounded: ``TASKMILL_FUZZ_CASES`` cases of each kind (valid,
invalid), 150 by default, about a minute in all. For a longer hunt::

    TASKMILL_FUZZ_CASES=5000 hack/test tests/faults/test_lease_api_fuzz.py
"""

from __future__ import annotations

import collections
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.config import SchemathesisConfig

from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, task, wait_phase
from tests.faults.lease_api_stack import SecuredOperator, secured_operator

CASES = int(os.environ.get("TASKMILL_FUZZ_CASES", "150"))

# 413 is declared for every body route: JSON Schema cannot say "at most
# 1 MiB in all", so a body valid field by field may still be too large. 408
# and 503 are declared for slow bodies and a busy token budget.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "409", "413"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "408", "409", "413"]
"""


def short_long_polls(case: Case) -> Case:
    """A lease call waits up to ``waitSeconds`` (default 20) when nothing is
    queued; valid waits are cut to 50 ms so hundreds of cases fit a minute.
    Invalid ones are left alone: they must still be refused."""
    if case.operation.path == "/v1/lease" and isinstance(case.body, dict):
        wait = case.body.get("waitSeconds", 20.0)
        if type(wait) in (int, float) and 0 <= wait <= 60:
            case.body["waitSeconds"] = min(wait, 0.05)
    return case


@pytest.fixture
def stack(
    lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path
) -> Iterator[SecuredOperator]:
    stack = secured_operator(lone_plane, lone_namespace, tmp_path)
    yield stack
    stack.stop()


def fuzz(stack: SecuredOperator, token: str) -> tuple[dict[str, str], collections.Counter[str]]:
    """Run the generated cases; the distinct failures found, and the answers seen."""
    schema = schemathesis.openapi.from_url(
        f"{stack.url}/openapi.json", config=SchemathesisConfig.from_str(CONFIG)
    )
    failures: dict[str, str] = {}
    answers: collections.Counter[str] = collections.Counter()
    headers = {"Authorization": f"Bearer {token}"}

    def cases_of(mode: GenerationMode) -> None:
        strategy: st.SearchStrategy[Case] = schema.as_strategy(generation_mode=mode)

        @given(case=strategy.map(short_long_polls))
        @settings(
            max_examples=CASES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            try:
                response = case.call_and_validate(base_url=stack.url, headers=headers, timeout=30)
                answers[f"{case.operation.label} {response.status_code}"] += 1
            except BaseException as exc:  # each check's failure, collected, not shrunk
                for failure in getattr(exc, "exceptions", [exc]):
                    title = str(failure).strip().splitlines()[0]
                    key = f"{mode.value} {case.operation.label}: {type(failure).__name__} {title}"
                    failures.setdefault(key, str(failure)[:2000])

        run()

    cases_of(GenerationMode.POSITIVE)
    cases_of(GenerationMode.NEGATIVE)
    return failures, answers


def test_the_lease_api_answers_every_generated_request_as_documented(
    stack: SecuredOperator,
) -> None:
    token = stack.token()
    failures, answers = fuzz(stack, token)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
    assert sum(answers.values()) >= CASES  # the cases really ran
    assert not any(key.endswith(tuple(f" {s}" for s in range(500, 600))) for key in answers)
    # The operator is still up, ready, and dispatching.
    assert stack.alive(), stack.logs()
    with urllib.request.urlopen(f"{stack.url}/readyz", timeout=5) as ready:
        assert ready.status == 200
    stack.start_worker("after-fuzz", token)
    apply(stack.plane, stack.namespace, task("after-fuzz", "echo", payload={"still": "working"}))
    try:
        done = wait_phase(stack.plane, stack.namespace, "after-fuzz", "Succeeded", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    assert done["status"]["result"]
