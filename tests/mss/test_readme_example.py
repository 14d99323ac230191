"""The README's embedding example (``import mss``, a call-policy hook) runs exactly as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from netutil import run_on
from phones import Phone
from serverutil import ROOT, free_udp_port

from mss.app import open_configured_storage, resolve_realm
from mss.config import load_config
from mss.features.users import UserDirectory


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(
        r"<!-- policy-example[^>]*-->\s*```python\n(.*?)```\s*<!-- /policy-example -->", text, re.S
    )
    assert m, "the README lost its policy example"
    return m.group(1)


def test_readme_policy_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_udp_port()
    monkeypatch.chdir(tmp_path)  # the example uses ./mss-data
    for name, value in {
        "MSS_TRANSPORT_LISTEN": f"udp:127.0.0.1:{port}",
        "MSS_SIP_DOMAIN": "example.test",
        "MSS_STUN_ENABLED": "false",
        "MSS_API_ENABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    code = readme_example()
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)  # defines policy() and main(), runs nothing

    async def main() -> None:
        cfg = load_config(None, overrides={"data_dir": str(tmp_path / "mss-data")})
        storage = await open_configured_storage(cfg)
        users = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
        for n in ("1001", "1002"):
            await users.add(n, f"pw-{n}")
        await storage.close()
        task = asyncio.ensure_future(namespace["main"]())  # type: ignore[operator]
        operator = await Phone.open(port, "1001", "pw-1001")
        caller = await Phone.open(port, "1002", "pw-1002")
        try:
            for _ in range(50):  # until the example's server listens
                try:
                    await operator.register()
                    break
                except (asyncio.TimeoutError, AssertionError):
                    await asyncio.sleep(0.1)
            await caller.call("9001")
            r = await caller.response()
            assert (r.status, r.reason) == (403, "Premium numbers are barred")
            await caller.call("0")
            invite = await operator.request_in("INVITE")
            assert invite.to.uri.user == "1001" and invite.from_.uri.user == "1002"
            operator.reply(invite, 486, tag="busy")
            assert (await caller.response()).status == 486
        finally:
            operator.close()
            caller.close()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run_on("asyncio", main, timeout=30)
