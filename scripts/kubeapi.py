"""scripts/kubeapi.py — the few Kubernetes API calls the test plane's simulators need.

Shared by scripts/node-sim and scripts/webhook-standin; standard library only. Reads the server,
CA file and bearer token of the kubeconfig `scripts/testenv up` writes (nothing more general).
"""

import json
import ssl
import sys
import time
import urllib.request


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


class Api:
    """Requests to the API server with the kubeconfig's server, CA and token."""

    def __init__(self, kubeconfig):
        server = ca = token = None
        for raw in open(kubeconfig, encoding="utf-8"):
            line = raw.strip()
            if line.startswith("server:"):
                server = line.split(":", 1)[1].strip()
            elif line.startswith("certificate-authority:"):
                ca = line.split(":", 1)[1].strip()
            elif line.startswith("token:"):
                token = line.split(":", 1)[1].strip()
        if not (server and ca and token):
            sys.exit(f"{kubeconfig} lacks server, certificate-authority or token")
        self.server = server
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca)

    def request(self, method, path, body=None, content_type="application/json", timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def watch(self, path, resource_version):
        """Yield watch events of `path` from `resource_version` until the server ends the stream."""
        sep = "&" if "?" in path else "?"
        url = (f"{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=120"
               f"&resourceVersion={resource_version}")
        req = urllib.request.Request(self.server + url)
        req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, context=self.ctx, timeout=150) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


def follow(api, path, handle, name):
    """List, then watch `path` forever, handing every object to `handle` (deleted ones too, with
    `deleted=True`); relist after errors."""
    while True:
        try:
            listing = api.request("GET", path)
            for item in listing.get("items", []):
                handle(item, False)
            rv = listing["metadata"]["resourceVersion"]
            for event in api.watch(path, rv):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    handle(event["object"], event["type"] == "DELETED")
                elif event["type"] == "ERROR":
                    break
        except Exception as e:  # noqa: BLE001 — keep simulating whatever went wrong once
            log(f"{name}: {e}; starting over")
            time.sleep(0.5)
