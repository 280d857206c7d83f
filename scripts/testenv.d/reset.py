#!/usr/bin/env python3
"""scripts/testenv.d/reset.py — put a test control plane back as `scripts/testenv up` left it.

`scripts/testenv up` records what the plane holds once it is up (`baseline`: every object of every
kind that can be listed). `reset` deletes everything else — every namespace the plane did not start
with (the namespace controller deletes what is in them), and every other object, cluster-scoped or
in `default`, `kube-system`, `kube-public` and `kube-node-lease`, that was not there — waits until
it is gone, and checks that what is left is the baseline again, kind by kind. Objects a finalizer
still holds after a while have their finalizers removed (nobody is left to finish them: the test
that set them has ended). Events and the endpoints controllers' objects are not compared.

Exit status 0: the plane is as it started; 1: it is not (what is left is printed), so it must not
be handed to another test.

Usage: reset.py KUBECONFIG baseline FILE    record the baseline into FILE
       reset.py KUBECONFIG reset FILE       reset to the baseline in FILE
"""

import json
import os
import sys
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kubeapi import Api  # noqa: E402 — the shared module sits in scripts/

# Not compared: made and remade by the API server and the controllers as they go.
SKIPPED = {"events", "endpoints", "endpointslices", "apiservices", "componentstatuses", "ipaddresses"}
SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def resources(api, skipped=SKIPPED, verb="delete"):
    """(list path, resource name, namespaced, group) of every kind that can be listed and deleted
    (`verb`), at its group's preferred version, but the `skipped` ones."""
    found = []
    groups = [("/api/v1", "")]
    for g in api.request("GET", "/apis").get("groups", []):
        groups.append((f"/apis/{g['preferredVersion']['groupVersion']}", g["name"]))
    for path, group in groups:
        try:
            listing = api.request("GET", path)
        except urllib.error.HTTPError:
            continue  # a group going away (a CRD being deleted)
        for r in listing.get("resources", []):
            verbs = set(r.get("verbs", []))
            if "/" in r["name"] or not {"list", verb} <= verbs or r["name"] in skipped:
                continue
            found.append((path, r["name"], r.get("namespaced", False), group))
    return found


def objects(api, kinds):
    """Every object of `kinds` as {key: (delete path, metadata)}; key = group/resource/ns/name."""
    def one(kind):
        path, name, namespaced, group = kind
        try:
            items = api.request("GET", f"{path}/{name}?limit=5000").get("items", [])
        except urllib.error.HTTPError:
            return {}
        out = {}
        for item in items:
            meta = item["metadata"]
            ns = meta.get("namespace")
            where = f"{path}/namespaces/{ns}/{name}" if namespaced and ns else f"{path}/{name}"
            out[f"{group}/{name}/{ns or ''}/{meta['name']}"] = (f"{where}/{meta['name']}", meta)
        return out
    with ThreadPoolExecutor(max_workers=8) as pool:
        merged = {}
        for part in pool.map(one, kinds):
            merged.update(part)
        return merged


def extra(api, baseline):
    """What the plane holds beyond its baseline: {key: (path, metadata)}."""
    return {k: v for k, v in objects(api, resources(api)).items() if k not in baseline}


def empty(api, namespaces, kinds):
    """Delete everything in `namespaces` (events and endpoints too), one request per kind and
    namespace, all at once: what the namespace controller does, without its pauses."""
    def one(job):
        namespace, (path, name, _, _) = job
        try:
            api.request("DELETE", f"{path}/namespaces/{namespace}/{name}",
                        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        except urllib.error.HTTPError as e:
            if e.code not in (404, 405):
                raise
    jobs = [(ns, k) for ns in namespaces for k in kinds if k[2]]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, jobs))


