"""The HTTP exchange alone: uvicorn with httptools and uvloop (kfkit serve's stack), reading each
request's body whole and answering with kfkit serve's own answer for a body of that length,
without looking at it. No parsing, no model: what one request costs the load generator, the
kernel's loopback and the stack, which no Python server on this machine can go below.
    python exchange_server.py PORT ANSWERS_JSON   ({"<request body length>": "<answer text>"})"""

import json
import sys

import uvicorn


def make_app(answers: dict[int, bytes]):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = answers.get(size, b"{}")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    answers = {int(k): v.encode() for k, v in json.loads(open(path).read()).items()}
    uvicorn.run(make_app(answers), host="127.0.0.1", port=port, http="httptools", loop="uvloop", lifespan="off",
                access_log=False, log_level="warning", server_header=False, date_header=False)
