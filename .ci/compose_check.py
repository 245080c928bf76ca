"""Checks of .ci/compose-test against the running stack, by its published port (stdlib only).

``search URL FILE``: the catalogue is served (/readyz, /v1/index), a coordinate search at the
first nodule of the first scan answers neighbours; the answer is stored in FILE.
``again URL FILE``: after a restart, the same catalogue version answers the same search.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _search(base: str) -> dict[str, Any]:
    readiness = _get(f"{base}/readyz")
    index = _get(f"{base}/v1/index")
    scans = _get(f"{base}/v1/scans")["scans"]
    scan = next(s for s in scans if s["n_nodules"])
    nodule = _get(f"{base}/v1/scans/{scan['series_uid']}")["nodules"][0]
    body = {"series_uid": scan["series_uid"], "center_xyz": nodule["center_xyz"], "k": 3}
    request = urllib.request.Request(
        f"{base}/v1/search/coordinate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    neighbors = [(n["id"], round(n["similarity"], 5)) for n in answer["neighbors"]]
    if not neighbors or neighbors[0][1] < 0.999:
        raise SystemExit(f"the search found {neighbors}, not the nodule itself first")
    return {
        "ready": readiness,
        "version": index["version"],
        "n_nodules": index["n_nodules"],
        "neighbors": neighbors,
    }


def main(argv: list[str]) -> int:
    """Run one check; exit status 0 when it holds."""
    command, base, path = argv
    found = _search(base)
    if command == "search":
        with open(path, "w") as f:
            json.dump(found, f)
        sys.stderr.write(
            f"catalogue {found['version']} ({found['n_nodules']} nodules): "
            f"neighbours {found['neighbors']}\n"
        )
        return 0
    with open(path) as f:
        stored = json.load(f)
    for key in ("version", "n_nodules", "neighbors"):
        if json.loads(json.dumps(found[key])) != stored[key]:
            raise SystemExit(f"after the restart {key} is {found[key]}, was {stored[key]}")
    sys.stderr.write(f"after the restart: the same catalogue {found['version']} and answer\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
