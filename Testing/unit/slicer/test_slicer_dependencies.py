"""What the extension installs into Slicer: which files land in the scripted-modules folder,
which Slicer (and so which Python) it declares, and whether the pinned packages install
there. Checked against Slicer's own sources in ../shared/slicer-reference where they decide.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE_DIR = REPO / "UADContrastive"
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(REPO / "Testing"))

import slicer_standins as standins  # noqa: E402
from UADContrastiveSlicerLib import dependencies, process  # noqa: E402

# The Python each Slicer release ships (Slicer's top-level CMakeLists at those tags; see
# ../shared/slicer-reference/README.md).
SLICER_PYTHON = {"5.8": "3.9", "5.10": "3.12"}


# ----------------------------------------------------------------------------- scripted modules
def cmake_text() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")


def python_files_installed_into_scripted_modules_folder() -> list[str]:
    """Every .py the module's CMake puts directly into qt-scripted-modules/: the top-level
    entries of MODULE_PYTHON_SCRIPTS (slicerMacroBuildScriptedModule copies them there,
    keeping sub-folders) and anything configured/installed there by hand."""
    text = cmake_text()
    scripts = re.search(r"set\(MODULE_PYTHON_SCRIPTS\s+(.*?)\)", text, re.S).group(1).split()
    files = [s for s in scripts if "/" not in s]
    for block in re.findall(r"(?:configure_file|install)\((.*?)\)", text, re.S):
        if "QTSCRIPTEDMODULES_LIB_DIR" in block:
            files += [Path(token).name for token in block.split() if token.endswith(".py")]
    return files


def defines_scripted_module(path: Path) -> bool:
    """What Slicer needs to load a .py of that folder: a class named like the file,
    derived from ScriptedLoadableModule."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == path.stem:
            return any(getattr(base, "id", getattr(base, "attr", None)) == "ScriptedLoadableModule"
                       for base in node.bases)
    return False


def test_slicer_loads_every_py_file_of_the_scripted_modules_folder_as_a_module():
    """Premise, from Slicer's own factory: any *.py in the folder is taken as a module."""
    standins.require_reference()
    source = (standins.REFERENCE / "Base" / "QTGUI" / "qSlicerScriptedLoadableModuleFactory.cxx").read_text()
    valid = source[source.index("::isValidFile"):source.index("::createFactoryFileBasedItem")]
    assert 'file.suffix().compare("py", Qt::CaseInsensitive) == 0' in valid


def test_every_py_installed_into_the_scripted_modules_folder_is_a_module():
    installed = python_files_installed_into_scripted_modules_folder()
    assert "UADContrastive.py" in installed
    not_modules = [name for name in installed
                   if not (MODULE_DIR / name).is_file() or not defines_scripted_module(MODULE_DIR / name)]
    assert not not_modules, f"Slicer would try to load these as modules at every start-up: {not_modules}"


def test_the_module_folder_itself_holds_only_the_module_file():
    """Used as an additional module path in development: the same rule applies."""
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["UADContrastive.py"]


# ----------------------------------------------------------------------------- minimum Slicer
def test_minimum_slicer_version_is_declared_once_and_agreed():
    version = dependencies.MINIMUM_SLICER_VERSION
    assert SLICER_PYTHON[version] == dependencies.SLICER_PYTHON_VERSION
    manifest = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    # The manifest reads the value from dependencies.py (no second copy to drift).
    assert "UADContrastiveSlicerLib/dependencies.py" in manifest
    assert 'REGEX "^MINIMUM_SLICER_VERSION = "' in manifest
    assert re.search(r"^MINIMUM_SLICER_VERSION = \"\d+\.\d+\"$",
                     (MODULE_DIR / "UADContrastiveSlicerLib" / "dependencies.py").read_text(), re.M)
    assert "${UADContrastive_MINIMUM_SLICER_VERSION}" in manifest.split("EXTENSION_DESCRIPTION")[1].split("\n")[0]
    assert "FATAL_ERROR" in manifest and "VERSION_LESS" in manifest
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"3D Slicer {version} or newer" in readme


