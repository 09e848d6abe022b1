"""Static checks of the Slicer module: what cannot run here (no Qt, no Slicer app) is
at least checked for consistency: .ui <-> code, parameter node <-> .ui, CMake listing
<-> files on disk, and no heavy imports when Slicer loads the module."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE_DIR = REPO / "UADContrastive"
MODULE_FILE = MODULE_DIR / "UADContrastive.py"
SLICER_LIB = MODULE_DIR / "UADContrastiveSlicerLib"
WIDGET_FILE = SLICER_LIB / "detection_widget.py"
PARAMETER_NODE_FILE = SLICER_LIB / "parameter_node.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "UADContrastive.ui"
CMAKE_FILE = MODULE_DIR / "CMakeLists.txt"
HEAVY_MODULES = ("torch", "monai", "UADContrastiveLib.engines", "UADContrastiveLib.training")


def ui_widgets() -> dict[str, ET.Element]:
    """Widgets and layouts of the .ui by name (the code reaches both through self.ui)."""
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in [*root.iter("widget"), *root.iter("layout")]}


def module_tree(path: Path = MODULE_FILE) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def string_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {MODULE_FILE.name}")


def parameter_fields() -> dict[str, str]:
    """Annotated fields of UADContrastiveParameterNode: name -> annotation source."""
    for node in module_tree(PARAMETER_NODE_FILE).body:
        if isinstance(node, ast.ClassDef) and node.name == "UADContrastiveParameterNode":
            return {item.target.id: ast.unparse(item.annotation)
                    for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError("UADContrastiveParameterNode not found")


# ----------------------------------------------------------------------------- .ui
def test_ui_parses_and_its_top_widget_is_a_mrml_widget():
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "UADContrastive"


def test_every_ui_widget_used_by_the_code_exists():
    source = WIDGET_FILE.read_text(encoding="utf-8")
    used = set(re.findall(r"\bui\.(\w+)", source))
    missing = sorted(used - set(ui_widgets()))
    assert not missing, f"used in {WIDGET_FILE.name} but absent from the .ui: {missing}"
    assert len(used) > 12  # the regex really found the widgets


def test_preset_buttons_are_built_from_the_one_preset_list():
    """The .ui holds no preset button of its own: the widget adds one per entry of the core's
    HEALTHY_FPR_PRESETS into presetsLayout, so buttons, card keys and calibration cannot drift."""
    sys.path.insert(0, str(MODULE_DIR))
    from UADContrastiveLib.postprocess.presets import DEFAULT_PRESET, HEALTHY_FPR_PRESETS
    from UADContrastiveSlicerLib import options

    layout = next(layout for layout in ET.parse(UI_FILE).getroot().iter("layout")
                  if layout.get("name") == "presetsLayout")
    assert [w.get("name") for w in layout.iter("widget")] == [], "preset buttons hard-coded in the .ui"
    source = WIDGET_FILE.read_text(encoding="utf-8")
    assert re.search(r"for preset in options\.HEALTHY_FPR_PRESETS:", source)
    assert "ui.presetsLayout.addWidget(button)" in source
    assert options.HEALTHY_FPR_PRESETS is HEALTHY_FPR_PRESETS
    assert DEFAULT_PRESET in {p.key for p in HEALTHY_FPR_PRESETS}
    card = {"thresholds": {"values": {p.key: float(i) for i, p in enumerate(HEALTHY_FPR_PRESETS)}}}
    assert options.threshold_presets(card) == [(p.label, float(i)) for i, p in enumerate(HEALTHY_FPR_PRESETS)]


def test_custom_widget_classes_are_declared():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in used if c.startswith(("ctk", "qMRML"))}
    assert custom <= declared, f"undeclared custom widgets: {custom - declared}"


def test_slicer_parameter_names_match_the_parameter_node_and_widget_types():
    fields = parameter_fields()
    expected_widget = {"float": "ctkSliderWidget"}
    # Slicer binds a float to a slider only with a range: Annotated[float, WithinRange(...)]
    fields = {name: ("float" if a.startswith("Annotated[float, WithinRange(") else a) for name, a in fields.items()}
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = (name, widget.get("class"))
    assert set(bound) <= set(fields), f"bound to unknown parameters: {set(bound) - set(fields)}"
    for parameter, (widget_name, widget_class) in bound.items():
        annotation = fields[parameter]
        wanted = expected_widget.get(annotation, "qMRMLNodeComboBox" if annotation.startswith("vtkMRML") else None)
        assert widget_class == wanted, f"{parameter} ({annotation}) is bound to {widget_name}, a {widget_class}"
    node_fields = {n for n, a in fields.items() if a.startswith("vtkMRML")}
    assert node_fields <= set(bound), f"node parameters without a selector: {node_fields - set(bound)}"
    for name in ("threshold", "minSizeMm3", "opacity"):
        assert name in bound


def test_every_node_selector_receives_the_scene():
    root = ET.parse(UI_FILE).getroot()
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors and selectors <= receivers, f"selectors without a scene: {selectors - receivers}"


def test_module_metadata_has_category_and_citation():
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert re.search(r'categories = \[translate\("qSlicerAbstractCoreModule", "Segmentation"\)\]', source)
    assert "Patrício" in source and "2025" in source
    assert "acknowledgementText" in source
    tree = module_tree()
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    imported = {alias.asname or alias.name for n in tree.body if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert {"UADContrastive", "UADContrastiveWidget", "UADContrastiveLogic", "UADContrastiveTest"} <= classes
    assert "UADContrastiveParameterNode" in imported  # Slicer finds it where the logic uses it


def test_the_module_file_is_thin_and_the_lib_has_one_class_a_file():
    """The module file keeps what Slicer needs (metadata, thin widget and logic, self-test);
    the panel, the logic and the parameter node live in UADContrastiveSlicerLib."""
    assert len(MODULE_FILE.read_text(encoding="utf-8").splitlines()) <= 200
    for name in ("detection_widget", "detection_logic", "parameter_node", "logic_protocol", "device_probe",
                 "installer"):
        classes = [n.name for n in module_tree(SLICER_LIB / f"{name}.py").body if isinstance(n, ast.ClassDef)]
        assert len(classes) == 1, (name, classes)
    widget_source = WIDGET_FILE.read_text(encoding="utf-8")
    assert "logic: DetectionLogicProtocol" in widget_source  # injected, behind the Protocol


def test_module_file_imports_nothing_heavy_at_load_time():
    """Top-level imports only: torch/MONAI/numpy/SimpleITK belong inside functions."""
    allowed_roots = {"pathlib", "typing", "qt", "ctk", "slicer", "vtk", "UADContrastiveSlicerLib"}
    roots = set()
    for node in module_tree().body:
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots <= allowed_roots, f"unexpected top-level imports: {roots - allowed_roots}"


# ----------------------------------------------------------------------------- CMake
def cmake_list(variable: str) -> list[str]:
    text = CMAKE_FILE.read_text(encoding="utf-8")
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set in {CMAKE_FILE}"
    return match.group(1).split()


def files_on_disk(folder: Path) -> list[str]:
    return sorted(p.relative_to(MODULE_DIR).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and not p.name.startswith(".") and p.suffix != ".pyc")


def test_cmake_lists_every_python_file_and_resource():
    scripts, resources = set(cmake_list("MODULE_PYTHON_SCRIPTS")), set(cmake_list("MODULE_PYTHON_RESOURCES"))
    packaged = (files_on_disk(MODULE_DIR / "UADContrastiveLib") + files_on_disk(MODULE_DIR / "UADContrastiveSlicerLib")
                + ["UADContrastive.py"])
    expected_scripts = {f for f in packaged if f.endswith(".py")}
    expected_resources = {f for f in packaged if not f.endswith(".py")} | set(files_on_disk(MODULE_DIR / "Resources"))
    missing = sorted((expected_scripts - scripts) | (expected_resources - resources))
    stale = sorted((scripts | resources) - expected_scripts - expected_resources)
    assert not missing, "add to UADContrastive/CMakeLists.txt:\n  " + "\n  ".join(missing)
    assert not stale, "listed in UADContrastive/CMakeLists.txt but not on disk:\n  " + "\n  ".join(stale)
    assert "Resources/UI/UADContrastive.ui" in resources and "Resources/Icons/UADContrastive.png" in resources


def test_cmake_builds_the_scripted_module_with_its_lists():
    text = CMAKE_FILE.read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text
    assert "SCRIPTS ${MODULE_PYTHON_SCRIPTS}" in text and "RESOURCES ${MODULE_PYTHON_RESOURCES}" in text
    assert "file(GLOB" not in text


def test_icons_are_128_pixel_pngs():
    pil = pytest.importorskip("PIL.Image")
    for path in (MODULE_DIR / "Resources" / "Icons" / "UADContrastive.png", REPO / "Resources" / "UADContrastive.png"):
        with pil.open(path) as image:
            assert image.format == "PNG" and image.size == (128, 128), path


# ----------------------------------------------------------------------------- imports
def imported_heavy_modules(code: str, watched: tuple = HEAVY_MODULES) -> dict:
    """Run `code` in a fresh interpreter; report which of the `watched` modules it pulled in."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{m: m in sys.modules for m in {watched!r}}}))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(MODULE_DIR), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pure_helpers_do_not_import_torch():
    loaded = imported_heavy_modules("""
        from UADContrastiveSlicerLib import options, process
        options.threshold_presets({"thresholds_available": {"fpr_1%": 1.0}})
        process.parse_progress_line('{"stage": "x", "fraction": 0.1}')
    """)
    assert not any(loaded.values()), loaded


