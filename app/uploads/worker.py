"""``python -m app.uploads.worker``: parse one untrusted upload in its own process.

The service starts this for every upload with a time limit; the process limits its own address
space (``NODULE_WORKER_MEMORY_BYTES``) and core dumps before importing any reader, so whatever a
malformed file does to the readers (crash, memory bomb, endless loop) ends this process, not the
service. The request is JSON on stdin ``{"job": UploadJob, "out": path}``; the patch, where it
was cut and the size estimate (JSON) are written to ``out`` (``.npz``). Exit status: 0 done, 3
the content is unusable (the message on stdout as JSON), anything else a crash.
"""

from __future__ import annotations

import json
import os
import resource
import sys

EXIT_UNUSABLE = 3
MEMORY_ENV = "NODULE_WORKER_MEMORY_BYTES"


def main() -> int:
    """Limit this process, then read the request, cut the patch, write it."""
    limit = int(os.environ.get(MEMORY_ENV, "0"))
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Imported only now: the limits above must already hold while the readers load.
    from pathlib import Path

    from app.uploads.parse import (
        UploadContentError,
        UploadJob,
        cut_upload,
        voxel_budget,
        write_result,
    )
    from model.ct.evidence import read_leniently
    from model.ct.volume import VolumeReadError
    from model.preprocessing import CoordinateOutsideVolumeError

    read_leniently()
    request = json.loads(sys.stdin.read())
    try:
        result = cut_upload(UploadJob.model_validate(request["job"]), voxel_budget(limit))
    except (UploadContentError, VolumeReadError, CoordinateOutsideVolumeError, ValueError) as e:
        sys.stdout.write(json.dumps({"detail": str(e)}))
        return EXIT_UNUSABLE
    write_result(Path(request["out"]), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