def emptied(api, namespaces, kinds):
    """Those of `namespaces` that hold no object of `kinds` any more."""
    def one(job):
        namespace, (path, name, _, _) = job
        try:
            got = api.request("GET", f"{path}/namespaces/{namespace}/{name}?limit=1")
        except urllib.error.HTTPError:
            return None
        return namespace if got.get("items") else None
    jobs = [(ns, k) for ns in namespaces for k in kinds if k[2]]
    with ThreadPoolExecutor(max_workers=16) as pool:
        holding = set(pool.map(one, jobs))
    return [ns for ns in namespaces if ns not in holding]


def finalize(api, namespace):
    """Let a namespace being deleted go once it is empty (what the namespace controller does)."""
    try:
        ns = api.request("GET", f"/api/v1/namespaces/{namespace}")
        ns["spec"]["finalizers"] = []
        api.request("PUT", f"/api/v1/namespaces/{namespace}/finalize", ns)
    except urllib.error.HTTPError as e:
        if e.code not in (404, 409):
            raise


def delete(api, path):
    try:
        api.request("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1",
                                     "propagationPolicy": "Background"})
    except urllib.error.HTTPError as e:
        if e.code not in (404, 409):
            raise


def unblock(api, path):
    try:
        api.request("PATCH", path, {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise


def reset(api, baseline, limit=90):
    deadline = time.monotonic() + limit
    unblock_after = time.monotonic() + 20
    asked = set()
    every = resources(api, skipped=set(), verb="deletecollection")
    while True:
        left = extra(api, baseline)
        if not left:
            return True
        if time.monotonic() > deadline:
            for key in sorted(left):
                print(f"reset: still there: {key}", file=sys.stderr)
            return False
        spaces = sorted(k.split("/")[3] for k in left if k.startswith("/namespaces//"))
        inside = {k.split("/")[2] for k in left}
        with ThreadPoolExecutor(max_workers=8) as pool:
            # First what is in a namespace (the system namespaces' extra objects, and every object
            # of a namespace to delete), then the namespaces, then cluster-scoped objects (CRDs
            # among them) once nothing namespaced is left.
            todo = [p for k, (p, _) in left.items()
                    if k.split("/")[2] in SYSTEM_NAMESPACES and p not in asked]
            todo += [p for k, (p, _) in left.items() if k.startswith("/namespaces//") and p not in asked]
            if not spaces and not any(k.split("/")[2] for k in left):
                todo += [p for k, (p, _) in left.items() if p not in asked]
            list(pool.map(lambda p: delete(api, p), todo))
            asked.update(todo)
            fresh = [ns for ns in spaces if ns not in asked]
            empty(api, fresh, every)
            asked.update(fresh)
            for ns in emptied(api, [ns for ns in spaces if ns not in inside], every):
                finalize(api, ns)
            if time.monotonic() > unblock_after:
                held = [p for _, (p, m) in left.items() if m.get("finalizers")]
                list(pool.map(lambda p: unblock(api, p), held))
        time.sleep(0.2)


def settle(api, limit=60):
    """Wait until what a new plane makes by itself is there: the simulated nodes, and each system
    namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap (from the controller
    manager), so that the baseline holds them."""
    nodes = int(os.environ.get("VZ_TESTENV_NODES", "3"))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            ready = len(api.request("GET", "/api/v1/nodes").get("items", [])) >= nodes
            for ns in SYSTEM_NAMESPACES:
                api.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
                api.request("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
            if ready:
                return
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
        time.sleep(0.1)
    sys.exit("the control plane did not make its nodes, service accounts and root CA ConfigMaps in time")


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("baseline", "reset"):
        sys.exit(__doc__)
    api = Api(sys.argv[1])
    if sys.argv[2] == "baseline":
        settle(api)
        keys = sorted(objects(api, resources(api)))
        with open(sys.argv[3], "w", encoding="utf-8") as f:
            json.dump(keys, f)
        return
    with open(sys.argv[3], encoding="utf-8") as f:
        baseline = set(json.load(f))
    sys.exit(0 if reset(api, baseline) else 1)


if __name__ == "__main__":
    main()
