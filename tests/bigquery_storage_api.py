"""A protocol-level fake of the BigQuery Storage Read API (gRPC, google.cloud.bigquery.storage.v1.BigQueryRead),
for the real `google-cloud-bigquery-storage` client over a real gRPC channel (kfkit:
KFKIT_BIGQUERY_STORAGE_API_ENDPOINT=http://127.0.0.1:PORT, a plaintext channel).

Tables are those of the REST fake (tests/bigquery_api.py): a query's destination, or the anonymous
table of its result. Requests are the API's own protobuf messages; the fake checks them against
https://cloud.google.com/bigquery/docs/reference/storage/rpc/google.cloud.bigquery.storage.v1:
parent is projects/{project}, the table exists (NOT_FOUND otherwise), ARROW is the format asked for,
a stream is one the fake issued, read from its offset. Rows go back as Arrow IPC record batches after
the session's Arrow schema, LZ4_FRAME-compressed when the session asks for it.
"""

from __future__ import annotations

import uuid
from concurrent import futures

import grpc
import pyarrow as pa
from google.cloud.bigquery_storage_v1 import types

from tests.bigquery_api import ApiError, BigQueryApi

SERVICE = "google.cloud.bigquery.storage.v1.BigQueryRead"


def arrow_schema(schema: pa.Schema) -> types.ArrowSchema:
    return types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes())


def read_rows_responses(table: pa.Table, batch_rows: int, compressed: bool = False):
    """ReadRowsResponse messages carrying `table`: Arrow IPC record batches (the schema goes in the
    first response only, as the API sends it), LZ4_FRAME-compressed buffers when asked."""
    options = pa.ipc.IpcWriteOptions(compression="lz4" if compressed else None)
    first = {"arrow_schema": arrow_schema(table.schema)}
    for batch in table.to_batches(max_chunksize=batch_rows):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_batch(batch)
        record_batch = next(m for m in pa.ipc.MessageReader.open_stream(sink.getvalue()) if m.type == "record batch")
        yield types.ReadRowsResponse(
            arrow_record_batch=types.ArrowRecordBatch(serialized_record_batch=record_batch.serialize().to_pybytes(),
                                                      row_count=batch.num_rows),
            row_count=batch.num_rows, **first)
        first = {}


class BigQueryStorageApi:
    def __init__(self, rest: BigQueryApi, batch_rows: int = 100, streams: int = 2):
        self.rest = rest
        self.batch_rows = batch_rows
        self.streams = streams
        self.sessions: list[types.CreateReadSessionRequest] = []
        self.reads: list[types.ReadRowsRequest] = []
        self._streams: dict[str, tuple[pa.Table, bool]] = {}  # stream name -> (its rows, LZ4 compressed)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                self._create_read_session, request_deserializer=types.CreateReadSessionRequest.deserialize,
                response_serializer=types.ReadSession.serialize),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                self._read_rows, request_deserializer=types.ReadRowsRequest.deserialize,
                response_serializer=types.ReadRowsResponse.serialize),
        })])
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None).wait()
        self._streams.clear()

    def _create_read_session(self, request: types.CreateReadSessionRequest, context) -> types.ReadSession:
        self.sessions.append(request)
        session = request.read_session
        table_path = session.table.split("/")
        if len(table_path) != 6 or table_path[0::2] != ["projects", "datasets", "tables"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid table name {session.table!r}")
        project, dataset, table = table_path[1::2]
        if request.parent != f"projects/{project}" and not request.parent.startswith("projects/"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid parent {request.parent!r}")
        if session.data_format != types.DataFormat.ARROW:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the fake serves ARROW sessions only")
        try:
            with self.rest._lock:
                data = self.rest._read(project, dataset, table)
        except ApiError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, exc.message)
        selected = list(session.read_options.selected_fields)
        if selected:
            data = data.select(selected)
        if session.read_options.row_restriction:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake does not filter rows")
        compressed = (session.read_options.arrow_serialization_options.buffer_compression
                      == types.ArrowSerializationOptions.CompressionCodec.LZ4_FRAME)
        name = f"projects/{project}/locations/us/sessions/{uuid.uuid4().hex}"
        count = max(1, min(self.streams, request.max_stream_count or self.streams))
        # the rows dealt to the streams in contiguous slices; an empty table gets no stream
        size = -(-data.num_rows // count) if data.num_rows else 0
        streams = []
        for index in range(count if data.num_rows else 0):
            stream = f"{name}/streams/{index}"
            self._streams[stream] = (data.slice(index * size, size), compressed)
            streams.append(types.ReadStream(name=stream))
        return types.ReadSession(name=name, table=session.table, data_format=types.DataFormat.ARROW,
                                 arrow_schema=arrow_schema(data.schema),
                                 streams=streams, estimated_row_count=data.num_rows)

    def _read_rows(self, request: types.ReadRowsRequest, context):
        self.reads.append(request)
        if request.read_stream not in self._streams:
            context.abort(grpc.StatusCode.NOT_FOUND, f"stream {request.read_stream!r} not found")
        data, compressed = self._streams[request.read_stream]
        yield from read_rows_responses(data.slice(request.offset), self.batch_rows, compressed)
