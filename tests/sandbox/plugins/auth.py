"""A sandboxed auth provider: the host reaches it through get_auth_provider()."""

import hmac

from covet_pipe.plugin import AuthPlugin

TOKENS = {"tok-alice": {"user": "alice", "roles": ["admin"]}, "tok-bob": {"user": "bob", "roles": []}}


class TokenAuth(AuthPlugin):
    name = "token_auth"
    version = "2.0.0"

    async def authenticate(self, credentials):
        token = credentials.get("token", "")
        for known, user in TOKENS.items():
            if hmac.compare_digest(known, token):
                return dict(user)
        return None

    async def authorize(self, user, resource, action):
        if action == "explode":
            raise ValueError("authorize() failed on purpose")
        return "admin" in user.get("roles", []) or (resource == "/public" and action == "read")


plugin = TokenAuth()
