"""Python packages the detection needs inside 3D Slicer, and installing them on first use.

The single place that declares which Slicer the extension supports: the top-level
CMakeLists.txt reads MINIMUM_SLICER_VERSION from this file (and refuses older Slicer
builds), the README states it, and the module checks the running Python against
SLICER_PYTHON_VERSION; Testing/unit/slicer/test_slicer_dependencies.py keeps them in agreement.

Why Slicer 5.10: the pinned packages need Python >= 3.10 (monai 1.6.1) or
>= 3.11 (matplotlib 3.11.2, and the scipy releases that build for current numpy), while
Slicer up to 5.8 ships Python 3.9. Slicer 5.10 is the first release with Python 3.12.

Pure Python (no slicer, no Qt, never torch): installer.DependencyInstall runs the commands
built here in child processes, so the install never blocks Slicer's window.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

MINIMUM_SLICER_VERSION = "5.10"
SLICER_PYTHON_VERSION = "3.12"  # the Python that Slicer MINIMUM_SLICER_VERSION ships

# monai 1.6.1 requires torch >= 2.8. torch is installed with light-the-torch (what the
# PyTorch extension uses too), which picks the CUDA or CPU build for this machine's driver;
# torch alone, no torchvision: the module does not use it.
TORCH_REQUIREMENT = ">=2.8"
TORCH_MINIMUM = (2, 8)
LIGHT_THE_TORCH = "light-the-torch==0.8.1"

# Import name -> pip requirement, what the core imports when it runs in PythonSlicer
# (the same pins as pyproject.toml). numpy and SimpleITK ship with Slicer; scipy too in
# current releases, listed so that a build without it still works.
RUNTIME_REQUIREMENTS = {
    "monai": "monai==1.6.1",
    "matplotlib": "matplotlib==3.11.2",
    "slicerio": "slicerio==1.4.0",
    "tqdm": "tqdm==4.70.1",
    "yaml": "pyyaml==6.0.3",
    "scipy": "scipy==1.17.1",
    "SimpleITK": "SimpleITK==2.5.7",
}

# Distributions that Slicer or the PyTorch extension installed and that pip must not replace
# while installing the rest (a CPU torch from the registry over the extension's CUDA build,
# or a numpy/SimpleITK that Slicer's own modules were not built against).
PROTECTED_DISTRIBUTIONS = ("torch", "numpy", "SimpleITK")

TORCH_LABEL = f"torch{TORCH_REQUIREMENT} (the build for this computer's GPU, or the CPU build)"
TORCH_UPGRADE_LABEL = (f"torch{TORCH_REQUIREMENT}, replacing the installed PyTorch {{version}}: other extensions "
                       "that use PyTorch may rely on that version")
# pip's words when it could not reach the package index (no network, proxy, firewall).
OFFLINE_MARKERS = ("failed to establish a new connection", "temporary failure in name resolution",
                   "network is unreachable", "connection refused", "connectionerror", "read timed out",
                   "no matching distribution found", "could not find a version that satisfies")


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


def torch_label() -> str:
    """TORCH_LABEL, or the upgrade warning when an older torch is installed."""
    version = installed_version("torch")
    return TORCH_UPGRADE_LABEL.format(version=version) if version else TORCH_LABEL


def missing_requirements() -> list[str]:
    """What the running (Slicer) Python lacks, as labels for the confirmation dialog."""
    missing = [torch_label()] if torch_needs_install() else []
    missing += [req for module, req in RUNTIME_REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
    return missing


def is_torch_label(label: str) -> bool:
    return label.startswith("torch" + TORCH_REQUIREMENT)


def download_size_text(missing: list[str]) -> str:
    """An honest size estimate for the dialog (measured from the wheels on PyPI)."""
    others = [m for m in missing if not is_torch_label(m)]
    parts = []
    if any(is_torch_label(m) for m in missing):
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


def pip_command(python: str, arguments: list[str]) -> list[str]:
    """`python -m pip install ...` without pip's progress bars (their redraws are no lines)."""
    return [python, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check", *arguments]


def install_commands(missing: list[str], python: str, constraints_file: Path) -> list[tuple[str, object]]:
    """The install as (what the panel says, command factory) steps, run one after another.

    A factory is called when its step starts: the constraints file is written then, so it
    pins the torch the steps before installed. torch first: light-the-torch, itself
    installed if absent, picks the build for this machine; then everything else with pip,
    constrained so that torch, numpy and SimpleITK stay exactly as they are.
    """
    steps = []
    if any(is_torch_label(m) for m in missing):
        if importlib.util.find_spec("light_the_torch") is None:
            steps.append(("Installing light-the-torch (chooses the PyTorch build)",
                          lambda: pip_command(python, [LIGHT_THE_TORCH])))
        steps.append(("Installing PyTorch (the largest download)",
                      lambda: [python, "-m", "light_the_torch", "install", "--progress-bar", "off",
                               "torch" + TORCH_REQUIREMENT]))
    requirements = [m for m in missing if not is_torch_label(m)]
    if requirements:
        def constrained_pip():
            constraints_file.write_text(constraints_text(), encoding="utf-8")
            return pip_command(python, ["-c", str(constraints_file), *requirements])

        steps.append(("Installing " + ", ".join(requirements), constrained_pip))
    return steps


def looks_offline(output: str) -> bool:
    lowered = output.lower()
    return any(marker in lowered for marker in OFFLINE_MARKERS)


def failure_message(missing: list[str], output: str, exit_code: int | None) -> str:
    """What the user reads when the install failed: for no network, what could not be
    downloaded and how to install it without a network; otherwise pip's last words."""
    if looks_offline(output):
        requirements = " ".join(f'"{m}"' for m in missing if not is_torch_label(m))
        torch = f' "torch{TORCH_REQUIREMENT}"' if any(is_torch_label(m) for m in missing) else ""
        return ("The packages could not be downloaded (no connection to the package index):\n  "
                + "\n  ".join(missing)
                + "\n\nTo install them without a network here: on a computer with internet and the same "
                  "operating system, run\n  python -m pip download --python-version "
                + SLICER_PYTHON_VERSION + " --only-binary=:all: -d uadc-packages" + torch + " " + requirements
                + "\ncopy the uadc-packages folder to this computer and run, in Slicer's folder,\n"
                  "  PythonSlicer -m pip install --no-index --find-links uadc-packages" + torch + " " + requirements
                + "\nthen restart Slicer.")
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return ("Installing the packages failed" + (f" (exit code {exit_code})" if exit_code else "") + ":\n"
            + "\n".join(lines[-5:]))
