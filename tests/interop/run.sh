#!/usr/bin/env bash
# The interop suite: real peers against a running gatehouse.
# - PyJWT (tests/interop/resource_server.py) verifies service-account tokens offline
#   against the JWKS and decides permissions from the roles claim and the role catalog.
# - openid-client, a certified relying party, with Debian's Chromium driven by
#   playwright-core (tests/interop/rp.mjs), signs the owner in through the browser as
#   the first-party client gatehouse-admin: code flow with PKCE, userinfo, refresh
#   rotation, revocation, RP-initiated logout.
# - tests/interop/federation.mjs signs people in through upstream OpenID providers
#   (oidc-provider, tests/interop/upstream.mjs) the same way, against a gatehouse of its
#   own that it bootstraps and serves with a federation configuration file: provisioning,
#   refusals, linking by email and from the account page, group mappings, an upstream
#   that is down, the state binding of the callback.
# Needs the debug binary (cargo build), python3 and node with npm; installs its locked
# dependencies into target/interop-venv (requirements.txt) and tests/interop/node_modules
# (package-lock.json), and Debian's chromium when /usr/bin/chromium is absent; never
# downloads a browser. Prints "N passed, M failed" and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bin="$root/target/debug/gatehouse"
[ -x "$bin" ] || cargo build --quiet
venv="$root/target/interop-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
py="$venv/bin/python"

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
issuer="http://127.0.0.1:$port"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
for v in $(env | grep -o '^GATEHOUSE_[A-Z_]*'); do unset "$v"; done
export GATEHOUSE_LISTEN="127.0.0.1:$port" GATEHOUSE_LOG=warn
owner_email=owner@acme.test
owner_password='interop owner password'
made=$(GATEHOUSE_BOOTSTRAP_PASSWORD="$owner_password" "$bin" bootstrap --org acme --owner-email "$owner_email" --service-account robot)
client_id=$("$py" -c 'import json,sys; print(json.load(sys.stdin)["service_account"]["client_id"])' <<<"$made")
secret=$("$py" -c 'import json,sys; print(json.load(sys.stdin)["service_account"]["client_secret"])' <<<"$made")
"$bin" serve 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 200); do
  curl -fs "$issuer/readyz" >/dev/null 2>&1 && break
  sleep 0.05
done

passed=0
failed=0
check() { # name, expected JSON, actual JSON
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1)); echo "ok   $1"
  else
    failed=$((failed + 1)); echo "FAIL $1: expected $2, got $3"
  fi
}
token() { # scope
  curl -fs -u "$client_id:$secret" -d grant_type=client_credentials --data-urlencode "scope=$1" "$issuer/oauth2/token" \
    | "$py" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
verdict() { # token, audience, queries... -> [valid, checks, error kind]
  local token=$1 audience=$2
  shift 2
  "$py" "$root/tests/interop/resource_server.py" "$issuer" "$audience" "$token" "$@" \
    | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps([d["valid"], d["checks"], (d["error"] or "").split(":")[0]]))'
}

t=$(token roles)
check "PyJWT verifies a service-account token and applies the reach rule" \
  '[true, [true, true, false, false], ""]' \
  "$(verdict "$t" "$issuer/v1" iam.policies.set orgs/acme/projects/backend resourcemanager.projects.delete orgs/acme iam.policies.set orgs/acmex iam.policies.set orgs/other)"
check "PyJWT refuses a token for another audience" '[false, [], "InvalidAudienceError"]' "$(verdict "$t" "https://elsewhere.example")"
tampered="${t%.*}.$(printf 'A%.0s' $(seq 1 342))"
check "PyJWT refuses a token with a forged signature" '[false, [], "InvalidSignatureError"]' "$(verdict "$tampered" "$issuer/v1")"
kid=$("$py" -c 'import jwt,sys; print(jwt.get_unverified_header(sys.argv[1])["kid"])' "$t")
header_none=$("$py" -c 'import base64,json,sys; print(base64.urlsafe_b64encode(json.dumps({"alg":"none","typ":"at+jwt","kid":sys.argv[1]}).encode()).decode().rstrip("="))' "$kid")
body=$(cut -d. -f2 <<<"$t")
check "PyJWT refuses alg none with a published kid" '[false, [], "InvalidAlgorithmError"]' "$(verdict "$header_none.$body." "$issuer/v1")"
t2=$(token "roles:orgs/acme/projects/backend")
check "a narrowed token still grants on its resource" '[true, [true], ""]' "$(verdict "$t2" "$issuer/v1" resourcemanager.projects.update orgs/acme/projects/backend/envs/prod)"
t3=$(curl -fs -u "$client_id:$secret" -d grant_type=client_credentials "$issuer/oauth2/token" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
check "a token without the roles scope grants nothing offline" '[true, [false], ""]' "$(verdict "$t3" "$issuer/v1" iam.policies.get orgs/acme)"

# openid-client and Chromium: rp.mjs against the same server, federation.mjs against
# a gatehouse (and upstream providers) of its own, started from the same binary.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
interop="$root/tests/interop"
if [ ! -f "$interop/node_modules/.package-lock.json" ] \
  || [ "$interop/package-lock.json" -nt "$interop/node_modules/.package-lock.json" ] \
  || [ "$interop/package.json" -nt "$interop/node_modules/.package-lock.json" ]; then
  (cd "$interop" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --quiet --no-audit --no-fund --prefer-offline)
fi
# Each check of the node suites counts; a suite that fails without a FAIL line counts one.
node_suite() { # label, script, arguments...
  local label=$1 script=$2 status=0 log="$work/$1.log" suite_passed suite_failed
  shift 2
  INTEROP_PASSWORD="$owner_password" node "$interop/$script" "$@" >"$log" 2>&1 || status=$?
  grep -v "^$label: [0-9]* passed, [0-9]* failed\$" "$log" || true
  suite_passed=$(grep -c '^ok   ' "$log" || true)
  suite_failed=$(grep -c '^FAIL ' "$log" || true)
  if [ "$status" -ne 0 ] && [ "$suite_failed" -eq 0 ]; then
    suite_failed=1; echo "FAIL $script exited with status $status"
  fi
  passed=$((passed + suite_passed))
  failed=$((failed + suite_failed))
}
node_suite rp rp.mjs "$issuer" "$owner_email"
node_suite federation federation.mjs "$bin" "$owner_email"

echo
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# docker/: no engine runs here, so lint the Dockerfile and check the compose file's
# structure (tests/interop/requirements.txt locks both tools)
"$venv/bin/hadolint" "$root/docker/Dockerfile"
"$py" "$root/docker/check.py"