def test_mrml_helpers_do_not_import_torch():
    pytest.importorskip("slicer")
    loaded = imported_heavy_modules("""
        from UADContrastiveSlicerLib import geometry, scene, segments
    """)
    assert not any(loaded.values()), loaded


def test_heavy_import_probe_is_not_vacuous():
    """The probe sees an import made by the probed code (a cheap one: torch takes seconds)."""
    assert imported_heavy_modules("import xml.dom.minidom", watched=("xml.dom.minidom",))["xml.dom.minidom"]
    assert not imported_heavy_modules("pass", watched=("xml.dom.minidom",))["xml.dom.minidom"]


def test_module_file_loads_without_heavy_imports():
    """Execute UADContrastive.py itself. Qt and Slicer's application-only Python modules do
    not exist outside Slicer, so only those are replaced by inert stand-ins; MRML classes
    come from the real slicer-core wheel."""
    pytest.importorskip("slicer")
    loaded = imported_heavy_modules(f"""
        import sys, types
        import slicer, slicer.util
        def stub(name, **attrs):
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
            return module
        class Base:
            def __init__(self, *args, **kwargs):
                pass
        stub("qt", QTimer=type("QTimer", (), {{"__init__": lambda self: None}}))
        stub("ctk")
        stub("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
        stub("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
             WithinRange=lambda low, high: ("WithinRange", low, high))
        stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleLogic=Base,
             ScriptedLoadableModuleTest=Base, ScriptedLoadableModuleWidget=Base)
        import importlib.util
        spec = importlib.util.spec_from_file_location("UADContrastive", {str(MODULE_FILE)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        import typing
        threshold = module.UADContrastiveParameterNode.__annotations__["threshold"]
        assert typing.get_args(threshold)[0] is float
    """)
    assert not any(loaded.values()), loaded


def test_extension_metadata_urls_are_files_of_this_repository():
    """The Extensions Index refuses empty or placeholder URLs: the icon and screenshot URLs
    name files that exist here, and the README says where the home page is."""
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    variables = dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', text))

    def expand(value):
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], value)

    files_url = expand(variables["EXTENSION_FILES_URL"])
    assert files_url.startswith("https://raw.githubusercontent.com/")
    for name in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        url = expand(variables[name])
        assert url.startswith(files_url + "/"), (name, url)
        assert (REPO / url[len(files_url) + 1:]).is_file(), (name, url)
    homepage = expand(variables["EXTENSION_HOMEPAGE"])
    assert homepage.startswith("https://github.com/") and "placeholder" not in homepage
    assert variables["EXTENSION_REPOSITORY"] in (REPO / "README.md").read_text(encoding="utf-8")
    assert "![Overview](Resources/Screenshot.png)" in (REPO / "README.md").read_text(encoding="utf-8")
