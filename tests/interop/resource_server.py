"""A resource server in Python that trusts gatehouse tokens, with PyJWT.

The recipe for non-Rust services: discover the issuer, verify the access token
offline against the published keys (algorithm allow-list, issuer, audience,
expiry, typ at+jwt), then decide a permission on a resource from the token's
`roles` claim and the published role catalog, with gatehouse's reach rule:

    "<role>@<scope>/*" reaches <scope> and everything beneath it,
    "<role>@<scope>"   reaches <scope> alone,
    "<role>@*"         reaches everything.

Usage: resource_server.py ISSUER AUDIENCE TOKEN [PERMISSION RESOURCE]...
Prints one JSON object: {"valid": bool, "error": str|null, "checks": [bool, ...]}.
"""

import json
import sys
import urllib.request

import jwt


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def reaches(scope, resource):
    """Whether a roles-claim scope reaches a resource name."""
    if scope == "*":
        return True
    if scope.endswith("/*"):
        base = scope[:-2]
        return resource == base or resource.startswith(base + "/")
    return resource == scope


def has_permission(claims, catalog, permission, resource):
    roles = {r["id"]: set(r["permissions"]) for r in catalog["roles"]}
    for entry in claims.get("roles", []):
        role, _, scope = entry.partition("@")
        if permission in roles.get(role, ()) and reaches(scope, resource):
            return True
    return False


def main(argv):
    issuer, audience, token, queries = argv[1], argv[2], argv[3], argv[4:]
    discovery = fetch_json(issuer + "/.well-known/openid-configuration")
    if discovery["issuer"] != issuer:
        raise SystemExit("issuer mismatch in discovery")
    keys = jwt.PyJWKClient(discovery["jwks_uri"])
    catalog = fetch_json(discovery["role_catalog_uri"])
    out = {"valid": False, "error": None, "checks": []}
    try:
        if jwt.get_unverified_header(token).get("typ") != "at+jwt":
            raise jwt.InvalidTokenError("not an access token (typ is not at+jwt)")
        key = keys.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "ES256", "EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            leeway=30,
        )
        out["valid"] = True
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as e:
        out["error"] = type(e).__name__ + ": " + str(e)
        print(json.dumps(out))
        return
    for permission, resource in zip(queries[::2], queries[1::2]):
        out["checks"].append(has_permission(claims, catalog, permission, resource))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
