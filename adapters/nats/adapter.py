#!/usr/bin/env python3
"""bindery adapter (contract bindery.adapter/v1, docs/adapters.md) for NATS, using only
what nats-server ships: its configuration file and a reload signal.

Per instance: a NATS account (subjects of one account are invisible to every other).
Per binding: a user of that account allowed to publish and subscribe to anything in it,
or to subscribe only when the binding parameter read_only is true. With jetstream: true,
every account has JetStream and every read-write binding a stream of its own, named like
its user, that stores the subjects <user>.> (read-only bindings cannot publish, so they
cannot use the JetStream API: they get no stream).

Passwords are written as bcrypt hashes (made with the C library's crypt(3): libxcrypt),
never in clear, neither in the accounts file nor in the state file.

The adapter keeps its state (accounts, users) in settings.state_file, writes the
accounts as settings.accounts_file (which the server's configuration must `include`),
then makes the server reload with `nats-server --signal reload=<settings.pid_file>`.
Each reload gives the user bindery-no-login a new random password that only this run
knows (forgotten when it ends): once that password is accepted the change is in force.
A run that talks to JetStream also gives that password to the account's user
bindery-<account>, allowed only the JetStream API, and uses it for its requests.

settings: host, port (default 127.0.0.1:4222), state_file, accounts_file, pid_file,
          credentials_host (default: host), jetstream (default false)
"""
import base64
import ctypes
import ctypes.util
import fcntl
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time

CONTRACT = "bindery.adapter/v1"
# The passwords are long and random (bindery's: 32 alphanumerics), so the hash only keeps
# them out of the files; no cost factor is needed against guessing. nats-server checks the
# password of every connected client again on each reload: at cost 10 a reload with 40
# clients connected took 6 to 10 s, at cost 4 a quarter of a second.
BCRYPT_COST = 4


def reply(**fields):
    print(json.dumps(dict(contract=CONTRACT, **fields)))
    sys.exit(0)


def error(cls, description):
    reply(status="error", error={"class": cls, "description": description})


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def quote(text):
    return json.dumps(text)  # a JSON string is a valid NATS configuration string


def crypt(password, setting):
    """crypt(3) of libcrypt; a permanent error when it cannot make bcrypt hashes."""
    result = None
    try:
        library = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
        library.crypt.restype = ctypes.c_char_p
        library.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        result = library.crypt(password.encode(), setting.encode())
    except (OSError, AttributeError):
        pass
    if not result or not result.startswith(setting[:7].encode()) or len(result) != 60:
        error("permanent", "This host's libcrypt cannot make bcrypt hashes (libxcrypt can), "
                           "and the NATS adapter never stores passwords in clear.")
    return result.decode()


BCRYPT64 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                         "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def bcrypt(password):
    salt = base64.b64encode(os.urandom(16)).decode()[:22].translate(BCRYPT64)
    return crypt(password, f"$2b${BCRYPT_COST:02d}${salt}")


def matches(password, hashed):
    return hmac.compare_digest(crypt(password, hashed), hashed)


