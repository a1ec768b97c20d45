"""Build the real-data corpus: arrays read from data files that ship inside PyPI packages.

Nothing here is synthetic and nothing is downloaded at run time by the packages: the builder
creates its own virtual environment (``build/corpus-env``), installs the exact versions pinned in
``benchmarks/corpus-constraints.txt`` with ``pip install --no-deps`` (the data packages only for
the files in their wheels; their code is never imported), then decodes those files with the
pinned readers (numpy, Pillow, nibabel, onnx) and caches each array as
``build/corpus/<name>.npy``, with ``build/corpus/manifest.json`` describing them (name, kind,
dtype, shape, ``package==version``, the files inside the package, sha256 of the ``.npy``).

Every source file is checked against its package's installed ``RECORD`` (path present and
sha256 equal), so it is byte for byte the file shipped in the wheel. Only arrays that are missing
(no ``.npy`` or no manifest entry) are built; ``--force`` rebuilds the ones named.

Dtypes are the data's own: images and masks are stored as bytes (uint8; the land mask is a
boolean grid, stored 0/1 as uint8), counts as int64, network weights as float32, decimal
measurements parsed from text as float64. No array is cast to another type.

Not used, on purpose (a held-out check uses them): scikit-image, pvlib, matplotlib's sample
data, sentence-transformer weights.

Usage::

    python benchmarks/corpus.py [--out build/corpus] [--env build/corpus-env] [--only NAME ...]
                                [--force] [--list]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONSTRAINTS = HERE / "corpus-constraints.txt"
DEFAULT_OUT = ROOT / "build" / "corpus"
DEFAULT_ENV = ROOT / "build" / "corpus-env"
MANIFEST = "manifest.json"
_INSTALLED = ".installed"  # in the env: the sha256 of the constraints it was installed from


@dataclass(frozen=True)
class Spec:
    """One corpus array: where it comes from and how it is read.

    ``sources`` are (distribution name pinned in the constraints file, path inside it as in its
    RECORD) pairs; ``read`` turns their absolute paths, in that order, into the array.
    """

    name: str
    kind: str
    sources: tuple[tuple[str, str], ...]
    description: str
    read: Callable[[list[Path]], object]


# -- readers (run inside the corpus environment) ------------------------------------------------


def _jpegs(paths: list[Path]):
    import numpy as np
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    width = min(im.shape[1] for im in images)
    crops = [im[:, (im.shape[1] - width) // 2 :][:, :width] for im in images]  # centred
    return np.concatenate(crops, axis=0)


def _nifti(paths: list[Path]):
    import nibabel
    import numpy as np

    img = nibabel.load(str(paths[0]))
    slope, inter = img.header.get_slope_inter()
    if slope not in (None, 1.0) or inter not in (None, 0.0):
        raise RuntimeError(f"{paths[0]}: scaled NIfTI (slope {slope}, inter {inter})")
    raw = np.asarray(img.dataobj.get_unscaled())  # (x, y, z), stored x fastest
    return np.ascontiguousarray(raw.T)  # (z, y, x): the file's own byte order


def _land_mask(paths: list[Path]):
    import numpy as np

    with np.load(paths[0]) as npz:
        mask = npz["mask"]  # bool (21600, 43200): 30 arc-second GLOBE land/sea grid
    # Every 8th row and column (4 arc-minutes): the whole globe in 14.6 MB; 0/1 bytes.
    return np.ascontiguousarray(mask[::8, ::8]).view(np.uint8)


#: finals2000A.all: 0-based byte ranges of its 17 numeric fields after the MJD (the package's
#: ReadMe.finals2000A): Bulletin A PM-x, PM-y, UT1-UTC, LOD, dX, dY with their errors, then the
#: Bulletin B PM-x, PM-y, UT1-UTC, dX, dY.
FINALS_FIELDS = (
    (18, 27), (27, 36), (37, 46), (46, 55), (58, 68), (68, 78), (79, 86), (86, 93), (97, 106),
    (106, 115), (116, 125), (125, 134), (134, 144), (144, 154), (154, 165), (165, 175),
    (175, 185),
)  # fmt: skip


def _eop(paths: list[Path]):
    """The daily series of EOP 20 C04 (16) and of finals2000A (17, the days where every
    field is filled: no predictions), one after the other."""
    import numpy as np

    c04 = np.loadtxt(paths[0], comments="#", dtype=np.float64)
    # columns: YR MM DD HH MJD, then x y UT1-UTC dX dY xrt yrt LOD and their 8 errors
    series = [c04[:, 5:].T]
    rows = []
    with open(paths[1], encoding="ascii") as fh:
        for line in fh:
            fields = [line[a:b].strip() for a, b in FINALS_FIELDS]
            if all(fields):
                rows.append([float(v) for v in fields])
    series.append(np.array(rows, dtype=np.float64).T)
    return np.concatenate([s.ravel() for s in series])


def _ts_rows(paths: list[Path]) -> list[list[float]]:
    rows = []
    for path in paths:
        in_data = False
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not in_data:
                    in_data = line.lower() == "@data"
                    continue
                if line:
                    values = line.rsplit(":", 1)[0]  # drop the class label
                    rows.append([float(v) for v in values.split(",")])
    return rows


def _ts_equal(paths: list[Path]):
    import numpy as np

    return np.array(_ts_rows(paths), dtype=np.float64)


def _ts_concat(paths: list[Path]):
    import numpy as np

    return np.concatenate([np.array(r, dtype=np.float64) for r in _ts_rows(paths)])


def _onnx_weights(paths: list[Path]):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    weights = []
    for path in paths:
        model = onnx.load(str(path))
        tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
        for node in model.graph.node:  # this exporter keeps the weights in Constant nodes
            if node.op_type == "Constant":
                tensors += [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
        weights += [t.ravel() for t in tensors if t.dtype == np.float32]
    return np.concatenate(weights)


def _columns(indices: tuple[int, ...], dtype: str):
    """One whitespace-separated column of each text file (``indices[k]`` for file k), joined."""

    def read(paths: list[Path]):
        import numpy as np

        values = []
        for path, index in zip(paths, indices, strict=True):
            with open(path, encoding="utf-8") as fh:
                values += [line.split()[index] for line in fh if line.strip()]
        return np.array(values, dtype=np.dtype(dtype))

    return read


NILEARN_DATA = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
OCR_MODEL = "rapidocr_onnxruntime/models/{}_infer.onnx"


def _sktime(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        ("sktime", f"sktime/datasets/data/{n}/{n}_{part}.ts")
        for n in names
        for part in ("TRAIN", "TEST")
    )


SPECS: tuple[Spec, ...] = (
    Spec("photos", "image",
         (("scikit-learn", "sklearn/datasets/images/china.jpg"),
          ("scikit-learn", "sklearn/datasets/images/flower.jpg"),
          ("ultralytics", "ultralytics/assets/bus.jpg"),
          ("ultralytics", "ultralytics/assets/zidane.jpg"),
          ("imgaug", "imgaug/quokka.jpg")),
         "five RGB photographs (china, flower, bus, zidane, quokka), cropped to the narrowest "
         "width (640, centred) and stacked vertically", _jpegs),
    Spec("mri_t1", "image", (("nilearn", NILEARN_DATA.format("t1")),),
         "MNI ICBM152 2009a T1 brain template, 1 mm voxels, (z, y, x)", _nifti),
    Spec("mri_gray_matter", "gridded", (("nilearn", NILEARN_DATA.format("gm")),),
         "MNI ICBM152 2009a gray-matter probability map, 1 mm voxels, (z, y, x)", _nifti),
    Spec("land_mask", "categorical",
         (("global-land-mask", "global_land_mask/globe_combined_mask_compressed.npz"),),
         "GLOBE land/sea mask of the Earth, every 8th row and column (4')", _land_mask),
    Spec("earth_rotation", "timeseries",
         (("astropy-iers-data", "astropy_iers_data/data/eopc04.1962-now"),
          ("astropy-iers-data", "astropy_iers_data/data/finals2000A.all")),
         "IERS Earth orientation: the 16 daily series of EOP 20 C04 (since 1962) and the 17 of "
         "finals2000A (since 1973; polar motion, UT1-UTC, LOD, nutation, their errors), "
         "concatenated", _eop),
    Spec("appliance_power", "timeseries", _sktime("ACSF1", "PLAID"),
         "UCR ACSF1 (day-long power consumption) and PLAID (current waveforms) series of home "
         "appliances, concatenated", _ts_concat),
    Spec("ocr_det_weights", "weights",
         (("rapidocr-onnxruntime", OCR_MODEL.format("ch_PP-OCRv4_det")),
          ("rapidocr-onnxruntime", OCR_MODEL.format("ch_ppocr_mobile_v2.0_cls"))),
         "PP-OCRv4 text-detection and PP-OCR direction-classifier networks: their float32 "
         "weights in graph order", _onnx_weights),
    Spec("ocr_rec_weights", "weights",
         (("rapidocr-onnxruntime", OCR_MODEL.format("ch_PP-OCRv4_rec")),),
         "PP-OCRv4 text-recognition network: its float32 weights in graph order", _onnx_weights),
    Spec("word_counts", "tabular",
         (("jieba", "jieba/dict.txt"),
          ("symspellpy", "symspellpy/frequency_dictionary_en_82_765.txt"),
          ("symspellpy", "symspellpy/frequency_bigramdictionary_en_243_342.txt")),
         "the count column of jieba's Chinese dictionary (349k words) and of SymSpell's English "
         "word (83k) and bigram (243k) frequency lists", _columns((1, -1, -1), "int64")),
    Spec("zh_idf", "tabular", (("jieba", "jieba/analyse/idf.txt"),),
         "jieba keyword extraction: the IDF column of 270k Chinese words",
         _columns((1,), "float64")),
)  # fmt: skip
BY_NAME = {s.name: s for s in SPECS}


# -- extraction (inside the corpus environment) ------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_file(package: str, name: str) -> tuple[str, Path]:
    """``package==version`` and the absolute path of its file ``name``, checked against the
    installed RECORD (listed there, same sha256): i.e. the very file of the wheel."""
    import base64
    from importlib import metadata

    dist = metadata.distribution(package)
    entry = {str(f): f for f in dist.files or ()}.get(name)
    if entry is None:
        raise RuntimeError(f"{package}: {name} is not in the package's RECORD")
    path = Path(entry.locate())
    if entry.hash is None or entry.hash.mode != "sha256":
        raise RuntimeError(f"{package}: {name} has no sha256 in RECORD")
    digest = base64.urlsafe_b64encode(bytes.fromhex(_sha256_file(path))).rstrip(b"=")
    if digest.decode() != entry.hash.value:
        raise RuntimeError(f"{package}: {name} differs from the file in the wheel")
    return f"{dist.metadata['Name']}=={dist.version}", path


def _write_atomic(path: Path, write: Callable[[object], None], binary: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_manifest(out: Path) -> dict[str, dict]:
    """The manifest's entries by name ({} if there is none yet)."""
    path = out / MANIFEST
    if not path.exists():
        return {}
    return {e["name"]: e for e in json.loads(path.read_text())["arrays"]}


