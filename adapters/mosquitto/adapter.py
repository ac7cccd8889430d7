#!/usr/bin/env python3
"""bindery adapter (contract bindery.adapter/v1, docs/adapters.md) for MQTT on Mosquitto
with its dynamic-security plugin, using only mosquitto_ctrl.

Per instance: a topic prefix <topic_root>/<hash of the instance id>/ and two roles
(read-write, read-only) allowed only under it. Per binding: a client (username) with the
read-write role, or the read-only one when the binding parameter read_only is true.

settings (the plan's backend.settings.config):
  host, port              the broker's address (default 127.0.0.1:1883)
  admin_username          the dynamic-security admin (default "admin")
  topic_root              first level of every prefix (default "bindery")
  credentials_host        host handed to applications (default: host)
secrets: admin_password   the admin's password

No password is ever on mosquitto_ctrl's command line (where the process list shows it):
see Dynsec.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

CONTRACT = "bindery.adapter/v1"


def reply(**fields):
    print(json.dumps(dict(contract=CONTRACT, **fields)))
    sys.exit(0)


def error(cls, description):
    reply(status="error", error={"class": cls, "description": description})


def digest(text, length):
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class Dynsec:
    """Runs mosquitto_ctrl dynsec with no password on its command line: the connection
    options, admin password included, go in a private options file that mosquitto_ctrl
    reads ($XDG_CONFIG_HOME/mosquitto_ctrl, mode 0600, in a temporary directory of its
    own that is removed after the call), and a client's new password goes on its stdin."""

    def __init__(self, settings, secrets):
        options = [("-h", "host", settings.get("host", "127.0.0.1")),
                   ("-p", "port", settings.get("port", 1883)),
                   ("-u", "admin_username", settings.get("admin_username", "admin")),
                   ("-P", "secret admin_password", secrets.get("admin_password", ""))]
        for _, name, value in options:
            # The options file has one "-option value" a line, split at white space.
            if not str(value) or any(c.isspace() for c in str(value)):
                error("permanent", f"The adapter's {name} is empty or contains white space, "
                                   "which mosquitto_ctrl's options file cannot carry.")
        self.options = "".join(f"{option} {value}\n" for option, _, value in options)

    def run(self, *args, password=None, tolerate=()):
        """Runs one dynsec command (password: the new password it asks for); output that
        names a tolerated condition (such as "already exists" on a create) counts as
        success, so every action is idempotent."""
        with tempfile.TemporaryDirectory(prefix="bindery-mosquitto-") as home:
            path = os.path.join(home, "mosquitto_ctrl")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(self.options)
            try:
                done = subprocess.run(
                    ["mosquitto_ctrl", "dynsec", *args], capture_output=True, text=True,
                    timeout=20, env=dict(os.environ, XDG_CONFIG_HOME=home),
                    # Asked twice (new, then again); an empty stdin leaves nothing to read.
                    input=f"{password}\n{password}\n" if password is not None else "")
            except subprocess.TimeoutExpired:
                error("temporary", "The MQTT broker did not answer in time; retrying.")
        # mosquitto_ctrl warns about unencrypted connections on every call and exits 0
        # even when it could not connect: only its words tell failure from success.
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                            if line.strip() and not line.startswith(("Warning: You are running",
                                                                      "This means all of the")))
        if done.returncode == 0 and "rror" not in output:
            return output
        if any(t in output for t in tolerate):
            return output
        if "onnection refused" in output or "Unable to connect" in output or "timed out" in output:
            error("temporary", "The MQTT broker is unreachable; retrying.")
        # No password is in the output (only prompts naming the client); still, say only
        # which command failed.
        print(f"mosquitto_ctrl dynsec {args[0]} failed: {output}", file=sys.stderr)
        error("permanent", f"The MQTT broker refused {args[0]}; contact the broker operator.")


