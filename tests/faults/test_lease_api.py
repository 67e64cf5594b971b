"""The lease API under hostile and broken callers, on the real control plane:
tokens that are missing, garbage, expired or of the wrong identity; calls on
leases that are foreign or stale; bodies too large or too slow; connections
that dribble or idle. Each is refused with the documented status, costs the
API server nothing it need not, and the workers keep being served.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from taskmill.leaseapi.server import MAX_BODY_BYTES
from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, get, task, wait_phase
from tests.faults.lease_api_stack import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    INTRUDER_SA,
    PER_ADDRESS,
    REVIEWS_PER_SECOND,
    SecuredOperator,
    forged,
    secured_operator,
    token_reviews,
)


@pytest.fixture
def stack(
    lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path
) -> Iterator[SecuredOperator]:
    stack = secured_operator(lone_plane, lone_namespace, tmp_path)
    yield stack
    stack.stop()


def lease_one(stack: SecuredOperator, token: str, worker: str) -> dict[str, Any]:
    body = {"worker": worker, "types": ["echo"], "max": 1, "waitSeconds": 20}
    status, reply = stack.post("/v1/lease", body, token=token)
    assert status == 200, reply
    assert len(reply["tasks"]) == 1, reply
    leased: dict[str, Any] = reply["tasks"][0]
    return leased


def test_a_lease_is_heartbeat_and_completed_only_by_its_holder(stack: SecuredOperator) -> None:
    plane, ns = stack.plane, stack.namespace
    token, intruder = stack.token(), stack.token(INTRUDER_SA)
    pod_token = stack.pod_token("worker-pod-1")
    apply(plane, ns, task("held", "echo"))
    lease = lease_one(stack, token, "w-a")["leaseId"]
    assert get(plane, ns, "held")["status"]["lease"]["holder"] == stack.worker_identity

    def refused_to(token: str | None, worker: str | None) -> list[int]:
        statuses = [
            stack.post("/v1/heartbeat", {"leaseId": lease}, token=token, worker=worker)[0],
            stack.post(
                "/v1/complete",
                {"leaseId": lease, "outcome": "succeeded", "result": {"by": "intruder"}},
                token=token,
                worker=worker,
            )[0],
        ]
        status, reply = stack.post(
            "/v1/outcomes",
            {"outcomes": [{"leaseId": lease, "outcome": "failed"}]},
            token=token,
            worker=worker,
        )
        statuses.append(409 if status == 200 and reply["results"][0]["error"] else status)
        return statuses

    def all_foreigners_refused() -> None:
        # Same ServiceAccount, another worker name: not the holder.
        assert refused_to(token, "w-b") == [409, 409, 409]
        # No name at all: nothing to check against, so refused, not let through.
        assert refused_to(token, None) == [400, 400, 400]
        # A pod-bound token of the same ServiceAccount, claiming the holder's name.
        assert refused_to(pod_token, "w-a") == [409, 409, 409]
        # Not a worker identity; no token.
        assert refused_to(intruder, "w-a") == [403, 403, 403]
        assert refused_to(None, "w-a") == [401, 401, 401]

    all_foreigners_refused()
    # The holder is recorded in the Task: a restarted operator still knows it.
    stack.restart()
    all_foreigners_refused()

    assert stack.post("/v1/heartbeat", {"leaseId": lease}, token=token, worker="w-a")[0] == 200
    done = {"leaseId": lease, "outcome": "succeeded", "result": {"by": "w-a"}}
    assert stack.post("/v1/complete", done, token=token, worker="w-a")[0] == 204
    finished = wait_phase(plane, ns, "held", "Succeeded", timeout=30)
    assert finished["status"]["result"] == {"by": "w-a"}
    # Now stale, for everyone, the holder included.
    assert stack.post("/v1/complete", done, token=token, worker="w-a")[0] == 409
    assert stack.post("/v1/heartbeat", {"leaseId": lease}, token=token, worker="w-a")[0] == 409
    unknown = {"leaseId": "0" * 32, "outcome": "failed"}
    assert stack.post("/v1/complete", unknown, token=token, worker="w-a")[0] == 409


def test_a_pod_bound_token_holds_as_its_pod(stack: SecuredOperator) -> None:
    plane, ns = stack.plane, stack.namespace
    token, pod_token = stack.token(), stack.pod_token("worker-pod-2")
    apply(plane, ns, task("bound", "echo"))
    # Whatever name the body gives, the pod is the worker.
    lease = lease_one(stack, pod_token, "claimed-name")["leaseId"]
    recorded = get(plane, ns, "bound")["status"]["lease"]
    assert recorded["worker"] == "worker-pod-2"
    assert recorded["holder"] == f"{stack.worker_identity}/worker-pod-2"
    # An unbound token of the same ServiceAccount naming the pod is not it.
    done = {"leaseId": lease, "outcome": "succeeded", "result": {"by": "unbound"}}
    assert stack.post("/v1/complete", done, token=token, worker="worker-pod-2")[0] == 409
    done["result"] = {"by": "pod"}
    assert stack.post("/v1/complete", done, token=pod_token)[0] == 204
    assert wait_phase(plane, ns, "bound", "Succeeded", timeout=30)["status"]["result"] == {
        "by": "pod"
    }


def test_tokens_that_cannot_be_valid_cost_no_token_review(stack: SecuredOperator) -> None:
    plane = stack.plane
    real = stack.token()
    body = {"worker": "w", "types": ["echo"], "waitSeconds": 0}
    now = time.time()
    impossible = [f"garbage-{i}" for i in range(300)]
    impossible += [
        forged(real, exp=now - 3600),  # expired by its own claim
        forged(real, aud=["https://kubernetes.default.svc"]),  # another audience
        stack.token(audience="https://kubernetes.default.svc"),  # a real one, ditto
        "a.b.c",
    ]
    before = token_reviews(plane)
    statuses = {stack.post("/v1/lease", body, token=t)[0] for t in impossible}
    assert statuses == {401}
    # A header longer than aiohttp reads (8 KiB) is refused before any handler.
    assert stack.post("/v1/lease", body, token=real + "x" * 9000)[0] == 400
    assert token_reviews(plane) == before  # not one TokenReview

    # A real worker's token: one review, then cached.
    assert stack.post("/v1/lease", body, token=real)[0] == 200
    for _ in range(20):
        assert stack.post("/v1/lease", body, token=real)[0] == 200
    assert token_reviews(plane) == before + 1

    # Well-shaped forgeries do need the API server; they share a budget
    # (here 5 a second, bursts of 25), and the worker is served throughout.
    started = time.monotonic()
    answers = []
    for i in range(120):
        answers.append(stack.post("/v1/lease", body, token=forged(real, jti=f"forged-{i}"))[0])
        if i % 20 == 0:
            assert stack.post("/v1/lease", body, token=real)[0] == 200
    elapsed = time.monotonic() - started
    reviewed = token_reviews(plane) - before - 1
    assert set(answers) == {401, 503}
    budget = REVIEWS_PER_SECOND * 5 + REVIEWS_PER_SECOND * elapsed
    assert reviewed <= budget, (reviewed, elapsed)
    assert answers.count(401) == reviewed  # each reviewed one was refused
    # A token never seen before waits for the budget (503, retry), then is answered.
    intruder, deadline = stack.token(INTRUDER_SA), time.monotonic() + 10
    while (status := stack.post("/v1/lease", body, token=intruder)[0]) == 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)  # a retrying client's pace
    assert status == 403
    assert stack.alive(), stack.logs()


def test_bodies_over_the_limit_are_refused_and_only_after_the_token(
    stack: SecuredOperator,
) -> None:
    token = stack.token()
    big = json.dumps({"leaseId": "L", "outcome": "failed", "result": "x" * MAX_BODY_BYTES})
    for route in ("/v1/complete", "/v1/outcomes"):
        status, reply = stack.post(route, big.encode(), token=token, worker="w")
        assert (status, reply["error"]) == (413, "TooLarge")
        assert stack.post(route, big.encode(), worker="w")[0] == 401


def test_slow_and_idle_connections_are_cut_off_while_workers_are_served(
    stack: SecuredOperator,
) -> None:
    """An attacker on another address keeps opening connections that dribble
    headers or say nothing; the server closes each within its header timeout,
    refuses those beyond the per-address limit at once, and a real worker
    finishes a Task meanwhile."""
    plane, ns = stack.plane, stack.namespace
    stack.start_worker("served-worker", stack.token())
    port = stack.port
    closed_after: list[float] = []
    refused = 0

    async def attacker(slow: bool, stop: asyncio.Event) -> None:
        nonlocal refused
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            opened = time.monotonic()

            async def dribble(writer: asyncio.StreamWriter) -> None:
                for byte in b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 500:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)  # the slow client under test

            sender = asyncio.create_task(dribble(writer)) if slow else None
            try:
                answer = await asyncio.wait_for(reader.read(), timeout=HEADER_TIMEOUT + 5)
            except ConnectionResetError:
                # A refused connection is closed at once; bytes the attacker
                # had sent by then make the kernel answer with a reset.
                answer = b"HTTP/1.1 503 (reset)"
            finally:
                if sender is not None:
                    sender.cancel()
                writer.close()
            if answer.startswith(b"HTTP/1.1 503"):
                refused += 1
                await asyncio.sleep(0.2)  # the attacker's pace, not synchronisation
            else:
                assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
                closed_after.append(time.monotonic() - opened)

    async def attack_while_a_task_runs() -> float:
        stop = asyncio.Event()
        attackers = [
            asyncio.create_task(attacker(slow=i < 50, stop=stop)) for i in range(PER_ADDRESS + 30)
        ]
        try:
            await asyncio.sleep(HEADER_TIMEOUT)  # the attack is under way
            start = time.monotonic()
            apply(plane, ns, task("served", "echo", payload={"during": "attack"}))
            await asyncio.to_thread(wait_phase, plane, ns, "served", "Succeeded", 60)
            took = time.monotonic() - start
        finally:
            stop.set()
            await asyncio.gather(*attackers)
        return took

    try:
        took = asyncio.run(attack_while_a_task_runs())
    except Exception as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    assert took < 20, stack.logs()
    assert closed_after, "no attacking connection was ever accepted"
    assert max(closed_after) < HEADER_TIMEOUT + 3, max(closed_after)  # a loaded machine
    assert refused > 0  # the connections beyond the limit
    assert stack.alive(), stack.logs()


def test_a_body_sent_a_byte_at_a_time_is_cut_off_and_others_are_served(
    stack: SecuredOperator,
) -> None:
    token = stack.token()
    body = json.dumps({"leaseId": "L", "outcome": "failed"}).encode()

    async def scenario() -> tuple[bytes, float, list[int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        head = (
            "POST /v1/complete HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nTaskmill-Worker: w\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode())
        start = time.monotonic()

        async def trickle() -> None:
            for byte in body:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)  # the slow client under test

        sender = asyncio.create_task(trickle())
        served = []
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - start < BODY_TIMEOUT - 0.5:
                async with session.post(
                    f"{stack.url}/v1/lease",
                    json={"worker": "w2", "types": ["echo"], "waitSeconds": 0},
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    served.append(response.status)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=BODY_TIMEOUT + 5)
        answered = time.monotonic() - start
        sender.cancel()
        writer.close()
        return answer, answered, served

    answer, answered, served = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert answered < BODY_TIMEOUT + 1
    assert served
    assert set(served) == {200}


def test_an_idle_connection_is_closed(stack: SecuredOperator) -> None:
    async def scenario() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(2)
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=IDLE_TIMEOUT + 5) == b""
        writer.close()
        return time.monotonic() - start

    idle = asyncio.run(scenario())
    assert IDLE_TIMEOUT - 0.5 < idle < IDLE_TIMEOUT + 1.5
