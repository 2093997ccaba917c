#!/usr/bin/env python3
"""A second judge for the oauth2 kind: an OAuth 2.0 token endpoint and
protected resource built on authlib's own server classes (RFC 6749
client credentials, RFC 6750 bearer tokens), on the standard library's
http.server. Nothing here is countersign's code.

    python3 tests/py/authlib_token_server.py [--port 0] [--expires-in 3600]
        [--client-id ID] [--client-secret SECRET]
        [--auth-methods client_secret_basic,client_secret_post]
        [--scopes "read write"] [--token-path /token]

Prints `PORT <n>` as its first stdout line (flushed), then serves on
127.0.0.1 until killed.

- POST <token-path>: authlib's AuthorizationServer + ClientCredentialsGrant;
  its errors are authlib's (RFC 6749 §5.2 JSON; invalid_client may be a 401
  with a Basic challenge). `--expires-in 0` issues tokens without
  expires_in that never expire.
- any /api/... path: authlib's ResourceProtector + BearerTokenValidator over
  the tokens issued here; 200 with a JSON echo of the request (method, path,
  query, body_length, body_sha256, client_id, scope) or authlib's 401.
- GET /_stats: {"token_requests": n, "tokens_issued": n, "api_requests": n,
  "api_accepted": n}.  POST /_revoke: revokes every token.

Defaults match countersign's fake (`fake::oauth2::DEMO_*`).
"""

import argparse
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# authlib refuses plain http unless told; the judge only listens on loopback.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.oauth2.rfc6749 import (  # noqa: E402
    AuthorizationServer,
    ClientCredentialsGrant,
    ClientMixin,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    ResourceProtector,
    TokenMixin,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator  # noqa: E402

DEMO_CLIENT_ID = "countersign-demo-client"
DEMO_CLIENT_SECRET = "demo-client-secret-7c1f0e9a"


class Client(ClientMixin):
    def __init__(self, client_id, secret, methods, scopes):
        self.client_id = client_id
        self.secret = secret
        self.methods = methods
        self.scopes = scopes

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(
            client_secret.encode("utf-8"), self.secret.encode("utf-8")
        )

    def check_endpoint_auth_method(self, method, endpoint):
        return method in self.methods

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"


class Token(TokenMixin):
    def __init__(self, client_id, scope, expires_in):
        self.client_id = client_id
        self.scope = scope
        self.expires_in = expires_in
        self.issued_at = time.time()
        self.revoked = False

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return bool(self.expires_in) and time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked


class Payload(OAuth2Payload):
    """Form fields and query arguments, first value first, as Flask's
    request.values gives them to authlib."""

    def __init__(self, pairs):
        self._datalist = defaultdict(list)
        for k, v in pairs:
            self._datalist[k].append(v)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self):
        return self._data

    @property
    def datalist(self):
        return self._datalist


class Request(OAuth2Request):
    def __init__(self, method, uri, headers, form_pairs, query_pairs):
        super().__init__(method=method, uri=uri, headers=headers)
        self._form = dict(form_pairs)
        self._args = dict(query_pairs)
        self.payload = Payload(query_pairs + form_pairs)

    @property
    def form(self):
        return self._form

    @property
    def args(self):
        return self._args


class Server(AuthorizationServer):
    def __init__(self, client, expires_in, scopes):
        super().__init__(scopes_supported=scopes)
        self.client = client
        self.tokens = {}
        self.lock = threading.Lock()
        self.stats = {"token_requests": 0, "tokens_issued": 0, "api_requests": 0, "api_accepted": 0}
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=expires_in,
            ),
        )
        methods = client.methods

        class Grant(ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = methods

        self.register_grant(Grant)

    def query_client(self, client_id):
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token, request):
        with self.lock:
            self.stats["tokens_issued"] += 1
            self.tokens[token["access_token"]] = Token(
                request.client.get_client_id(), token.get("scope", ""), token.get("expires_in", 0)
            )

    def create_oauth2_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        return status, body, headers

    def send_signal(self, name, *args, **kwargs):
        pass


class Validator(BearerTokenValidator):
    def __init__(self, server, realm):
        super().__init__(realm=realm)
        self.server = server

    def authenticate_token(self, token_string):
        with self.server.lock:
            return self.server.tokens.get(token_string)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "authlib-judge"

    def log_message(self, fmt, *args):
        if os.environ.get("JUDGE_VERBOSE"):
            super().log_message(fmt, *args)

    def _answer(self, status, body, headers=()):
        data = json.dumps(body).encode() if not isinstance(body, (bytes, str)) else (
            body.encode() if isinstance(body, str) else body
        )
        self.send_response(status)
        names = set()
        for k, v in headers:
            names.add(k.lower())
            self.send_header(k, v)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        app = self.server.app
        body = self._body()
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_stats" and self.command == "GET":
            with app.lock:
                return self._answer(200, dict(app.stats))
        if url.path == "/_revoke" and self.command == "POST":
            with app.lock:
                for t in app.tokens.values():
                    t.revoked = True
                return self._answer(200, {"revoked": len(app.tokens)})
        uri = f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}"
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        if url.path == app.token_path:
            with app.lock:
                app.stats["token_requests"] += 1
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            form = []
            if ctype == "application/x-www-form-urlencoded":
                form = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            req = Request(self.command, uri, self.headers, form, query)
            status, payload, headers = app.create_token_response(req)
            return self._answer(status, payload, headers)
        if url.path.startswith("/api"):
            with app.lock:
                app.stats["api_requests"] += 1
            req = Request(self.command, uri, self.headers, [], query)
            try:
                token = app.protector.validate_request(None, req)
            except OAuth2Error as e:
                status, payload, headers = e()
                return self._answer(status, payload, headers)
            with app.lock:
                app.stats["api_accepted"] += 1
            return self._answer(200, {
                "method": self.command,
                "path": url.path,
                "query": url.query or None,
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "client_id": token.client_id,
                "scope": token.scope,
            })
        return self._answer(404, {"error": "not_found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--client-id", default=DEMO_CLIENT_ID)
    p.add_argument("--client-secret", default=DEMO_CLIENT_SECRET)
    p.add_argument("--auth-methods", default="client_secret_basic,client_secret_post")
    p.add_argument("--scopes", default="read write")
    p.add_argument("--token-path", default="/token")
    p.add_argument("--realm", default="authlib-judge")
    a = p.parse_args()
    scopes = a.scopes.split()
    client = Client(a.client_id, a.client_secret, a.auth_methods.split(","), scopes)
    app = Server(client, a.expires_in, scopes)
    app.token_path = a.token_path
    app.protector = ResourceProtector()
    app.protector.register_token_validator(Validator(app, a.realm))
    httpd = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    httpd.daemon_threads = True
    httpd.app = app
    print(f"PORT {httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
