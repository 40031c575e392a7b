"""Data for the protocol-layer tests: the real vLLM transcripts and the request
examples of the five vendor pages, both read from tests/fixtures only.

Nothing here needs Django: these tests also run with
`pytest tests/upstream --confcutdir=tests/upstream -p no:django`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import shlex
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import uvicorn

from tests.servers import free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRANSCRIPTS = FIXTURES / "vllm-transcripts"
PAGES = FIXTURES / "api-docs"
PAGE_FAMILY = {"qwen": "qwen", "llama": "llama", "mistral": "mistral", "gemma4": "gemma", "generic": "generic"}

# Streamed and non-streamed runs of the same generation (same request but for
# stream/stream_options; 06b adds json_schema.strict, which changes nothing).
STREAM_PAIRS = {
    "03b_stream_reasoning": "02a_reasoning_enable_thinking_true",
    "04b_tools_auto_stream": "04a_tools_auto",
    "04d_tools_required_stream": "04c_tools_required",
    "04h_tools_auto_two_calls_stream": "04g_tools_auto_two_calls",
    "04j_tools_parallel_false_stream": "04i_tools_parallel_false",
    "04l_tools_auto_thinking_stream": "04m_tools_auto_thinking",
    "06g_json_schema_stream": "06b_response_format_json_schema",
    "07g_logprobs_stream": "07f_logprobs",
}


@dataclass(frozen=True)
class Transcript:
    """One recorded exchange with a real vLLM 0.32 server."""

    name: str
    note: str | None
    method: str
    path: str
    request: object  # the decoded JSON body, or the raw text when it is not JSON (08c)
    status: int
    headers: dict[str, str]
    body: bytes  # exactly as received

    @property
    def is_stream(self) -> bool:
        return "text/event-stream" in self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body)


def _parse_transcript(path: Path) -> Transcript:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"### BODY (raw, exactly as received)\n")
    text = head.decode()
    name = re.search(r"^### CASE (\S+)", text, re.M).group(1)
    note = re.search(r"^### NOTE (.*)$", text, re.M)
    method, req_path, request_text = re.search(
        r"^### REQUEST (\w+) (\S+)\n(.*?)^### RESPONSE", text, re.M | re.S
    ).groups()
    status_line, _, header_text = text.partition("### RESPONSE HTTP ")[2].partition("\n")
    headers = dict(line.split(": ", 1) for line in header_text.strip().splitlines())
    if "content-length" in headers:  # the recorder added a newline after JSON bodies
        body = body[: int(headers["content-length"])]
    try:
        request = json.loads(request_text) if request_text.strip() else None
    except ValueError:
        request = request_text
    return Transcript(
        name=name,
        note=note.group(1) if note else None,
        method=method,
        path=req_path,
        request=request,
        status=int(status_line.split()[0]),
        headers=headers,
        body=body,
    )


@cache
def transcripts() -> dict[str, Transcript]:
    found = {}
    for path in sorted(TRANSCRIPTS.glob("*.txt")):
        transcript = _parse_transcript(path)
        found[transcript.name] = transcript
    return found


def stream_transcripts() -> list[Transcript]:
    return [t for t in transcripts().values() if t.is_stream]


@dataclass(frozen=True)
class PageExample:
    """One cURL request example of a vendor page, decoded independently of
    chat.upstream.export (so the importer is tested against something else)."""

    page: str
    number: int
    curl: str
    url: str
    body: dict

    @property
    def id(self) -> str:
        return f"{self.page}-{self.number}"

    @property
    def family(self) -> str:
        return PAGE_FAMILY[self.page]


@cache
def page_texts() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(PAGES.glob("*.txt"))}


@cache
def page_examples() -> list[PageExample]:
    examples = []
    for page, text in page_texts().items():
        for number, curl in enumerate(re.findall(r"(curl .*?\n\s*\}')", text, re.S), 1):
            words = shlex.split(curl.replace("\\\n", " "))
            body = json.loads(words[words.index("-d") + 1])
            url = next(w for w in words if "chat/completions" in w)
            examples.append(PageExample(page, number, curl, url, body))
    return examples


@cache
def page_attribute_names() -> dict[str, set[str]]:
    """Every name in the pages' "Name / Type / Description" attribute lists,
    and every top-level key of their request examples, by page."""
    names: dict[str, set[str]] = {}
    for page, text in page_texts().items():
        names[page] = set(re.findall(r"Name\s*\n\s*([A-Za-z_]+)", text))
    for example in page_examples():
        names[example.page] |= set(example.body)
    return names


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@contextlib.contextmanager
def serve_tls(app, directory: Path):
    """Like tests.servers.serve_asgi, over HTTPS with a throw-away CA.

    Yields (base_url, ca_pem_text, ca_pem_path)."""
    ca_pem, cert_path, key_path = _make_certificates(directory)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ssl_certfile=str(cert_path), ssl_keyfile=str(key_path), timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "TLS test server did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}", ca_pem, str(directory / "ca.pem")
    finally:
        server.should_exit = True
        thread.join(timeout=5)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


def _make_certificates(directory: Path) -> tuple[str, Path, Path]:
    """A CA and a certificate for 127.0.0.1 that it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hexgrid test CA")])

    def base(subject, public_key):
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )

    ca = (
        base(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        base(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    (directory / "ca.pem").write_text(ca_pem)
    (directory / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, directory / "cert.pem", directory / "key.pem"
