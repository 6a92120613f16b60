"""Make the embedded sample volume `nnmamba/data/sample_brain_mr.nrrd` (how it was made).

Source: the pyradiomics 3.0.1 source archive (BSD-3-Clause), file `data/brain1_image.nrrd`: a real
brain MR of one subject, 256 x 256 x 25 voxels of 0.78 x 0.78 x 6.5 mm. The file is copied byte for
byte (it is already gzip-compressed NRRD, 2.0 MB) after checking its checksum and header.

    .venv/bin/python -m pip download --no-deps --no-build-isolation --no-binary pyradiomics \
        pyradiomics==3.0.1 -d /tmp/pyradiomics
    tar -xzf /tmp/pyradiomics/pyradiomics-3.0.1.tar.gz -C /tmp/pyradiomics
    .venv/bin/python scripts/prepare_sample.py /tmp/pyradiomics/pyradiomics-3.0.1
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import SimpleITK as sitk

SOURCE_FILE = "data/brain1_image.nrrd"
SOURCE_SHA256 = "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf"
TARGET = Path(__file__).resolve().parent.parent / "nnmamba" / "data" / "sample_brain_mr.nrrd"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyradiomics_source", type=Path, help="unpacked pyradiomics-3.0.1 source folder")
    args = parser.parse_args(argv)
    source = args.pyradiomics_source / SOURCE_FILE
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"{source} has sha256 {digest}, expected {SOURCE_SHA256}: not the pyradiomics 3.0.1 file",
              file=sys.stderr)
        return 1
    image = sitk.ReadImage(str(source))
    if image.GetSize() != (256, 256, 25) or image.GetDimension() != 3:
        print(f"unexpected image size {image.GetSize()}", file=sys.stderr)
        return 1
    shutil.copyfile(source, TARGET)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
