"""Hostile stand-ins for the canary-secret test: servers that echo back
everything a client sends them (headers, query, path, body, credentials)
inside their error answers, so any secret an adapter sends ends up in an
error message unless the gateway masks it.

- `EchoHttp`: every path; answers cycle through 401, 400, 429, 500, 200
  with a body that is not JSON, 403, 422, 504, 404.
- `EchoSmtp`: plain SMTP; AUTH (PLAIN, LOGIN, XOAUTH2) is refused with the
  decoded credentials in the 535 text.
- `EchoImap`: IMAP over implicit TLS (a throwaway CA from trustme); LOGIN and
  AUTHENTICATE are refused with the command, decoded, in the NO text.

Each runs its own event loop in a daemon thread on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
import threading
from typing import Any

from aiohttp import web

STATUSES = (401, 400, 429, 500, 200, 403, 422, 504, 404)


def _decode(b64: str) -> str:
    try:
        return base64.b64decode(b64.strip(), validate=False).decode("utf-8", "replace").replace("\x00", "|").replace("\x01", "|")
    except (binascii.Error, ValueError):
        return b64


class _Threaded:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.received = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "_Threaded":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        pass

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


class EchoHttp(_Threaded):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = STATUSES[self.received % len(STATUSES)]
        self.received += 1
        echo = (f"{request.method} {request.path_qs} headers={dict(request.headers)} "
                f"body={body.decode('utf-8', 'replace')}")
        if status == 200:
            return web.Response(status=200, text=f"not json: {echo}")
        payload = {"message": f"rejected {echo}", "detail": echo[-400:],
                   "error": {"message": f"you sent {dict(request.headers)}"}, "errors": [{"title": request.path_qs}]}
        headers = {"Retry-After": "1"} if status in (429, 500, 504) else {}
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json", headers=headers)

    async def _start(self) -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self._runner.cleanup()


class _LineServer(_Threaded):
    ssl_context: ssl.SSLContext | None = None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.received += 1
        try:
            await self.converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class EchoSmtp(_LineServer):
    async def converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        async def line() -> str:
            raw = await reader.readline()
            if not raw:
                raise ConnectionError("closed")
            return raw.decode("utf-8", "replace").rstrip("\r\n")

        await say("220 hostile.invalid ESMTP")
        while True:
            cmd = await line()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                await say("250-hostile.invalid\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 8BITMIME")
            elif verb == "AUTH":
                parts = cmd.split()
                mech = parts[1].upper() if len(parts) > 1 else ""
                if mech == "LOGIN":
                    await say("334 VXNlcm5hbWU6")
                    user = _decode(await line())
                    await say("334 UGFzc3dvcmQ6")
                    secret = _decode(await line())
                    await say(f"535 5.7.8 rejected user={user} password={secret}")
                else:
                    blob = parts[2] if len(parts) > 2 else ""
                    if not blob:
                        await say("334 ")
                        blob = await line()
                    await say(f"535 5.7.8 rejected {mech} credentials: {_decode(blob)}")
            elif verb == "QUIT":
                await say("221 bye")
                return
            else:
                await say(f"530 5.7.0 authenticate first, you said: {cmd}")


class EchoImap(_LineServer):
    def __init__(self) -> None:
        super().__init__()
        import trustme

        self._ca = trustme.CA()
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ssl_context)
        import tempfile

        self.ca_file = tempfile.NamedTemporaryFile(prefix="hostile-ca-", suffix=".pem", delete=False).name
        self._ca.cert_pem.write_to_path(self.ca_file)

    async def converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        await say("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2] hostile ready")
        while True:
            raw = await reader.readline()
            if not raw:
                return
            cmd = raw.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = cmd.partition(" ")
            verb = rest.split(" ", 1)[0].upper()
            if verb == "CAPABILITY":
                await say("* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2")
                await say(f"{tag} OK CAPABILITY completed")
            elif verb == "LOGIN":
                await say(f"{tag} NO [AUTHENTICATIONFAILED] rejected: {rest}")
            elif verb == "AUTHENTICATE":
                words = rest.split()
                blob = words[2] if len(words) > 2 else ""
                if not blob:
                    await say("+ ")
                    blob = (await reader.readline()).decode("utf-8", "replace").strip()
                await say(f"{tag} NO [AUTHENTICATIONFAILED] rejected: {_decode(blob)}")
            elif verb == "LOGOUT":
                await say("* BYE hostile")
                await say(f"{tag} OK LOGOUT completed")
                return
            else:
                await say(f"{tag} BAD you said: {cmd}")


def start_all() -> dict[str, Any]:
    return {"http": EchoHttp().start(), "smtp": EchoSmtp().start(), "imap": EchoImap().start()}


def stop_all(servers: dict[str, Any]) -> None:
    for server in servers.values():
        server.stop()
