"""NativeAuthenticator made to work under JupyterHub 6, provisioned from the userlist.

Copied into the hub image next to jupyterhub_config.py, so it may import only what
the hub image has: jupyterhub, nativeauthenticator, sqlalchemy, bcrypt, the stdlib.
"""

import os
import secrets

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as _NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode, default


class NullStatsd:
    """Accepts every statsd call the old JupyterHub client did, and does nothing."""

    # JupyterHub 5's login_user reads the timer's `ms` (the hub image at 5.x, as the upgrade
    # tests build it, logs people in through this handler too).
    ms = 0.0

    def timer(self, *args, **kwargs):
        return self

    def start(self):
        return self

    def stop(self, send=True):
        pass

    def incr(self, *args, **kwargs):
        pass

    decr = gauge = timing = incr


class LoginHandler(_NativeLoginHandler):
    # NativeAuthenticator 1.3.0 times every login with self.statsd, which JupyterHub 6
    # removed from BaseHandler: without this, each login dies with AttributeError.
    # Drop this (and CompatNativeAuthenticator) once jupyterhub/nativeauthenticator
    # releases a version that no longer uses statsd.
    statsd = NullStatsd()


class CompatNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose /login handler runs under JupyterHub 6."""

    def get_handlers(self, app):
        return [
            (pattern, LoginHandler if pattern == r"/login" else handler)
            for pattern, handler in super().get_handlers(app)
        ]


class ProvisionedNativeAuthenticator(CompatNativeAuthenticator):
    """Creates the operator's accounts at start-up, before anyone can sign up.

    NativeAuthenticator pre-authorizes whoever signs up first with an allowed or admin
    name; creating those accounts ourselves, with sign-up off, leaves no such window.
    """

    initial_passwords_file = Unicode(
        "",
        config=True,
        help="File of 'name password' lines (mode 0600) giving the first password of "
        "each allowed or admin user who has no account yet. Existing accounts are "
        "never changed, so users keep the passwords they chose.",
    )

    @default("enable_signup")
    def _enable_signup_default(self):
        # Sign-up is how a stranger would claim a name; the operator opts in explicitly.
        return False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._provision_accounts()

    def _read_initial_passwords(self):
        path = self.initial_passwords_file
        if not path:
            return {}
        try:
            f = open(path, encoding="utf-8")
        except FileNotFoundError:
            self.log.warning("initial_passwords_file %s does not exist", path)
            return {}
        with f:
            # fstat the open file, so the mode we check is that of what we read.
            if os.fstat(f.fileno()).st_mode & 0o077:
                raise ValueError(
                    f"{path} holds passwords but other users can access it: "
                    f"run `chmod 600 {path}`"
                )
            passwords = {}
            for line in f:
                fields = line.strip().split(None, 1)
                if len(fields) == 2 and not fields[0].startswith("#"):
                    passwords[self.normalize_username(fields[0])] = fields[1]
            return passwords

    def add_user(self, user):
        """JupyterHub calls this for every user at start-up and for each one an admin adds
        in the admin panel. A user who is not from the userlist gets an account with a
        password nobody knows, so the admin can set the first one at
        /hub/change-password/NAME (NativeAuthenticator's page for admins, which needs an
        account to exist); with sign-up off there would be no other way in."""
        super().add_user(user)
        name = self.normalize_username(user.name)
        if name not in self._userlist_names and UserInfo.find(self.db, name) is None:
            unknown = bcrypt.hashpw(secrets.token_hex(32).encode(), bcrypt.gensalt())
            self.db.add(UserInfo(username=name, password=unknown, is_authorized=True))
            self.db.commit()
            self.log.info("Created an account for %s: an admin sets its password at "
                          "/hub/change-password/%s", name, name)

    def _provision_accounts(self):
        passwords = self._read_initial_passwords()
        names = self.allowed_users | self.admin_users
        wanted = {self.normalize_username(n) for n in names}
        # Remembered before JupyterHub adds every user in its database to allowed_users.
        self._userlist_names = wanted
        missing = sorted(n for n in wanted if UserInfo.find(self.db, n) is None)
        without_password = [n for n in missing if n not in passwords]
        for name in missing:
            if name in passwords:
                hashed = bcrypt.hashpw(passwords[name].encode(), bcrypt.gensalt())
                self.db.add(
                    UserInfo(username=name, password=hashed, is_authorized=True)
                )
        if len(missing) > len(without_password):
            self.db.commit()
        if without_password:
            self.log.warning(
                "No initial password for %s: they cannot log in until one is provided",
                ", ".join(without_password),
            )
        created = len(missing) - len(without_password)
        self.log.info("Created %d account(s) from the userlist", created)
