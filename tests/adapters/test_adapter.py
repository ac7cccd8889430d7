#!/usr/bin/env python3
"""A bindery.adapter/v1 adapter for bindery's tests: keeps its "service" in files under
settings.state_dir and misbehaves on purpose when settings.mode asks it to."""
import hashlib
import json
import os
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


def path(state, *parts):
    return os.path.join(state, *parts)


def main():
    try:
        request = json.load(sys.stdin)
    except ValueError:
        error("permanent", "the request is not JSON")
    if request.get("contract") != CONTRACT:
        error("permanent", "unsupported contract")
    settings = request.get("settings", {})
    state = settings.get("state_dir", "/tmp")
    mode = settings.get("mode", "good")
    action = request.get("action")
    os.makedirs(path(state, "bindings"), exist_ok=True)
    with open(path(state, "calls.log"), "a") as log:
        log.write(action + "\n")

    if mode == "hang":
        sleeper = subprocess.Popen(["sleep", "600"])
        with open(path(state, "pids"), "w") as f:
            f.write(f"{os.getpid()} {sleeper.pid}\n")
        time.sleep(600)
    if mode == "hang_first" and action == "provision" and not os.path.exists(path(state, "hung")):
        with open(path(state, "hung"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    if mode == "crash":
        print("about to crash", file=sys.stderr)
        os.abort()
    if mode == "garbage":
        print("hello, I am not JSON")
        sys.exit(0)
    if mode == "flood":
        sys.stdout.write("x" * 10_000_000)
        sys.exit(0)
    if mode == "leak_secret":
        print("connecting with admin password " + request["secrets"].get("admin_password", "")
              + " and binding password " + request.get("binding", {}).get("password", ""),
              file=sys.stderr)
    if mode == "temporary_twice" and action == "provision":
        counter = path(state, "attempts-" + action)
        attempts = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "w") as f:
            f.write(str(attempts + 1))
        if attempts < 2:
            error("temporary", f"the service is busy (attempt {attempts + 1})")
    if mode == "env":
        print(json.dumps(sorted(os.environ)), file=sys.stderr)

    if action == "health":
        if mode == "unhealthy":
            error("temporary", "the test service is down")
        reply(status="ok")
    instance = request.get("instance")
    if not isinstance(instance, dict) or not instance.get("id"):
        error("user", "the request names no instance")
    marker = path(state, "instance-" + digest(instance["id"]))
    # What each action was told of the platform's context and of the instance's facts.
    with open(path(state, "seen-" + action + ".json"), "w") as f:
        json.dump({"context": instance.get("context"), "facts": instance.get("facts")}, f)
    if mode == "sloppy" and action == "provision" and os.path.exists(marker):
        error("permanent", "the instance exists already")
    if instance.get("parameters", {}).get("size", 1) > 10:
        error("user", "size: at most 10")
    if action == "provision":
        with open(marker, "w") as f:
            json.dump(instance.get("parameters", {}), f)
        reply(status="ok", facts={"resource": "r-" + digest(instance["id"])})
    if action == "update":
        with open(marker, "w") as f:
            json.dump(instance.get("parameters", {}), f)
        reply(status="ok")
    if action == "deprovision":
        if os.path.exists(marker):
            os.remove(marker)
        reply(status="ok")
    binding = request.get("binding")
    if not isinstance(binding, dict) or not binding.get("id"):
        error("user", "the request names no binding")
    user = "u" + digest(binding["id"])
    if action == "bind":
        if not os.path.exists(marker):
            error("permanent", "the instance does not exist")
        with open(path(state, "bindings", user), "w") as f:
            f.write(binding["password"])
        password = "same-for-all" if mode == "sloppy" else binding["password"]
        reply(status="ok", credentials={"type": "test", "username": user, "password": password})
    if action == "unbind":
        if mode == "sloppy" and not os.path.exists(path(state, "bindings", user)):
            error("permanent", "no such binding")
        if os.path.exists(path(state, "bindings", user)):
            os.remove(path(state, "bindings", user))
        reply(status="ok")
    error("user", f"unknown action {action!r}")


main()