def save_manifest(out: Path, entries: dict[str, dict]) -> None:
    order = [s.name for s in SPECS if s.name in entries]
    doc = {"format": 1, "arrays": [entries[n] for n in order]}
    _write_atomic(out / MANIFEST, lambda fh: json.dump(doc, fh, indent=1), binary=False)


def extract(names: list[str], out: Path) -> None:
    """Build the named arrays into ``out`` (run with the corpus environment's Python)."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    entries = load_manifest(out)
    for name in names:
        spec = BY_NAME[name]
        shipped = [shipped_file(pkg, name) for pkg, name in spec.sources]
        arr = np.ascontiguousarray(spec.read([path for _, path in shipped]))
        target = out / f"{name}.npy"
        _write_atomic(target, lambda fh, a=arr: np.save(fh, a))
        entries[name] = {
            "name": name,
            "kind": spec.kind,
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "nbytes": int(arr.nbytes),
            "packages": sorted({pinned for pinned, _ in shipped}),
            "sources": [
                {"package": pinned, "file": name}
                for (pinned, _), (_, name) in zip(shipped, spec.sources, strict=True)
            ],
            "description": spec.description,
            "sha256": _sha256_file(target),
        }
        save_manifest(out, entries)
        print(f"{name:18s} {arr.dtype!s:8s} {arr.shape!s:22s} {arr.nbytes / 1e6:7.2f} MB")


# -- driver (any Python) ------------------------------------------------------------------------


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_env(env: Path) -> Path:
    """Create ``env`` and install the pinned packages, unless it already holds them."""
    want = _sha256_file(CONSTRAINTS)
    marker = env / _INSTALLED
    if marker.exists() and marker.read_text().strip() == want:
        return env_python(env)
    if not env_python(env).exists():
        print(f"creating {env}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(env)
    cmd = [str(env_python(env)), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*cmd, "--requirement", str(CONSTRAINTS)], check=True)
    marker.write_text(want + "\n")
    return env_python(env)


def missing(out: Path, names: list[str]) -> list[str]:
    """Names whose ``.npy`` or manifest entry is absent, whose ``.npy`` changed, or whose
    source files are not the ones the spec lists now."""
    entries = load_manifest(out)
    todo = []
    for name in names:
        npy = out / f"{name}.npy"
        entry = entries.get(name)
        files = [f for _, f in BY_NAME[name].sources]
        if (
            entry is None
            or [s["file"] for s in entry["sources"]] != files
            or not npy.exists()
            or entry["sha256"] != _sha256_file(npy)
        ):
            todo.append(name)
    return todo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus directory (build/corpus)")
    p.add_argument("--env", type=Path, default=DEFAULT_ENV, help="its virtual environment")
    p.add_argument("--only", nargs="+", choices=sorted(BY_NAME), help="build only these arrays")
    p.add_argument("--force", action="store_true", help="rebuild the arrays even if cached")
    p.add_argument("--list", action="store_true", help="print the manifest as a table and exit")
    p.add_argument("--extract", action="store_true", help=argparse.SUPPRESS)  # inside the env
    args = p.parse_args(argv)
    out = args.out.resolve()
    names = args.only or [s.name for s in SPECS]
    if args.extract:
        extract(names, out)
        return 0
    if args.list:
        print(format_table(load_manifest(out)))
        return 0
    todo = names if args.force else missing(out, names)
    if todo:
        python = ensure_env(args.env.resolve())
        cmd = [str(python), str(Path(__file__).resolve()), "--extract", "--out", str(out)]
        subprocess.run([*cmd, "--only", *todo], check=True)
    else:
        print(f"{out}: all {len(names)} arrays cached", file=sys.stderr)
    print(format_table(load_manifest(out)))
    return 0


def format_table(entries: dict[str, dict]) -> str:
    """The corpus as a Markdown table (name, kind, dtype, shape, MB, source)."""
    lines = [
        "| name | kind | dtype | shape | MB | source |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for e in entries.values():
        shape = "x".join(str(n) for n in e["shape"])
        lines.append(
            f"| {e['name']} | {e['kind']} | {e['dtype']} | {shape} | {e['nbytes'] / 1e6:.2f} "
            f"| {', '.join(e['packages'])}: {', '.join(s['file'] for s in e['sources'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