class Nats:
    """A minimal NATS protocol client: connect with a user and password, then requests."""

    def __init__(self, settings, user, password):
        try:
            self.socket = socket.create_connection((settings.get("host", "127.0.0.1"),
                                                    int(settings.get("port", 4222))), timeout=5)
        except OSError:
            error("temporary", "The NATS server is unreachable; retrying.")
        self.file = self.socket.makefile("rb")
        info = self.line()
        self.jetstream = info.startswith("INFO ") and json.loads(info[5:]).get("jetstream") is True
        connect = {"user": user, "pass": password, "verbose": False, "pedantic": False,
                   "headers": True, "no_responders": True}
        self.send(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        self.accepted = self.line() == "PONG"
        self.inbox, self.requests = "_INBOX." + os.urandom(8).hex(), 0

    def send(self, data):
        try:
            self.socket.sendall(data)
        except OSError:
            error("temporary", "The NATS server closed the connection; retrying.")

    def line(self):
        """The next line from the server, answering its PINGs on the way ("" when closed)."""
        while True:
            try:
                text = self.file.readline().decode().rstrip("\r\n")
            except OSError:
                error("temporary", "The NATS server did not answer in time; retrying.")
            if text != "PING":
                return text
            self.send(b"PONG\r\n")

    def request(self, subject, body):
        """The JSON answer to a request, or None when nothing listens on subject."""
        if not self.requests:
            self.send(f"SUB {self.inbox}.* 1\r\n".encode())
        self.requests += 1
        inbox, data = f"{self.inbox}.{self.requests}", json.dumps(body).encode()
        self.send(f"PUB {subject} {inbox} {len(data)}\r\n".encode() + data + b"\r\n")
        while True:
            line = self.line()
            kind, *fields = line.split(" ")
            if kind in ("MSG", "HMSG"):
                size = int(fields[-1])
                headers = int(fields[-2]) if kind == "HMSG" else 0
                message = self.file.read(size + 2)[:size]
                if fields[0] != inbox:
                    continue  # a late answer to an earlier request
                if b" 503" in message[:headers].split(b"\r\n")[0]:
                    return None  # the server's "no responders"
                return json.loads(message[headers:])
            if kind == "-ERR" or not line:
                print(f"nats: {line or 'connection closed'}", file=sys.stderr)
                error("temporary", "The NATS server refused a JetStream request; retrying.")

    def jetstream_api(self, api, body, tolerated=()):
        """Calls $JS.API.<api>; the answer, or an error result unless its err_code is
        tolerated (10058: a stream of that name exists; 10059: no such stream)."""
        deadline = time.time() + 5  # an account's JetStream starts just after a reload
        while (answer := self.request("$JS.API." + api, body)) is None:
            if time.time() > deadline:
                error("permanent", "JetStream does not answer in the instance's account: "
                                   "the NATS server must run with JetStream enabled.")
            time.sleep(0.2)
        failure = answer.get("error")
        if failure and failure.get("err_code") not in tolerated:
            error("permanent", f"JetStream refused $JS.API.{api}: {failure.get('description')}")
        return answer


def render(state, jetstream, run_hash, admin_account):
    # A server with no user at all lets anyone in: bindery-no-login keeps authentication
    # on when no binding is left, and its password of this run tells the reload is done.
    lines = ["accounts {", f"  BINDERY_NO_LOGIN: {{ users: [{{user: \"bindery-no-login\", "
             f"password: {quote(run_hash)}, permissions: {{publish: \"_NO_PUBLISH_\", "
             f"subscribe: \"_NO_SUBSCRIBE_\"}}}}] }}"]
    for account, users in sorted(state["accounts"].items()):
        lines.append(f"  {account}: {{{' jetstream: enabled,' if jetstream else ''} users: [")
        if account == admin_account:
            lines.append(f"    {{user: \"bindery-{account}\", password: {quote(run_hash)}, "
                         f"permissions: {{publish: \"$JS.API.>\", subscribe: \"_INBOX.>\"}}}}")
        for user, entry in sorted(users.items()):
            publish = '"_NO_PUBLISH_"' if entry["read_only"] else '">"'
            lines.append(
                f"    {{user: {quote(user)}, password: {quote(entry['hash'])}, "
                f"permissions: {{publish: {publish}, subscribe: \">\"}}}}")
        lines.append("  ] }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_private(path, text):
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(temporary, path)


def apply(settings, state, admin_account=None):
    """Writes the state and the accounts file, reloads the server and waits until the
    change is in force (the reload is asynchronous). With admin_account, returns a client
    connected as that account's JetStream user."""
    password = os.urandom(24).hex()
    accounts = render(state, settings.get("jetstream") is True, bcrypt(password), admin_account)
    write_private(settings["state_file"], json.dumps(state))
    write_private(settings["accounts_file"], accounts)
    try:
        done = subprocess.run(["nats-server", "--signal", "reload=" + settings["pid_file"]],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"nats-server reload: {e}", file=sys.stderr)
        error("temporary", "The NATS server could not be told to reload; retrying.")
    if done.returncode != 0:
        print("nats-server reload: " + done.stderr.strip(), file=sys.stderr)
        error("temporary", "The NATS server could not be told to reload; retrying.")
    deadline = time.time() + 10
    while not Nats(settings, "bindery-no-login", password).accepted:
        if time.time() > deadline:
            error("temporary", "The NATS server did not apply the change in time; retrying.")
        time.sleep(0.1)
    return Nats(settings, f"bindery-{admin_account}", password) if admin_account else None


def load(settings):
    """The state, and whether it still holds passwords in clear (written by an adapter
    before passwords were hashed); those are hashed here."""
    if not os.path.exists(settings["state_file"]):
        return {"accounts": {}}, False
    with open(settings["state_file"]) as f:
        state = json.load(f)
    clear = state.pop("_no_login", None) is not None
    for users in state["accounts"].values():
        for entry in users.values():
            if "password" in entry:
                entry["hash"], clear = bcrypt(entry.pop("password")), True
    return state, clear


def main():
    try:
        request = json.load(sys.stdin)
    except ValueError:
        error("permanent", "The request is not JSON.")
    if not isinstance(request, dict) or request.get("contract") != CONTRACT:
        error("permanent", f"This adapter speaks {CONTRACT} only.")
    settings = request.get("settings") or {}
    missing = [k for k in ("state_file", "accounts_file", "pid_file") if not settings.get(k)]
    if missing:
        error("permanent", "The plan's adapter settings lack " + ", ".join(missing) + ".")
    jetstream = settings.get("jetstream") is True
    action = request.get("action")
    if action == "health":
        bcrypt("health")  # a libcrypt without bcrypt is a permanent error
        if jetstream and not Nats(settings, "", "").jetstream:
            error("permanent", "The NATS server runs without JetStream, which the adapter's "
                               "settings ask for (jetstream: true).")
        reply(status="ok")
    if action not in ("provision", "update", "deprovision", "bind", "unbind"):
        error("permanent", f"Unknown action {action!r}.")
    instance = request.get("instance")
    if not isinstance(instance, dict) or not instance.get("id"):
        error("permanent", "The request names no instance.")
    binding = request.get("binding")
    if action in ("bind", "unbind") and (not isinstance(binding, dict) or not binding.get("id")):
        error("permanent", "The request names no binding.")

    # One adapter run at a time changes the configuration.
    with open(settings["state_file"] + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state, clear = load(settings)
        if clear:
            apply(settings, state)
        accounts = state["accounts"]
        account = "A" + digest(instance["id"]).upper()
        if action in ("provision", "update"):
            if account not in accounts:
                accounts[account] = {}
                apply(settings, state)
            reply(status="ok")
        if action == "deprovision":
            if account in accounts:
                if jetstream:  # every stream of the account, also those bindings made
                    nats = apply(settings, state, account)
                    while streams := nats.jetstream_api("STREAM.NAMES", {}).get("streams"):
                        for stream in streams:
                            nats.jetstream_api("STREAM.DELETE." + stream, {}, tolerated=(10059,))
                del accounts[account]
                apply(settings, state)
            reply(status="ok")
        if account not in accounts:
            if action == "unbind":
                reply(status="ok")
            error("permanent", "The service instance does not exist on the NATS server.")
        user = f"b-{digest(instance['id'])}-{digest(binding['id'])}"
        if action == "bind":
            password = binding["password"]
            read_only = (binding.get("parameters") or {}).get("read_only", False) is True
            entry = accounts[account].get(user)
            changed = (entry is None or entry["read_only"] != read_only
                       or not matches(password, entry["hash"]))
            if changed:
                accounts[account][user] = {"hash": bcrypt(password), "read_only": read_only}
            host = settings.get("credentials_host", settings.get("host", "127.0.0.1"))
            port = str(settings.get("port", 4222))
            credentials = {
                "type": "nats", "provider": "bindery", "host": host, "port": port,
                "username": user, "password": password,
                "uri": f"nats://{user}:{password}@{host}:{port}"}
            if jetstream and not read_only:
                nats = apply(settings, state, account)
                # Creating a stream that exists with this configuration succeeds; one the
                # binding has since changed (10058) is left as it is.
                nats.jetstream_api("STREAM.CREATE." + user, {
                    "name": user, "subjects": [user + ".>"], "storage": "file"},
                    tolerated=(10058,))
                credentials.update(stream=user, subject_prefix=user + ".")
            elif changed:
                apply(settings, state)
            reply(status="ok", credentials=credentials)
        entry = accounts[account].pop(user, None)
        if jetstream:
            nats = apply(settings, state, account)
            nats.jetstream_api("STREAM.DELETE." + user, {}, tolerated=(10059,))
        elif entry is not None:
            apply(settings, state)
        reply(status="ok")


main()
