"""Checks of .ci/compose-test against the running stack, by its published port (stdlib only).

``search URL FILE``: the catalogue is served (/readyz, /v1/index), a coordinate search at the
first nodule of the first scan answers neighbours; the answer is stored in FILE.
``again URL FILE``: after a restart, the same catalogue version answers the same search.
``ohif URL FILE``: the ohif service serves its config and forwards to the api (the catalogue
version of FILE answers through it); its PACS is a closed port, so DICOMweb answers 502.
"""

from __future__ import annotations

import json
import sys
import urllib.error
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
    # The catalogue nodule at the point is the query: recognised, and never its own neighbour
    # (a one-epoch model's similarities say nothing, so they are only checked for order).
    if answer["query"]["nodule_id"] != nodule["id"]:
        raise SystemExit(f"the search did not take nodule {nodule['id']} as the query")
    similarities = [s for _, s in neighbors]
    if not neighbors or nodule["id"] in {i for i, _ in neighbors}:
        raise SystemExit(f"the search found {neighbors} for nodule {nodule['id']}")
    if similarities != sorted(similarities, reverse=True) or not -1.0 <= similarities[-1] <= 1.0:
        raise SystemExit(f"the neighbours {neighbors} are not ranked by cosine similarity")
    return {
        "ready": readiness,
        "version": index["version"],
        "n_nodules": index["n_nodules"],
        "neighbors": neighbors,
    }


def _ohif(base: str, path: str) -> int:
    with urllib.request.urlopen(f"{base}/app-config.js", timeout=30) as response:
        config = response.read().decode()
    if "/nodule-search/panel/extension.js" not in config:
        raise SystemExit("the ohif service's app-config.js does not load the panel")
    with open(path) as f:
        stored = json.load(f)
    version = _get(f"{base}/v1/index")["version"]
    if version != stored["version"]:
        raise SystemExit(f"through the ohif service the api serves {version}")
    try:
        urllib.request.urlopen(f"{base}/dicom-web/studies", timeout=30)
    except urllib.error.HTTPError as e:
        if e.code != 502:
            raise SystemExit(f"DICOMweb with no PACS answered {e.code}, not 502") from None
    else:
        raise SystemExit("DICOMweb with no PACS answered 200")
    sys.stderr.write(
        f"ohif: the panel's config, the api ({version}) through it, 502 for DICOMweb\n"
    )
    return 0


def main(argv: list[str]) -> int:
    """Run one check; exit status 0 when it holds."""
    command, base, path = argv
    if command == "ohif":
        return _ohif(base, path)
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
