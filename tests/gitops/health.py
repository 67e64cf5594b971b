"""Run the shipped Argo CD health checks as Argo CD does: Lua 5.1, the object
as the global ``obj``, the returned table's ``status`` and ``message``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "examples" / "argocd-health" / "taskmill.dev"
KINDS = ("Task", "CronTask", "TaskQueue")


def _table(runtime: lua.LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _table(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_table(runtime, v) for v in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of ``obj`` by the health check of ``kind``."""
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _table(runtime, obj)
    script = (CHECKS / kind / "health.lua").read_text()
    result = runtime.execute(script)
    return str(result["status"]), str(result["message"] or "")
