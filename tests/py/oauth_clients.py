#!/usr/bin/env python3
"""Maintained OAuth client libraries, driven by tests/oauth_judges.rs to sign
and send requests to countersign's fakes (and to the judges).

    python3 tests/py/oauth_clients.py oauth1-sign < cases.json
        cases.json: a JSON list of {method, url, body?, content_type?,
        signature_method, signature_type (AUTH_HEADER|QUERY|BODY), realm?,
        consumer_key, consumer_secret, token, token_secret}.
        Prints a JSON list of {url, headers, body, base_string}: the request
        oauthlib's Client signed, and the base string oauthlib's signature
        module computes for it.

    python3 tests/py/oauth_clients.py oauth2-fetch TOKEN_URL API_URL ID SECRET basic|post [SCOPE]
        authlib's requests OAuth2Session fetches a client_credentials token
        and GETs API_URL with it. Prints one JSON object {token, api_status,
        api_body}, or {error} when the token request failed.
"""

import json
import sys
import urllib.parse


def oauth1_sign(cases):
    from oauthlib.oauth1 import Client
    from oauthlib.oauth1.rfc5849 import signature

    out = []
    for c in cases:
        client = Client(
            c["consumer_key"],
            client_secret=c["consumer_secret"],
            resource_owner_key=c.get("token"),
            resource_owner_secret=c.get("token_secret"),
            signature_method=c["signature_method"],
            signature_type=c.get("signature_type", "AUTH_HEADER"),
            realm=c.get("realm"),
        )
        headers = {}
        if c.get("content_type"):
            headers["Content-Type"] = c["content_type"]
        body = c.get("body") or None
        url, headers, body = client.sign(c["url"], http_method=c["method"], body=body, headers=headers)
        # The base string as oauthlib's own signature module reads the signed request.
        form = body if "x-www-form-urlencoded" in headers.get("Content-Type", "") else None
        params = signature.collect_parameters(
            uri_query=urllib.parse.urlparse(url).query, body=form, headers=headers,
            exclude_oauth_signature=True)
        base = signature.signature_base_string(
            c["method"], signature.base_string_uri(url), signature.normalize_parameters(params))
        out.append({"url": url, "headers": headers, "body": body or "", "base_string": base})
    return out


def oauth2_fetch(token_url, api_url, client_id, secret, method, scope=None):
    from authlib.integrations.requests_client import OAuth2Session

    auth = {"basic": "client_secret_basic", "post": "client_secret_post"}[method]
    s = OAuth2Session(client_id, secret, token_endpoint_auth_method=auth, scope=scope)
    try:
        token = s.fetch_token(token_url, grant_type="client_credentials")
    except Exception as e:  # authlib raises OAuthError with the server's error
        return {"error": f"{type(e).__name__}: {e}"}
    r = s.get(api_url)
    return {"token": dict(token), "api_status": r.status_code, "api_body": r.text}


def main(argv):
    if argv[1:2] == ["oauth1-sign"]:
        print(json.dumps(oauth1_sign(json.load(sys.stdin))))
    elif argv[1:2] == ["oauth2-fetch"]:
        print(json.dumps(oauth2_fetch(*argv[2:])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
