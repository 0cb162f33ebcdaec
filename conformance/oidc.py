"""The Entra ID stand-in: a real OIDC provider (npm `oidc-provider`, conformance/node/
oidc_provider.mjs) in its own process, and helpers to get tokens from it or to sign
tokens of our own with its key (for the malformed-token tests)."""
import base64
import json
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import jwt
from jwt.algorithms import RSAAlgorithm

HERE = pathlib.Path(__file__).resolve().parent
TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-2222-3333-4444-555555555555"
AUDIENCE = "api://warehouse"
CLIENTS = {
    "gateway-tests": "gateway-tests-secret",
    "readonly-app": "readonly-app-secret",
    "no-roles-app": "no-roles-app-secret",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OidcProvider:
    def __init__(self, style="v2", port=None, key_file=None):
        self.style = style
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-oidc-")
        self.key_file = key_file or str(pathlib.Path(self.dir) / "key.json")
        self.proc = None
        if style == "v1":
            self.issuer = f"http://127.0.0.1:{self.port}/{TENANT}/"
        else:
            self.issuer = f"http://127.0.0.1:{self.port}/{TENANT}/v2.0"
        self.base = self.issuer.rstrip("/")

    def start(self):
        env = {"PORT": str(self.port), "HOST": "127.0.0.1", "TENANT_ID": TENANT, "AUDIENCE": AUDIENCE,
               "ISSUER_STYLE": self.style, "KEY_FILE": self.key_file, "PATH": "/usr/bin:/bin:/usr/local/bin"}
        self.log_path = pathlib.Path(self.dir) / f"provider-{time.time_ns()}.log"
        self.proc = subprocess.Popen(["node", str(HERE / "node" / "oidc_provider.mjs")], env=env,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        # Node loads oidc-provider's modules from a cold disk cache on a fresh clone.
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.base}/.well-known/openid-configuration", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the OIDC provider did not start:\n{self.log_path.read_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart_with_new_key(self):
        """Key rotation: the provider comes back on the same port with a fresh key."""
        self.stop()
        pathlib.Path(self.key_file).unlink()
        return self.start()

    def token(self, client="gateway-tests") -> str:
        """An access token by client credentials, as an app would get one from Entra."""
        secret = CLIENTS[client]
        basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
        req = urllib.request.Request(f"{self.base}/token", data=b"grant_type=client_credentials",
                                     headers={"Authorization": f"Basic {basic}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["access_token"]

    def jwks_fetches(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())["jwks_fetches"]

    def private_jwk(self) -> dict:
        return json.loads(pathlib.Path(self.key_file).read_text())

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        key = RSAAlgorithm.from_jwk(json.dumps(self.private_jwk())).public_key()
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "crafted", "tid": TENANT,
                  "oid": "aaaaaaaa-0000-0000-0000-0000000000ff", "azp": "crafted-app",
                  "roles": ["Warehouse.Read"], "iat": now, "nbf": now - 10, "exp": now + 600}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict, kid=None, alg="RS256") -> str:
        """A token signed with the provider's own key (so only the claims are wrong)."""
        jwk = self.private_jwk()
        key = RSAAlgorithm.from_jwk(json.dumps(jwk))
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid or jwk["kid"], "typ": "JWT"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