def test_runtime_requirements_are_pinned_like_pyproject_and_need_nothing_unused():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for requirement in dependencies.RUNTIME_REQUIREMENTS.values():
        assert f'"{requirement}"' in pyproject, requirement
    assert "skimage" not in dependencies.RUNTIME_REQUIREMENTS  # imported nowhere in the core
    core = MODULE_DIR / "UADContrastiveLib"
    for module in dependencies.RUNTIME_REQUIREMENTS:
        used = any(re.search(rf"^\s*(import|from) {module}\b", p.read_text(encoding="utf-8"), re.M)
                   for p in core.rglob("*.py"))
        assert used, f"{module} is installed into Slicer but the core never imports it"


def test_torch_requirement_is_monais():
    try:
        requires = importlib.metadata.requires("monai") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("monai not installed here")
    torch = [r for r in requires if re.match(r"torch\b", r) and "extra" not in r]
    assert torch and torch[0].replace(" ", "").startswith("torch" + dependencies.TORCH_REQUIREMENT)
    assert dependencies.version_tuple(dependencies.TORCH_REQUIREMENT.lstrip(">=")) == dependencies.TORCH_MINIMUM


def test_pinned_packages_accept_the_minimum_slicers_python():
    """Offline: the Requires-Python of each pinned version, from its installed metadata."""
    from packaging.specifiers import SpecifierSet

    checked = 0
    for requirement in dependencies.RUNTIME_REQUIREMENTS.values():
        name, _, version = requirement.partition("==")
        if not version:
            continue
        try:
            metadata = importlib.metadata.metadata(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if metadata["Version"] != version:
            continue
        requires_python = metadata.get("Requires-Python") or ""
        assert dependencies.SLICER_PYTHON_VERSION in SpecifierSet(requires_python), (requirement, requires_python)
        checked += 1
    assert checked >= 5


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


NETWORK_TESTS_VARIABLE = "UADC_NETWORK_TESTS"


@pytest.mark.network
@pytest.mark.skipif(os.environ.get(NETWORK_TESTS_VARIABLE) != "1",
                    reason=f"asks PyPI: opt in with {NETWORK_TESTS_VARIABLE}=1")
def test_requirements_resolve_for_the_minimum_slicers_python(tmp_path):
    """Network: pip resolves every pin, torch with monai's requirement, for that Python
    (metadata only, nothing installed). Off by default; skipped when PyPI does not answer."""
    if not pypi_reachable():
        pytest.skip("PyPI not reachable")
    requirements = list(dependencies.RUNTIME_REQUIREMENTS.values()) + [
        "torch" + dependencies.TORCH_REQUIREMENT, dependencies.LIGHT_THE_TORCH]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--only-binary=:all:", "--python-version", dependencies.SLICER_PYTHON_VERSION,
         "--target", str(tmp_path / "target"), *requirements],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


# ----------------------------------------------------------------------------- installing
def test_install_asks_only_for_torch_and_protects_slicers_packages(monkeypatch, tmp_path):
    """torch alone (no torchvision), through light-the-torch; the rest with pip, constrained
    to the torch, numpy and SimpleITK installed when that step starts."""
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(dependencies, "installed_version", {}.get)  # before: no torch yet
    constraints = tmp_path / "constraints.txt"
    steps = dependencies.install_commands([dependencies.TORCH_LABEL, "monai==1.6.1", "tqdm==4.70.1"],
                                          "PY", constraints)
    commands = [make() for _label, make in steps[:2]]
    monkeypatch.setattr(dependencies, "installed_version",  # torch is in when the last step starts
                        {"torch": "2.9.0+cu128", "numpy": "2.1.3", "SimpleITK": "2.4.1"}.get)
    commands.append(steps[2][1]())
    assert commands[0] == ["PY", "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check",
                           dependencies.LIGHT_THE_TORCH]
    assert commands[1] == ["PY", "-m", "light_the_torch", "install", "--progress-bar", "off",
                           "torch" + dependencies.TORCH_REQUIREMENT]
    assert not any("torchvision" in part for command in commands for part in command)
    assert commands[2][-4:] == ["-c", str(constraints), "monai==1.6.1", "tqdm==4.70.1"]
    assert constraints.read_text().split() == ["torch==2.9.0+cu128", "numpy==2.1.3", "SimpleITK==2.4.1"]


