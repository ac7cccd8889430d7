#!/usr/bin/env python3
"""bindery adapter (contract bindery.adapter/v1, docs/adapters.md) for NATS, using only
what nats-server ships: its configuration file and a reload signal.

Per instance: a NATS account (subjects of one account are invisible to every other).
Per binding: a user of that account allowed to publish and subscribe to anything in it,
or to subscribe only when the binding parameter read_only is true.

The adapter keeps its state (accounts, users) in settings.state_file, writes the
accounts as settings.accounts_file (which the server's configuration must `include`),
then makes the server reload with `nats-server --signal reload=<settings.pid_file>` and
waits until the change is in force, so a binding works (or is refused) when it returns.

settings: host, port (default 127.0.0.1:4222), state_file, accounts_file, pid_file,
          credentials_host (default: host)
"""
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

CONTRACT = "bindery.adapter/v1"


def reply(**fields):
    print(json.dumps(dict(contract=CONTRACT, **fields)))
    sys.exit(0)


def error(cls, description):
    reply(status="error", error={"class": cls, "description": description})


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def quote(text):
    return json.dumps(text)  # a JSON string is a valid NATS configuration string


def connects(settings, user, password):
    """Whether user/password may connect now (a CONNECT answered by PONG)."""
    try:
        with socket.create_connection((settings.get("host", "127.0.0.1"),
                                       int(settings.get("port", 4222))), timeout=3) as s:
            s.recv(4096)  # INFO
            connect = {"user": user, "pass": password, "verbose": False, "pedantic": False}
            s.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
            answer = b""
            while b"PONG" not in answer and b"-ERR" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            return b"PONG" in answer
    except OSError:
        error("temporary", "The NATS server is unreachable; retrying.")


def render(state):
    # A server with no user at all lets anyone in: a user nobody knows the password of
    # (random, kept in the state) keeps authentication on when no binding is left.
    lines = ["accounts {", f"  BINDERY_NO_LOGIN: {{ users: [{{user: \"bindery-no-login\", "
             f"password: {quote(state['_no_login'])}}}] }}"]
    for account, users in sorted(state["accounts"].items()):
        lines.append(f"  {account}: {{ users: [")
        for user, entry in sorted(users.items()):
            publish = '"_NO_PUBLISH_"' if entry["read_only"] else '">"'
            lines.append(
                f"    {{user: {quote(user)}, password: {quote(entry['password'])}, "
                f"permissions: {{publish: {publish}, subscribe: \">\"}}}}")
        lines.append("  ] }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_private(path, text):
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(temporary, path)


def apply(settings, state, wait_for):
    """Writes the state and the accounts file, reloads the server, then waits until
    wait_for() holds (the reload is asynchronous)."""
    write_private(settings["state_file"], json.dumps(state))
    write_private(settings["accounts_file"], render(state))
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
    while not wait_for():
        if time.time() > deadline:
            error("temporary", "The NATS server did not apply the change in time; retrying.")
        time.sleep(0.1)


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
    action = request.get("action")
    if action == "health":
        connects(settings, "", "")  # an unreachable server is the only failure here
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
        state = {"_no_login": os.urandom(24).hex(), "accounts": {}}
        if os.path.exists(settings["state_file"]):
            with open(settings["state_file"]) as f:
                state = json.load(f)
        accounts = state["accounts"]
        account = "A" + digest(instance["id"]).upper()
        if action in ("provision", "update"):
            if account not in accounts:
                accounts[account] = {}
                apply(settings, state, lambda: True)
            reply(status="ok")
        if action == "deprovision":
            if account in accounts:
                users = accounts.pop(account)
                apply(settings, state, lambda: not any(
                    connects(settings, u, e["password"]) for u, e in users.items()))
            reply(status="ok")
        if account not in accounts:
            if action == "unbind":
                reply(status="ok")
            error("permanent", "The service instance does not exist on the NATS server.")
        user = f"b-{digest(instance['id'])}-{digest(binding['id'])}"
        if action == "bind":
            password = binding["password"]
            read_only = (binding.get("parameters") or {}).get("read_only", False) is True
            entry = {"password": password, "read_only": read_only}
            if accounts[account].get(user) != entry:
                accounts[account][user] = entry
                apply(settings, state, lambda: connects(settings, user, password))
            host = settings.get("credentials_host", settings.get("host", "127.0.0.1"))
            port = str(settings.get("port", 4222))
            reply(status="ok", credentials={
                "type": "nats", "provider": "bindery", "host": host, "port": port,
                "username": user, "password": password,
                "uri": f"nats://{user}:{password}@{host}:{port}"})
        entry = accounts[account].pop(user, None)
        if entry is not None:
            apply(settings, state, lambda: not connects(settings, user, entry["password"]))
        reply(status="ok")


main()
