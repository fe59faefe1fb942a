"""Mints an RS256 access token of a made-up Entra tenant, and the key set that verifies it, for
measuring Bearer requests against a node (docs/performance.md, "Entra tokens"). Needs the
`cryptography` package (the client kit's venv has it).

usage: mint-test-token.py JWKS_OUT TOKEN_OUT [AUDIENCE] [OBJECT_ID]
Bind the object id in the node's [[auth.role_binding]]; the tenant is printed."""
import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
jwks_out, token_out = sys.argv[1], sys.argv[2]
audience = sys.argv[3] if len(sys.argv) > 3 else "api://edgeblob-bench"
oid = sys.argv[4] if len(sys.argv) > 4 else "0a0a0a0a-0000-0000-0000-000000000001"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def number(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pub = key.public_key().public_numbers()
with open(jwks_out, "w") as f:
    json.dump({"keys": [{"kty": "RSA", "kid": "bench-1", "use": "sig", "n": number(pub.n), "e": number(pub.e)}]}, f)
now = int(time.time())
header = b64(json.dumps({"alg": "RS256", "kid": "bench-1", "typ": "JWT"}).encode())
claims = b64(json.dumps({"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT, "oid": oid,
                         "appid": "11111111-0000-0000-0000-000000000001", "iat": now, "nbf": now - 60,
                         "exp": now + 7200, "ver": "1.0"}).encode())
signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
with open(token_out, "w") as f:
    f.write(f"{header}.{claims}.{b64(signature)}")
print(TENANT)