def names(settings, instance_id):
    tag = digest(instance_id, 16)
    prefix = f"{settings.get('topic_root', 'bindery')}/{tag}"
    return tag, prefix, f"bindery-{tag}-rw", f"bindery-{tag}-ro"


def provision(ctl, settings, instance):
    tag, prefix, rw, ro = names(settings, instance["id"])
    for role in (rw, ro):
        ctl.run("createRole", role, tolerate=("already exists",))
    acls = [(rw, "publishClientSend"), (rw, "subscribePattern"), (rw, "publishClientReceive"),
            (ro, "subscribePattern"), (ro, "publishClientReceive")]
    for role, acl in acls:
        ctl.run("addRoleACL", role, acl, f"{prefix}/#", "allow", "5", tolerate=("already exists",))


def deprovision(ctl, settings, instance):
    tag, _, rw, ro = names(settings, instance["id"])
    # Clients of bindings the platform never unbound go with the instance.
    for line in ctl.run("listClients").splitlines():
        user = line.strip()
        if user.startswith(f"b-{tag}-"):
            ctl.run("deleteClient", user, tolerate=("not found",))
    for role in (rw, ro):
        ctl.run("deleteRole", role, tolerate=("not found",))


def bind(ctl, settings, instance, binding):
    tag, prefix, rw, ro = names(settings, instance["id"])
    user = f"b-{tag}-{digest(binding['id'], 16)}"
    password = binding["password"]
    if not password or "\n" in password or "\r" in password:
        error("permanent", "The binding's password must be one line.")
    read_only = binding.get("parameters", {}).get("read_only", False) is True
    created = ctl.run("createClient", user, password=password, tolerate=("already exists",))
    if "already exists" in created:
        ctl.run("setClientPassword", user, password=password)
    wanted, unwanted = (ro, rw) if read_only else (rw, ro)
    # Mosquitto 2.0 answers "Internal error" to adding a role a client holds already.
    held = ctl.run("getClient", user)
    if wanted not in held:
        ctl.run("addClientRole", user, wanted, "5")
    if unwanted in held:
        ctl.run("removeClientRole", user, unwanted)
    host = settings.get("credentials_host", settings.get("host", "127.0.0.1"))
    port = str(settings.get("port", 1883))
    return {
        "type": "mqtt", "provider": "bindery", "host": host, "port": port,
        "username": user, "password": password, "topic_prefix": prefix + "/",
        "uri": f"mqtt://{user}:{password}@{host}:{port}",
    }


def unbind(ctl, settings, instance, binding):
    tag, _, _, _ = names(settings, instance["id"])
    ctl.run("deleteClient", f"b-{tag}-{digest(binding['id'], 16)}", tolerate=("not found",))


def main():
    try:
        request = json.load(sys.stdin)
    except ValueError:
        error("permanent", "The request is not JSON.")
    if not isinstance(request, dict) or request.get("contract") != CONTRACT:
        error("permanent", f"This adapter speaks {CONTRACT} only.")
    settings = request.get("settings") or {}
    ctl = Dynsec(settings, request.get("secrets") or {})
    action = request.get("action")
    if action == "health":
        ctl.run("getDefaultACLAccess")
        reply(status="ok")
    instance = request.get("instance")
    if action not in ("provision", "update", "deprovision", "bind", "unbind"):
        error("permanent", f"Unknown action {action!r}.")
    if not isinstance(instance, dict) or not instance.get("id"):
        error("permanent", "The request names no instance.")
    if action in ("provision", "update"):
        provision(ctl, settings, instance)
        reply(status="ok")
    if action == "deprovision":
        deprovision(ctl, settings, instance)
        reply(status="ok")
    binding = request.get("binding")
    if not isinstance(binding, dict) or not binding.get("id"):
        error("permanent", "The request names no binding.")
    if action == "bind":
        reply(status="ok", credentials=bind(ctl, settings, instance, binding))
    unbind(ctl, settings, instance, binding)
    reply(status="ok")


main()
