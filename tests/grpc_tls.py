"""What the wire-tier fakes (tests/vertex_api.py, tests/monitoring_api.py) share: a TLS gRPC server on
127.0.0.1 answering with the services' own messages, and a client side that trusts it.

Google's gapic transports always open grpc.secure_channel (google.api_core.grpc_helpers.create_channel),
so the fakes serve TLS with a certificate made here for localhost/127.0.0.1, and the clients are told
to trust it through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC's own setting: it also reaches
subprocesses) and grpc.ssl_channel_credentials' default roots. Nothing else on the client is replaced.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import ipaddress
import shutil
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
from google.protobuf import unknown_fields


class Refused(Exception):
    """Raised by a fake's handler: answered as the gRPC status a real service returns."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def self_signed(directory: Path) -> tuple[bytes, bytes, Path]:
    """A certificate and key for localhost and 127.0.0.1; the certificate also written to a file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = Path(directory) / "localhost.pem"
    path.write_bytes(cert_pem)
    return cert_pem, key_pem, path


@functools.lru_cache(maxsize=1)
def session_certificate() -> tuple[bytes, bytes, Path]:
    """The one certificate of this process's fakes. gRPC reads its default roots
    ($GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) once, at the first secure channel of the process, whichever
    test opens it: tests/conftest.py points that variable here before any test runs."""
    directory = tempfile.mkdtemp(prefix="kfkit-wire-tls-")
    atexit.register(shutil.rmtree, directory, True)
    return self_signed(Path(directory))


def rpcs(transport_class) -> dict[str, tuple[str, Any, Any]]:
    """{method: (path, request class, response class)} of a gapic gRPC transport, read from the
    transport itself so the fake answers exactly the methods and messages the real client sends."""
    calls = []

    class Recorder:
        def unary_unary(self, path, request_serializer=None, response_deserializer=None, **_):
            calls.append((path, request_serializer, response_deserializer))
            return None

    transport = transport_class.__new__(transport_class)
    transport._logged_channel = Recorder()
    transport._stubs = {}
    transport._prep_wrapped_messages = lambda *_: None
    for name, value in vars(transport_class).items():
        if isinstance(value, property) and not name.startswith("_") and name not in ("operations_client",
                                                                                    "grpc_channel", "kind"):
            try:
                getattr(transport, name)
            except Exception:  # noqa: BLE001 - mixins needing a real channel are not served
                pass
    found = {}
    for path, serializer, deserializer in calls:
        request = getattr(serializer, "__self__", None)
        if request is None:
            continue
        found[path.rsplit("/", 1)[1]] = (path, request, getattr(deserializer, "__self__", deserializer))
    return found


def _unknown(message) -> list[str]:
    """Fields the message's own descriptor does not know, anywhere in it (a misspelled or newer field)."""
    found = [f"{message.DESCRIPTOR.full_name}#{f.field_number}" for f in unknown_fields.UnknownFieldSet(message)]
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values() if field.message_type.fields_by_name["value"].type == field.TYPE_MESSAGE else []
        elif field.is_repeated:
            values = value
        else:
            values = [value]
        for item in values:
            found += _unknown(item)
    return found


def decode(request_class, data: bytes):
    """The request as the service's own message (proto-plus); unknown fields are refused."""
    raw = request_class.pb().FromString(data) if hasattr(request_class, "pb") else request_class.FromString(data)
    unknown = _unknown(raw)
    if unknown:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"unknown field(s) {unknown}")
    return request_class.wrap(raw) if hasattr(request_class, "wrap") else raw


def _encode(message) -> bytes:
    return type(message).serialize(message) if hasattr(type(message), "serialize") else message.SerializeToString()


def service_handler(service: str, methods: dict[str, tuple[Any, Callable]]) -> grpc.GenericRpcHandler:
    """methods: {name: (request class, handler(request) -> response)}; every call is recorded."""

    def wrap(request_class, handler):
        def call(data: bytes, context: grpc.ServicerContext):
            try:
                return _encode(handler(decode(request_class, data)))
            except Refused as refused:
                context.abort(refused.code, str(refused))

        return grpc.unary_unary_rpc_method_handler(call)

    return grpc.method_handlers_generic_handler(service, {name: wrap(*spec) for name, spec in methods.items()})


class TlsServer:
    def __init__(self, handlers: list[grpc.GenericRpcHandler], cert_pem: bytes, key_pem: bytes):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
        self.server.start()

    @property
    def endpoint(self) -> str:
        # the name the certificate carries, as a client's api_endpoint
        return f"localhost:{self.port}"

    def stop(self) -> None:
        self.server.stop(None)


def trust(monkeypatch, cert_pem: bytes, cert_path: Path) -> None:
    """Make this process's gRPC clients (and its subprocesses') trust the fakes' certificate."""
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(cert_path))
    real = grpc.ssl_channel_credentials

    def with_roots(root_certificates=None, private_key=None, certificate_chain=None):
        return real(root_certificates or cert_pem, private_key, certificate_chain)

    monkeypatch.setattr(grpc, "ssl_channel_credentials", with_roots)


def anonymous_credentials(monkeypatch, project: str) -> None:
    """Application default credentials, as in a step: anonymous (the fakes check no token)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), project))
