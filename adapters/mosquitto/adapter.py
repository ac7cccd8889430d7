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
"""
import hashlib
import json
import subprocess
import sys

CONTRACT = "bindery.adapter/v1"


def reply(**fields):
    print(json.dumps(dict(contract=CONTRACT, **fields)))
    sys.exit(0)


def error(cls, description):
    reply(status="error", error={"class": cls, "description": description})


def digest(text, length):
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class Dynsec:
    def __init__(self, settings, secrets):
        self.base = [
            "mosquitto_ctrl", "-h", str(settings.get("host", "127.0.0.1")),
            "-p", str(settings.get("port", 1883)),
            "-u", str(settings.get("admin_username", "admin")),
            "-P", secrets.get("admin_password", ""), "dynsec",
        ]

    def run(self, *args, tolerate=()):
        """Runs one dynsec command; output that names a tolerated condition (such as
        "already exists" on a create) counts as success, so every action is idempotent."""
        try:
            done = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=20)
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
        # The admin password is in the command line, never in the output; still, say
        # only which command failed.
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
    read_only = binding.get("parameters", {}).get("read_only", False) is True
    created = ctl.run("createClient", user, "-p", password, tolerate=("already exists",))
    if "already exists" in created:
        ctl.run("setClientPassword", user, password)
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
