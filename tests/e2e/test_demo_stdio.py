"""Every policy scenario, through toolgate, against the bundled demo server over stdio
(`command = "toolgate"`, `args = ["demo", "--stdio"]`), with the Python SDK client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from helpers import (
    RELOAD_TIMEOUT,
    assert_allowed,
    assert_denied,
    demo_server,
    expect_mcp_error,
    is_error,
    mcp_client,
    parse_denial,
    poll,
    run,
    tool_names,
)

# The demo server's tools (crates/demo/src/tools.rs).
DEMO_TOOLS = {
    "add_clinical_note", "cancel_appointment", "create_agent_checkout_session", "create_appointment",
    "create_patient", "delete_patient_record", "export_patient_data", "find_available_slots",
    "generate_monthly_report", "get_dental_chart", "get_invoice", "get_patient", "get_treatment_plan",
    "list_appointments", "list_clinical_notes", "list_invoices", "list_patients", "list_payments",
    "list_providers", "refund_payment", "reschedule_appointment", "run_report_sql", "search_patients",
    "send_appointment_reminder", "send_patient_email", "update_patient_contact",
    "update_treatment_plan_status", "verify_insurance_eligibility",
}  # fmt: skip

CHECKOUT = {
    "patient_id": "pat_1001",
    "amount": 4500,
    "currency": "usd",
    "success_url": "https://example.com/paid",
    "cancel_url": "https://example.com/cancelled",
}

LIMITS_POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "search_patients": {"limits": [{"counter": "searches", "window": 2, "max": 3, "scope": "grant"}]},
        "list_appointments": {
            "limits": [{"counter": "appointment_lists", "window": "day", "max": 2, "scope": "grant"}]
        },
    },
}


def visible_under(policy: dict[str, Any], upstream_tools: set[str]) -> set[str]:
    """What an agent may see: listed tools (under default deny) that are neither hidden nor
    `action: deny`."""
    hidden = set(policy.get("hide", []))
    return {
        name
        for name, rule in policy["tools"].items()
        if name in upstream_tools and name not in hidden and rule.get("action", "allow") != "deny"
    }


@pytest.fixture
def demo(gateways: Any, demo_policy: dict[str, Any]) -> Any:
    """A gateway in front of the demo server with policies/demo.json and a limits policy."""
    return gateways.new([demo_server("demo", "demo")], {"demo": demo_policy, "limits": LIMITS_POLICY})


def test_list_tools_is_filtered(demo: Any, demo_policy: dict[str, Any]) -> None:
    token = demo.grant("demo", "list-test")

    async def scenario() -> set[str]:
        async with mcp_client(demo.url("demo"), token) as client:
            return await tool_names(client)

    names = run(scenario)
    assert "export_patient_data" not in names, "hidden tools must not be listed"
    assert "delete_patient_record" not in names, "tools denied by `action: deny` must not be listed"
    assert "create_patient" not in names, "tools denied by `default: deny` must not be listed"
    assert names == visible_under(demo_policy, DEMO_TOOLS)


def test_allow(demo: Any) -> None:
    token = demo.grant("demo", "allow-test")

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            assert_allowed(await client.call_tool("list_patients", {}), contains="pat_1001")
            assert_allowed(await client.call_tool("get_patient", {"patient_id": "pat_1001"}), contains="pat_1001")

    run(scenario)


def test_deny_with_reason(demo: Any) -> None:
    token = demo.grant("demo", "deny-test")

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            result = await client.call_tool("delete_patient_record", {"patient_id": "pat_1001", "reason": "test"})
            assert_denied(
                result,
                "/tools/delete_patient_record/action",
                "Patient records are deleted by staff, never by an agent.",
            )
            # The record is still there: the call never reached the server.
            assert_allowed(await client.call_tool("get_patient", {"patient_id": "pat_1001"}), contains="pat_1001")

    run(scenario)


def test_default_deny(demo: Any) -> None:
    token = demo.grant("demo", "default-deny-test")

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            assert_denied(await client.call_tool("list_providers", {}), "(default deny)")
            # Also for a tool the server does not have at all.
            assert_denied(await client.call_tool("wipe_everything", {}), "(default deny)")

    run(scenario)


def test_hidden_tool_is_unknown(demo: Any) -> None:
    token = demo.grant("demo", "hidden-test")

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            await expect_mcp_error(client.call_tool("export_patient_data", {"patient_id": "pat_1001"}), -32602)
            # The session is still usable afterwards.
            assert_allowed(await client.call_tool("list_patients", {}))

    run(scenario)


def test_argument_predicates(demo: Any) -> None:
    token = demo.grant("demo", "predicates-test")
    on_deny = "Checkout sessions over 100.00 need a person."

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            assert_allowed(await client.call_tool("create_agent_checkout_session", CHECKOUT), contains="checkout")
            # require: currency in [usd, eur]
            result = await client.call_tool("create_agent_checkout_session", {**CHECKOUT, "currency": "gbp"})
            assert_denied(result, "/tools/create_agent_checkout_session/require/0", on_deny)
            # deny_if: amount > 10000, with the detail in `why`
            result = await client.call_tool("create_agent_checkout_session", {**CHECKOUT, "amount": 25000})
            denial = assert_denied(result, "/tools/create_agent_checkout_session/deny_if/0", on_deny)
            assert denial.why and "25000" in denial.why, denial.text
            # deny_if on an argument of the wrong type matches (fails closed)
            result = await client.call_tool("create_agent_checkout_session", {**CHECKOUT, "amount": "lots"})
            assert_denied(result, "/tools/create_agent_checkout_session/deny_if/0", on_deny)
            # regex deny_if
            result = await client.call_tool("run_report_sql", {"sql": "DROP TABLE patients"})
            read_only = "Reports are read-only: no statements that change data."
            assert_denied(result, "/tools/run_report_sql/deny_if/0", read_only)
            result = await client.call_tool("run_report_sql", {"sql": "select count(*) from appointments"})
            assert_allowed(result, contains="count")
            result = await client.call_tool(
                "update_patient_contact", {"patient_id": "pat_1001", "email": "x@mailinator.com"}
            )
            assert_denied(result, "/tools/update_patient_contact/deny_if/0")

    run(scenario)


def test_limit_denies_max_plus_one_then_allows_after_window(demo: Any) -> None:
    token = demo.grant("demo", "limit-test", policy="limits")

    async def scenario() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            started = time.monotonic()
            for i in range(3):
                assert_allowed(await client.call_tool("search_patients", {"query": f"a{i}"}))
            result = await client.call_tool("search_patients", {"query": "a3"})
            elapsed = time.monotonic() - started
            assert elapsed < 2, f"three calls took {elapsed:.1f} s, longer than the window: cannot judge"
            denial = assert_denied(result, "/tools/search_patients/limits/0")
            assert denial.retry_after is not None, f"a limit denial names the seconds to retry: {denial.text!r}"
            assert 0 <= denial.retry_after <= 2, denial.text
            # After the window has passed the tool is allowed again.
            await asyncio.sleep(max(denial.retry_after, 1) + 0.3)

            async def allowed_again() -> Any:
                result = await client.call_tool("search_patients", {"query": "again"})
                return None if is_error(result) else result

            result = await poll(allowed_again, timeout=3.0, interval=0.5)
            assert result is not None, "still denied after the window"
            assert_allowed(result)

    run(scenario)


def test_restart_keeps_counters(demo: Any) -> None:
    token = demo.grant("demo", "restart-test", policy="limits")

    async def two_calls() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            for _ in range(2):
                assert_allowed(await client.call_tool("list_appointments", {}))

    async def third_call() -> None:
        async with mcp_client(demo.url("demo"), token) as client:
            denial = assert_denied(await client.call_tool("list_appointments", {}), "/tools/list_appointments/limits/0")
            assert denial.retry_after is not None and denial.retry_after > 0, denial.text

    run(two_calls)
    demo.restart()
    run(third_call)


def test_progress_notifications_pass_through(demo: Any) -> None:
    token = demo.grant("demo", "progress-test")

    async def scenario() -> list[tuple[float, float | None, str | None]]:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        async with mcp_client(demo.url("demo"), token) as client:
            result = await client.call_tool(
                "generate_monthly_report", {"month": "2026-08"}, progress_callback=on_progress
            )
            assert_allowed(result, contains="sections")
        return seen

    seen = run(scenario)
    assert [p for p, _, _ in seen] == [1, 2, 3, 4, 5], seen
    assert all(total == 5 for _, total, _ in seen), seen
    assert seen[-1][2] == "patients (5/5)", seen


def test_hot_reload(gateways: Any) -> None:
    before = {"version": "1", "default": "deny", "tools": {"list_patients": {}, "get_patient": {}}}
    after = {
        "version": "1",
        "default": "deny",
        "tools": {"list_patients": {"action": "deny", "reason": "Listing is switched off."}, "get_patient": {}},
    }
    gw = gateways.new([demo_server("demo", "reload")], {"reload": before})
    token = gw.grant("demo", "reload-test")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            assert_allowed(await client.call_tool("list_patients", {}))
            assert "list_patients" in await tool_names(client)
            gw.write_policy("reload", after)

            async def denied() -> Any:
                result = await client.call_tool("list_patients", {})
                return result if is_error(result) else None

            result = await poll(denied, timeout=RELOAD_TIMEOUT)
            assert result is not None, f"policy change not applied within {RELOAD_TIMEOUT} s"
            assert_denied(result, "/tools/list_patients/action", "Listing is switched off.")
            assert await tool_names(client) == {"get_patient"}
        # A new session sees the new policy too.
        async with mcp_client(gw.url("demo"), token) as client:
            assert await tool_names(client) == {"get_patient"}
            assert_allowed(await client.call_tool("get_patient", {"patient_id": "pat_1001"}))

    run(scenario)


def test_invalid_reload_keeps_old_policy(gateways: Any) -> None:
    good = {"version": "1", "default": "deny", "tools": {"list_patients": {}}}
    gw = gateways.new([demo_server("demo", "reload")], {"reload": good})
    token = gw.grant("demo", "bad-reload-test")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            assert_allowed(await client.call_tool("list_patients", {}))
            # An invalid policy (bad `default`) is refused and the old one kept.
            gw.write_policy("reload", {"version": "1", "default": "sometimes", "tools": {}})
            await asyncio.sleep(2.5)
            assert_allowed(await client.call_tool("list_patients", {}))

            async def logged() -> bool:
                return "/default" in gw.logs or "reload.json" in gw.logs

            assert await poll(logged, timeout=RELOAD_TIMEOUT), "the refused policy's error was not logged"
            # A valid change afterwards still applies.
            gw.write_policy("reload", {"version": "1", "default": "deny", "tools": {}})

            async def denied() -> Any:
                result = await client.call_tool("list_patients", {})
                return result if is_error(result) else None

            result = await poll(denied, timeout=RELOAD_TIMEOUT)
            assert result is not None, "a valid policy after an invalid one was not applied"
            assert parse_denial(result).rule == "(default deny)"

    run(scenario)


def test_grant_without_policy_denies_everything(gateways: Any) -> None:
    """A server without a default policy, a grant without --policy: every call is denied
    by `(no policy)`."""
    gw = gateways.new([demo_server("demo", policy=None)], {"unused": {"version": "1", "default": "allow"}})
    token = gw.grant("demo", "no-policy-test")

    async def scenario() -> None:
        async with mcp_client(gw.url("demo"), token) as client:
            assert_denied(await client.call_tool("list_patients", {}), "(no policy)")

    run(scenario)