def test_an_installed_old_torch_is_named_with_its_version_before_it_is_replaced(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version", {"torch": "2.5.1+cu121"}.get)
    label = dependencies.missing_requirements()[0]
    assert "2.5.1+cu121" in label and "other extensions" in label and dependencies.is_torch_label(label)
    monkeypatch.setattr(dependencies, "installed_version", {}.get)
    assert dependencies.missing_requirements()[0] == dependencies.TORCH_LABEL


def test_an_offline_install_says_what_could_not_be_downloaded_and_how_to_install_offline():
    pip_output = ("WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...: "
                  "Failed to establish a new connection: [Errno -3] Temporary failure in name resolution'\n"
                  "ERROR: Could not find a version that satisfies the requirement monai==1.6.1\n")
    message = dependencies.failure_message([dependencies.TORCH_LABEL, "monai==1.6.1"], pip_output, 1)
    assert "could not be downloaded" in message and "monai==1.6.1" in message
    assert "pip download" in message and "--no-index --find-links" in message and "torch>=2.8" in message
    assert "non-zero exit status" not in message
    other = dependencies.failure_message(["monai==1.6.1"], "ERROR: disk full\n", 1)
    assert "could not be downloaded" not in other and "disk full" in other and "exit code 1" in other


def test_an_old_torch_counts_as_missing(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version", {"torch": "2.5.1+cu121"}.get)
    assert dependencies.torch_needs_install()
    monkeypatch.setattr(dependencies, "installed_version", {"torch": "2.8.0"}.get)
    assert not dependencies.torch_needs_install()


def test_the_dialog_states_gigabytes_for_a_cuda_torch():
    text = dependencies.download_size_text([dependencies.TORCH_LABEL, "monai==1.6.1"])
    assert "GB" in text and "CUDA" in text
    assert "GB" not in dependencies.download_size_text(["monai==1.6.1"])


# ----------------------------------------------------------------------------- Windows console
class FakeWindowsSubprocess:
    STARTF_USESHOWWINDOW = 1
    CREATE_NEW_PROCESS_GROUP = 0x200

    class STARTUPINFO:
        def __init__(self):
            self.dwFlags = 0
            self.wShowWindow = 1


def test_windows_child_console_is_hidden_like_slicers_launch_console_process():
    standins.require_reference()
    util = (standins.REFERENCE / "Base" / "Python" / "slicer" / "util.py").read_text()
    launch = util[util.index("def launchConsoleProcess("):util.index("def _startAsyncProcessHandling(")]
    assert "info.dwFlags = 1" in launch and "info.wShowWindow = 0" in launch  # what Slicer does

    options = process.child_process_options("nt", FakeWindowsSubprocess)
    info = options["startupinfo"]
    assert info.dwFlags & 1 and info.wShowWindow == 0
    assert options["creationflags"] & FakeWindowsSubprocess.CREATE_NEW_PROCESS_GROUP
    assert process.hidden_console_options("posix") == {}
    assert process.child_process_options("posix") == {"start_new_session": True}


def test_detection_run_starts_the_child_with_those_options(monkeypatch, tmp_path):
    seen = {}

    class Popen:
        def __init__(self, command, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop here")

    monkeypatch.setattr(process, "child_process_options", lambda: {"startupinfo": "hidden"})
    monkeypatch.setattr(process.subprocess, "Popen", Popen)
    with pytest.raises(RuntimeError, match="stop here"):
        process.DetectionRun(["x"], tmp_path).start()
    assert seen["startupinfo"] == "hidden"
