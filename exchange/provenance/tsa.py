"""RFC 3161 time stamps of the log head: a client (rfc3161-client) and a local authority for tests and the demo.

The local authority is `openssl ts -reply` behind a small HTTP endpoint (POST application/timestamp-query,
answer application/timestamp-reply, as RFC 3161 section 3.4 puts it). Its CA and TSA certificates are made at
run time under ``EXCHANGE_HOME/tsa`` (never in git). A production hub points ``witness`` at a real TSA URL and
the auditor pins that TSA's root certificate.
"""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from exchange.errors import TransientError

TSA_DIR = "tsa"  # EXCHANGE_HOME/tsa: the local authority's CA, certificate and serial
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
_TSA_OID = "1.3.6.1.4.1.99999.1.1"  # a private-arc policy id for the local stand-in authority

_OPENSSL_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = {cn}
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[ tsa_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def stamp_request(message: bytes) -> bytes:
    """The DER time-stamp request for SHA-256(message), asking for the TSA certificate in the answer."""
    builder = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
    return builder.cert_request(cert_request=True).build().as_bytes()


def request_stamp(url: str, message: bytes, *, timeout: float = 10.0) -> bytes:
    """Ask the TSA at `url` to stamp `message`; return the DER time-stamp response (the token)."""
    try:
        answer = httpx.post(url, content=stamp_request(message), headers={"Content-Type": QUERY_TYPE},
                            timeout=timeout)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise TransientError(f"time-stamping authority {url} did not answer: {exc}") from exc
    return answer.content


def stamp_time(token: bytes) -> str:
    """The time an authority put in its token (ISO 8601)."""
    return decode_timestamp_response(token).tst_info.gen_time.isoformat()


def check_stamp(token: bytes, message: bytes, root: bytes) -> str:
    """Check the token is a granted stamp over `message` chaining to the PEM `root`; return its time
    (ISO 8601). Raises ValueError naming what is wrong."""
    try:
        response = decode_timestamp_response(token)
        verifier = VerifierBuilder().add_root_certificate(x509.load_pem_x509_certificate(root)).build()
        verifier.verify_message(response, message)
    except (VerificationError, ValueError) as exc:
        raise ValueError(f"time-stamp token does not verify: {exc}") from exc
    return response.tst_info.gen_time.isoformat()


class LocalTsa:
    """An RFC 3161 authority on 127.0.0.1 (openssl ts) with its CA under `directory`; for tests and the demo."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()  # openssl ts keeps a serial file: one reply at a time

    @property
    def root_pem(self) -> Path:
        """The CA certificate an auditor pins to check this authority's tokens."""
        return self.dir / "ca.crt"

    def ensure(self) -> None:
        """Make the CA and the TSA certificate once (openssl req/x509)."""
        if (self.dir / "tsa.crt").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        cnf = self.dir / "openssl.cnf"
        # dir = . : openssl always runs in this folder, so a copied or restored home stamps with its own key
        # and serial, never with (and never advancing) those of the folder it was copied from.
        cnf.write_text(_OPENSSL_CNF.format(cn="exchange local TSA", dir=".", policy=_TSA_OID))
        (self.dir / "serial").write_text("01\n")
        run = _openssl
        run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=exchange local TSA root",
            "-config", "openssl.cnf", "-extensions", "ca_ext", cwd=self.dir)
        run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tsa.key",
            "-out", "tsa.csr", "-subj", "/CN=exchange local TSA", "-config", "openssl.cnf", cwd=self.dir)
        run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tsa.crt", "-days", "3650", "-extfile", "openssl.cnf", "-extensions", "tsa_ext", cwd=self.dir)

    def reply(self, query: bytes) -> bytes:
        """Answer one DER time-stamp query (openssl ts -reply)."""
        with self._lock:
            return _openssl("ts", "-reply", "-config", "openssl.cnf", "-queryfile", "/dev/stdin",
                            "-section", "tsa_config", cwd=self.dir, stdin=query)

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); return the URL to POST time-stamp queries to."""
        self.ensure()
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
                query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body, status = tsa.reply(query), 200
                except RuntimeError:
                    body, status = b"", 400
                self.send_response(status)
                self.send_header("Content-Type", REPLY_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet in tests
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
