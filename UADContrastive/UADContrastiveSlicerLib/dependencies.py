"""Python packages the detection needs inside 3D Slicer, and installing them on first use.

The single place that declares which Slicer the extension supports: the top-level
CMakeLists.txt reads MINIMUM_SLICER_VERSION from this file (and refuses older Slicer
builds), the README states it, and the module checks the running Python against
SLICER_PYTHON_VERSION; Testing/unit/test_slicer_dependencies.py keeps them in agreement.

Why Slicer 5.10: the pinned packages need Python >= 3.10 (monai 1.6.1) or
>= 3.11 (matplotlib 3.11.2, and the scipy releases that build for current numpy), while
Slicer up to 5.8 ships Python 3.9. Slicer 5.10 is the first release with Python 3.12.

Pure Python: `slicer` and PyTorchUtils are imported only inside install(); importing this
module never imports torch.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tempfile
from pathlib import Path

MINIMUM_SLICER_VERSION = "5.10"
SLICER_PYTHON_VERSION = "3.12"  # the Python that Slicer MINIMUM_SLICER_VERSION ships

# monai 1.6.1 requires torch >= 2.8. Passed to the PyTorch extension's installTorch(), which
# then picks the build matching the user's GPU (pip alone would take the registry's build).
TORCH_REQUIREMENT = ">=2.8"
TORCH_MINIMUM = (2, 8)

# Import name -> pip requirement, what the core imports when it runs in PythonSlicer
# (the same pins as pyproject.toml). numpy and SimpleITK ship with Slicer; scipy too in
# current releases, listed so that a build without it still works.
RUNTIME_REQUIREMENTS = {
    "monai": "monai==1.6.1",
    "matplotlib": "matplotlib==3.11.2",
    "slicerio": "slicerio==1.4.0",
    "tqdm": "tqdm==4.70.1",
    "yaml": "pyyaml==6.0.3",
    "scipy": "scipy>=1.10",
    "SimpleITK": "SimpleITK==2.5.7",
}

# Distributions that Slicer or the PyTorch extension installed and that pip must not replace
# while installing the rest (a CPU torch from the registry over the extension's CUDA build,
# or a numpy/SimpleITK that Slicer's own modules were not built against).
PROTECTED_DISTRIBUTIONS = ("torch", "numpy", "SimpleITK")

TORCH_LABEL = f"torch{TORCH_REQUIREMENT} (through the PyTorch extension)"


def version_tuple(text: str) -> tuple:
    """(2, 8, 0) from '2.8.0+cu128'; non-numeric parts end the tuple."""
    numbers = []
    for part in re.split(r"[.+-]", text):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_needs_install() -> bool:
    """torch absent, or older than monai accepts (read from metadata: no import)."""
    version = installed_version("torch")
    return version is None or version_tuple(version) < TORCH_MINIMUM


def missing_requirements() -> list[str]:
    """What the running (Slicer) Python lacks, as labels for the confirmation dialog."""
    missing = [TORCH_LABEL] if torch_needs_install() else []
    missing += [req for module, req in RUNTIME_REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
    return missing


def download_size_text(missing: list[str]) -> str:
    """An honest size estimate for the dialog (measured from the wheels on PyPI)."""
    others = [m for m in missing if m != TORCH_LABEL]
    parts = []
    if TORCH_LABEL in missing:
        parts.append("PyTorch: 2 to 4 GB with GPU (CUDA) support, about 200 MB for the CPU-only build")
    if others:
        parts.append("the other packages: up to about 60 MB")
    return "; ".join(parts)


def constraints_text() -> str:
    """pip constraints pinning the protected distributions to what is installed now."""
    lines = []
    for distribution in PROTECTED_DISTRIBUTIONS:
        version = installed_version(distribution)
        if version:
            lines.append(f"{distribution}=={version}")
    return "\n".join(lines) + "\n"


def pip_arguments(missing: list[str], constraints_file: Path) -> list[str]:
    """Arguments for slicer.util.pip_install (it runs `pip install <arguments>`)."""
    requirements = [m for m in missing if m != TORCH_LABEL]
    return ["-c", str(constraints_file), *requirements] if requirements else []


def install(missing: list[str]) -> None:
    """Install `missing` (from missing_requirements) into Slicer's Python.

    torch first, through the PyTorch extension (it chooses the CUDA or CPU build for this
    machine), with monai's version requirement; then everything else with pip, constrained
    so that torch, numpy and SimpleITK stay exactly as they are.
    """
    import slicer  # only inside Slicer

    if TORCH_LABEL in missing:
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError(
                "PyTorch is missing and the PyTorch extension is not installed. Install 'PyTorch' "
                "from the Extensions Manager, restart Slicer, and try again.") from error
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
        if torch is None:
            raise RuntimeError("The PyTorch extension did not install PyTorch.")
    with tempfile.TemporaryDirectory(prefix="uadc-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(constraints_text(), encoding="utf-8")
        arguments = pip_arguments(missing, constraints)
        if arguments:
            slicer.util.pip_install(arguments)
