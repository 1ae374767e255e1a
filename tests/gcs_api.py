"""A protocol-level fake of the Cloud Storage JSON API (v1), for the real `google-cloud-storage` client
over its real transport (requests), pointed here by STORAGE_EMULATOR_HOST with anonymous credentials.

The subset kfkit reaches: buckets.get and buckets.insert (the Vertex SDK's staging bucket),
objects.list with prefix, delimiter and pageToken, objects.get (metadata and alt=media), and
objects.insert as simple (media), multipart and resumable uploads. It refuses what Cloud Storage
refuses, citing the page each rule comes from: invalid bucket and object names, page tokens it did
not issue or that are replayed with another prefix, checksums that do not match the bytes, and 404
with the API's error body for a missing bucket or object.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c

from tests.http_fake import LocalHttpService

PROJECT_NUMBER = "123456789012"
# https://cloud.google.com/storage/docs/json_api/v1/objects#resource: what a writer may set
WRITABLE = {"metadata", "cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "customTime"}

# https://cloud.google.com/storage/docs/buckets#naming: 3-63 characters (up to 222 with dots, each
# dot-separated component at most 63), lowercase letters, digits, dashes, underscores and dots,
# starting and ending with a letter or digit; not an IP address; no "goog" prefix.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")


def bucket_name_problem(name: str) -> str | None:
    if not BUCKET_NAME.match(name):
        return "must hold only lowercase letters, digits, '-', '_' and '.', and start and end with a letter or digit"
    if len(name) < 3 or len(name) > (222 if "." in name else 63):
        return "must be 3-63 characters long (222 with dots)"
    if any(len(part) > 63 for part in name.split(".")):
        return "each dot-separated component must be at most 63 characters"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "cannot be an IP address"
    if name.startswith("goog") or "google" in name:
        return "cannot begin with 'goog' or contain 'google'"
    return None


def object_name_problem(name: str) -> str | None:
    """https://cloud.google.com/storage/docs/objects#naming: 1-1024 bytes of UTF-8, no carriage return
    or line feed, not "." or "..", not under .well-known/acme-challenge/."""
    encoded = name.encode("utf-8")
    if not 1 <= len(encoded) <= 1024:
        return "must be 1-1024 bytes long in UTF-8"
    if "\r" in name or "\n" in name:
        return "cannot contain carriage return or line feed characters"
    if name in (".", ".."):
        return "cannot be '.' or '..'"
    if name.startswith(".well-known/acme-challenge/"):
        return "cannot start with '.well-known/acme-challenge/'"
    return None


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass
class GcsApi(LocalHttpService):
    page_size: int = 1000   # objects.list's default (and largest) maxResults
    buckets: dict[str, dict] = field(default_factory=dict)            # name -> bucket resource
    objects: dict[str, dict[str, tuple[dict, bytes]]] = field(default_factory=dict)  # bucket -> name -> (resource, data)
    requests: list[tuple[str, str]] = field(default_factory=list)     # (method, path with query)
    _uploads: dict[str, dict] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)  # token -> (bucket, prefix, delimiter, after)

    def __post_init__(self):
        self._serve(('GET', 'POST', 'PUT'), keep_alive=True)
        self._lock = threading.Lock()

    # --- what tests arrange and read ---------------------------------------------------------------
    def create_bucket(self, name: str, project: str = "test-project", location: str = "US",
                      project_number: str = PROJECT_NUMBER) -> dict:
        problem = bucket_name_problem(name)
        if problem:
            raise ApiError(400, "invalid", f"Invalid bucket name: '{name}': {problem}")
        if name in self.buckets:
            raise ApiError(409, "conflict", "Your previous request to create the named bucket succeeded and you already own it.")
        self.buckets[name] = {"kind": "storage#bucket", "id": name, "name": name, "projectNumber": project_number,
                              "location": location.upper(), "storageClass": "STANDARD", "metageneration": "1",
                              "selfLink": f"{self.url}/storage/v1/b/{name}", "timeCreated": "2026-01-01T00:00:00.000Z",
                              "updated": "2026-01-01T00:00:00.000Z", "etag": "CAE="}
        self.objects[name] = {}
        return self.buckets[name]

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> dict:
        problem = object_name_problem(name)
        if problem:
            raise ApiError(400, "invalid", f"The object name '{name}' is invalid: {problem}")
        if bucket not in self.buckets:
            raise ApiError(404, "notFound", "The specified bucket does not exist.")
        generation = str(len(self.requests) + 1_700_000_000_000_000 + len(self.objects[bucket]))
        path = f"b/{bucket}/o/{quote(name, safe='')}"
        resource = {"kind": "storage#object", "id": f"{bucket}/{name}/{generation}", "name": name, "bucket": bucket,
                    "generation": generation, "metageneration": "1", "contentType": content_type,
                    "size": str(len(data)), "md5Hash": _md5(data), "crc32c": _crc32c(data),
                    "storageClass": "STANDARD", "etag": "CAE=", "selfLink": f"{self.url}/storage/v1/{path}",
                    "mediaLink": f"{self.url}/download/storage/v1/{path}?generation={generation}&alt=media",
                    "timeCreated": "2026-01-01T00:00:00.000Z", "updated": "2026-01-01T00:00:00.000Z"}
        self.objects[bucket][name] = (resource, data)
        return resource

    def data(self, bucket: str, name: str) -> bytes:
        return self.objects[bucket][name][1]

    def names(self, bucket: str) -> list[str]:
        return sorted(self.objects.get(bucket, {}))

    # --- the API ---------------------------------------------------------------------------------
    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, handler.path))
        headers: dict[str, str] = {}
        try:
            # the object name is one path segment, percent-encoded ("/" as %2F), so split before unquoting
            segments = [unquote(s) for s in parts.path.split("/")[1:]]
            status, payload, headers = self._route(method, segments, query, body, handler.headers)
        except ApiError as exc:
            status = exc.status
            payload = {"error": {"code": exc.status, "message": exc.message,
                                 "errors": [{"domain": "global", "reason": exc.reason, "message": exc.message}]}}
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if not isinstance(payload, bytes):
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def _route(self, method, segments, query, body, headers):
        with self._lock:
            match segments:
                case ["storage", "v1", "b"] if method == "POST":
                    # https://cloud.google.com/storage/docs/json_api/v1/buckets/insert: project is required
                    if not query.get("project"):
                        raise ApiError(400, "required", "Required parameter: project")
                    resource = json.loads(body)
                    return 200, self.create_bucket(resource["name"], query["project"], resource.get("location", "US")), {}
                case ["storage", "v1", "b", bucket] if method == "GET":
                    return 200, self._bucket(bucket), {}
                case ["storage", "v1", "b", bucket, "o"] if method == "GET":
                    return 200, self._list(bucket, query), {}
                case ["storage", "v1", "b", bucket, "o", name] | ["download", "storage", "v1", "b", bucket, "o", name] \
                        if method == "GET":
                    resource, data = self._object(bucket, name, query)
                    if query.get("alt") == "media":
                        # the hashes a download is checked against (https://cloud.google.com/storage/docs/hashes-etags)
                        return 200, data, {"Content-Type": resource["contentType"],
                                           "x-goog-hash": f"crc32c={resource['crc32c']},md5={resource['md5Hash']}",
                                           "x-goog-generation": resource["generation"],
                                           "x-goog-stored-content-length": resource["size"]}
                    return 200, resource, {}
                case ["upload", "storage", "v1", "b", bucket, "o"] if method in ("POST", "PUT"):
                    return self._upload(method, bucket, query, body, headers)
        raise ApiError(404, "notFound", f"Not Found: {method} {'/'.join(segments)}")

    def _bucket(self, bucket: str) -> dict:
        if bucket not in self.buckets:
            raise ApiError(404, "notFound", "The specified bucket does not exist.")
        return self.buckets[bucket]

    def _object(self, bucket: str, name: str, query: dict) -> tuple[dict, bytes]:
        self._bucket(bucket)
        found = self.objects[bucket].get(name)
        # https://cloud.google.com/storage/docs/json_api/v1/objects/get: 404 for a missing object
        if found is None or ("generation" in query and query["generation"] != found[0]["generation"]):
            raise ApiError(404, "notFound", f"No such object: {bucket}/{name}")
        return found

    def _list(self, bucket: str, query: dict) -> dict:
        """https://cloud.google.com/storage/docs/json_api/v1/objects/list: names in lexicographic order,
        at most maxResults items (and prefixes) per page, nextPageToken while more remain."""
        self._bucket(bucket)
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        after = ""
        if query.get("pageToken"):  # an empty one is no token
            issued = self._tokens.get(query["pageToken"])
            # a page token continues the listing it came from: the same bucket, prefix and delimiter
            if issued is None or issued[:3] != (bucket, prefix, delimiter):
                raise ApiError(400, "invalid", "Invalid page token or it does not match the listing's parameters")
            after = issued[3]
        page_size = min(int(query.get("maxResults") or self.page_size), self.page_size)
        items, prefixes = [], []
        names = sorted(n for n in self.objects[bucket] if n.startswith(prefix) and n > after)
        last = ""
        for name in names:
            rest = name[len(prefix):]
            common = prefix + rest[:rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else None
            if common is not None and common in prefixes:
                last = name  # the rest of a prefix already listed: no entry of its own
                continue
            if len(items) + len(prefixes) == page_size:
                break
            if common is not None:
                prefixes.append(common)
            else:
                items.append(self.objects[bucket][name][0])
            last = name
        out: dict = {"kind": "storage#objects", "items": items}
        if prefixes:
            out["prefixes"] = prefixes
        if any(n > last for n in names) and last:
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._tokens[token] = (bucket, prefix, delimiter, last)
            out["nextPageToken"] = token
        return out

    def _insert(self, bucket: str, metadata: dict, data: bytes, content_type: str, query: dict) -> dict:
        self._bucket(bucket)
        # https://cloud.google.com/storage/docs/json_api/v1/objects/insert: the name in the metadata or
        # the name query parameter
        name = metadata.get("name") or query.get("name")
        if not name:
            raise ApiError(400, "required", "Required: object name")
        # ifGenerationMatch: the write happens only if the live generation matches (0: no live object)
        if "ifGenerationMatch" in query:
            live = self.objects[bucket].get(name)
            if query["ifGenerationMatch"] != (live[0]["generation"] if live else "0"):
                raise ApiError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
        # https://cloud.google.com/storage/docs/json_api/v1/objects/insert: crc32c and md5Hash given in
        # the metadata are checked against the bytes received
        if "crc32c" in metadata and metadata["crc32c"] != _crc32c(data):
            raise ApiError(400, "invalid", "Provided CRC32C \"%s\" doesn't match calculated CRC32C" % metadata["crc32c"])
        if "md5Hash" in metadata and metadata["md5Hash"] != _md5(data):
            raise ApiError(400, "invalid", "Provided MD5 hash doesn't match calculated MD5 hash")
        resource = self.put(bucket, name, data, metadata.get("contentType") or content_type or "application/octet-stream")
        # the writable metadata is kept as given (custom metadata: arrow's GcsFileSystem marks directories so)
        resource.update({k: v for k, v in metadata.items() if k in WRITABLE})
        return resource

    def _upload(self, method, bucket, query, body, headers):
        """https://cloud.google.com/storage/docs/uploads-downloads: media, multipart and resumable."""
        kind = query.get("uploadType")
        if kind == "media" and method == "POST":
            return 200, self._insert(bucket, {}, body, headers.get("Content-Type"), query), {}
        if kind == "multipart" and method == "POST":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            parts = list(message.iter_parts())
            # https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object: exactly two
            # parts, the JSON metadata first and the data second
            if len(parts) != 2 or parts[0].get_content_type() != "application/json":
                raise ApiError(400, "invalid", "multipart upload needs a JSON metadata part and a media part")
            metadata = json.loads(parts[0].get_payload(decode=True))
            data = parts[1].get_payload(decode=True)
            return 200, self._insert(bucket, metadata, data, parts[1].get_content_type(), query), {}
        if kind == "resumable" and method == "POST":
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = {"metadata": json.loads(body or b"{}"), "data": b"", "query": query,
                                        "content_type": headers.get("X-Upload-Content-Type")}
            location = f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
            return 200, b"", {"Location": location}
        if kind == "resumable" and method == "PUT":
            upload = self._uploads.get(query.get("upload_id", ""))
            if upload is None:
                raise ApiError(404, "notFound", "No such upload session")
            # https://cloud.google.com/storage/docs/performing-resumable-uploads: chunks in order,
            # Content-Range "bytes first-last/total" or "bytes first-last/*"; 308 until the last
            found = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", headers.get("Content-Range", ""))
            if not found:
                raise ApiError(400, "invalid", "Content-Range is required on a resumable upload chunk")
            first, last, total = found.groups()
            if first is not None:
                if int(first) != len(upload["data"]) or int(last) - int(first) + 1 != len(body):
                    raise ApiError(400, "invalid", "chunk does not continue the upload")
                upload["data"] += body
            if total == "*" or int(total) > len(upload["data"]):
                persisted = {"Range": f"bytes=0-{len(upload['data']) - 1}"} if upload["data"] else {}
                return 308, b"", persisted
            del self._uploads[query["upload_id"]]
            return 200, self._insert(bucket, upload["metadata"], upload["data"], upload["content_type"], upload["query"]), {}
        raise ApiError(400, "invalid", f"unsupported upload: {method} uploadType={kind}")
