"""Tests that need a tool of the machine (openssl with SM2, tmpfs mounts, chattr) decide up front, by probing
the tool alone, whether it can do what they need. A probe never involves the code under test, so a skip says
"this machine cannot run the check", never "the check failed". Under CI (CI set) a missing capability fails:
CI must provide what the suite needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest

SM2_USER_ID = "1234567812345678"  # GB/T 35276's default distinguishing identifier, as openssl's distid


def unavailable(message: str) -> None:
    """Skip with `message` on a developer machine; fail under CI, which must have the capability."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} - CI must provide it")
    pytest.skip(message)


def sm2_args(message: Path) -> list[str]:
    """openssl pkeyutl arguments for an SM2-SM3 signature over the raw bytes of `message`."""
    return ["-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{SM2_USER_ID}", "-in", str(message)]


@cache
def _openssl_sm2_problem() -> str | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return "no openssl binary"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "msg").write_bytes(b"probe")
        steps = [
            ["genpkey", "-algorithm", "SM2", "-out", str(d / "key.pem")],
            ["pkey", "-in", str(d / "key.pem"), "-pubout", "-out", str(d / "pub.pem")],
            ["pkeyutl", "-sign", "-inkey", str(d / "key.pem"), "-out", str(d / "sig"), *sm2_args(d / "msg")],
            ["pkeyutl", "-verify", "-pubin", "-inkey", str(d / "pub.pem"), "-sigfile", str(d / "sig"),
             *sm2_args(d / "msg")],
        ]
        for step in steps:
            done = subprocess.run([openssl, *step], capture_output=True, text=True, timeout=60)
            if done.returncode:
                return f"this openssl has no SM2 (openssl {step[0]}: {done.stderr.strip()[:300]})"
        if "Signature Verified Successfully" not in done.stdout:
            return f"this openssl does not verify its own SM2 signature: {done.stdout.strip()[:300]}"
    return None


def openssl_with_sm2() -> str:
    """The openssl binary, once it has generated, signed and verified an SM2-SM3 signature of its own."""
    problem = _openssl_sm2_problem()
    if problem is not None:
        unavailable(problem)
    path = shutil.which("openssl")
    assert path is not None
    return path
