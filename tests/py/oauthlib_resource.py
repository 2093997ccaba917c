#!/usr/bin/env python3
"""A second judge for the oauth1 kind: an OAuth 1.0a protected resource
verified by oauthlib's own ResourceEndpoint (RFC 5849), on the standard
library's http.server. Nothing here is countersign's code.

    python3 tests/py/oauthlib_resource.py [--port 0]
        [--consumer-key K] [--consumer-secret S] [--token T] [--token-secret TS]
        [--scheme http] [--methods HMAC-SHA1,HMAC-SHA256,PLAINTEXT]

Prints `PORT <n>` as its first stdout line (flushed), then serves on
127.0.0.1 until killed. Every path is a resource (GET /_stats excepted):

- 200 JSON {method, path, query, body_length, body_sha256, consumer_key,
  token, signature_method} when oauthlib accepts the signature;
- 401 JSON {"error": ..., "reason": ...} otherwise, the reason taken from
  oauthlib (its InvalidRequestError description, or which of client, token,
  realm, signature and nonce failed).

oauthlib's validator keeps its defaults except where a test server must
differ: enforce_ssl is off (loopback http) and the methods are the three
above. So it insists, as deployed oauthlib servers do, on: a 10-digit
oauth_timestamp within 600 s; consumer key, token and nonce of 20-30 ASCII
letters and digits; every one of oauth_consumer_key, oauth_token,
oauth_signature_method, oauth_signature, oauth_timestamp and oauth_nonce;
a query (and form body) made only of characters that
application/x-www-form-urlencoded emits. Nonces are remembered per
(consumer, timestamp, nonce, token).

Defaults match countersign's fake (`fake::oauth1::DEMO_*`).
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from oauthlib.oauth1 import RequestValidator, ResourceEndpoint
from oauthlib.oauth1.rfc5849 import errors

DEMO_CONSUMER_KEY = "csDemoConsumerKey0000001"
DEMO_CONSUMER_SECRET = "demo consumer&secret+1/\u00e9"
DEMO_TOKEN = "csDemoAccessToken00000001"
DEMO_TOKEN_SECRET = "demo~token%secret=2"


class Validator(RequestValidator):
    def __init__(self, consumer_key, consumer_secret, token, token_secret, methods):
        super().__init__()
        self.ck, self.cs, self.tk, self.ts = consumer_key, consumer_secret, token, token_secret
        self.methods = tuple(methods)
        self.nonces = set()
        self.lock = threading.Lock()

    # Loopback http in tests only.
    @property
    def enforce_ssl(self):
        return False

    @property
    def allowed_signature_methods(self):
        return self.methods

    @property
    def dummy_client(self):
        return "dummyclientkey0000000000"

    @property
    def dummy_access_token(self):
        return "dummyaccesstoken00000000"

    def validate_client_key(self, client_key, request):
        return client_key == self.ck

    def get_client_secret(self, client_key, request):
        return self.cs if client_key == self.ck else "dummy"

    def validate_access_token(self, client_key, token, request):
        return client_key == self.ck and token == self.tk

    def get_access_token_secret(self, client_key, token, request):
        if client_key == self.ck and token == self.tk:
            return self.ts
        return "dummy"

    def validate_realms(self, client_key, token, request, uri=None, realms=None):
        return True

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request,
                                     request_token=None, access_token=None):
        key = (client_key, timestamp, nonce, request_token or access_token)
        with self.lock:
            if key in self.nonces:
                request.nonce_used = True
                return False
            self.nonces.add(key)
            return True


def why_refused(endpoint, validator, uri, method, body, headers):
    """oauthlib's ResourceEndpoint says only True/False; replay its own
    stateless checks to name the reason (these methods are oauthlib's)."""
    try:
        r = endpoint._create_request(uri, method, body, headers)
        endpoint._check_transport_security(r)
        endpoint._check_mandatory_parameters(r)
    except errors.OAuth1Error as e:
        return e.error, e.description
    except ValueError as e:
        return "invalid_request", str(e)
    if not r.resource_owner_key:
        return "invalid_request", "no oauth_token (ResourceEndpoint requires one)"
    if not validator.check_access_token(r.resource_owner_key):
        return "invalid_request", "oauth_token is not 20-30 ASCII letters and digits"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oauthlib-judge"

    def log_message(self, fmt, *args):
        if os.environ.get("JUDGE_VERBOSE"):
            super().log_message(fmt, *args)

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        app = self.server.app
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_stats" and self.command == "GET":
            with app.lock:
                return self._answer(200, dict(app.stats))
        with app.lock:
            app.stats["requests"] += 1
        uri = f"{app.scheme}://{self.headers.get('Host', '')}{self.path}"
        headers = {k: v for k, v in self.headers.items()}
        body = raw.decode("utf-8", "replace")
        early = why_refused(app.endpoint, app.validator, uri, self.command, body, headers)
        if early:
            return self._answer(401, {"error": early[0], "reason": early[1]})
        try:
            ok, r = app.endpoint.validate_protected_resource_request(
                uri, http_method=self.command, body=body, headers=headers)
        except ValueError as e:
            return self._answer(401, {"error": "invalid_request", "reason": str(e)})
        if not ok:
            if r is not None and getattr(r, "nonce_used", False):
                reason = "nonce already used (validate_timestamp_and_nonce)"
            elif r is not None and r.validator_log:
                failed = [k for k, v in r.validator_log.items() if not v]
                reason = "invalid " + ", ".join(failed)
            else:
                reason = "refused"
            return self._answer(401, {"error": "unauthorized", "reason": reason})
        with app.lock:
            app.stats["accepted"] += 1
        return self._answer(200, {
            "method": self.command,
            "path": url.path,
            "query": url.query or None,
            "body_length": len(raw),
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "consumer_key": r.client_key,
            "token": r.resource_owner_key,
            "signature_method": r.signature_method,
        })

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--consumer-key", default=DEMO_CONSUMER_KEY)
    p.add_argument("--consumer-secret", default=DEMO_CONSUMER_SECRET)
    p.add_argument("--token", default=DEMO_TOKEN)
    p.add_argument("--token-secret", default=DEMO_TOKEN_SECRET)
    p.add_argument("--scheme", default="http")
    p.add_argument("--methods", default="HMAC-SHA1,HMAC-SHA256,PLAINTEXT")
    a = p.parse_args()
    validator = Validator(a.consumer_key, a.consumer_secret, a.token, a.token_secret,
                          a.methods.split(","))
    httpd = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    httpd.daemon_threads = True
    httpd.app = argparse.Namespace(
        validator=validator,
        endpoint=ResourceEndpoint(validator),
        scheme=a.scheme,
        lock=threading.Lock(),
        stats={"requests": 0, "accepted": 0},
    )
    print(f"PORT {httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
