"""Stand-ins for the parts of 3D Slicer that cannot be installed here, so that Slicer's
REAL Python code (the parameterNodeWrapper package, ScriptedLoadableModule, slicer.i18n,
kept in ../shared/slicer-reference) and the module itself can run in a test.

What is real: Slicer's Python sources from the reference folder, and every MRML class
(scene, nodes, segmentations: the slicer-core wheel). What is a stand-in: the Qt/CTK/qMRML
widgets (`qt`, `ctk`, `slicer.q*`) and `slicer.app`. The widgets mimic only what the code
under test touches, and the behaviour that matters for these tests is the real one:
a ctkSliderWidget clamps its value to [minimum, maximum] and rounds it to `decimals`, and
emits valueChanged whenever its value changes (also when a new range clamps it).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("UADC_SLICER_REFERENCE",
                                Path(__file__).resolve().parents[2] / "shared" / "slicer-reference"))
REFERENCE_PYTHON = REFERENCE / "Base" / "Python" / "slicer"


def require_reference() -> Path:
    """Skip (fail under CI) when ../shared/slicer-reference is absent, like shared_data."""
    if not (REFERENCE_PYTHON / "parameterNodeWrapper" / "wrapper.py").is_file():
        message = f"Slicer reference sources not found at {REFERENCE} (set UADC_SLICER_REFERENCE)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the tests against Slicer's real code")
        pytest.skip(message)
    return REFERENCE


# ----------------------------------------------------------------------------- Qt basics
class Signal:
    def __init__(self):
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self._slots.clear()
        elif slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args):
        for slot in list(self._slots):
            _call_like_pythonqt(slot, args)


def _call_like_pythonqt(slot, args):
    """PythonQt passes a slot only as many signal arguments as it takes (the real
    GuiConnector.changed() takes none although valueChanged(double) carries one)."""
    try:
        parameters = list(inspect.signature(slot).parameters.values())
    except (TypeError, ValueError):
        return slot(*args)
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return slot(*args)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return slot(*args[:len(positional)])


class QObject:
    SIGNALS: tuple = ()

    def __init__(self, parent=None):
        self._properties = {}
        self._children = []
        self._parent = parent
        self._blocked = False
        for name in self._all_signals():
            setattr(self, name, Signal())
        if parent is not None:
            parent._children.append(self)

    @classmethod
    def _all_signals(cls):
        names = []
        for klass in reversed(cls.__mro__):
            names += list(getattr(klass, "SIGNALS", ()))
        return names

    def _emit(self, name, *args):
        if not self._blocked:
            getattr(self, name).emit(*args)

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def parent(self):
        return self._parent

    def blockSignals(self, block):
        previous, self._blocked = self._blocked, bool(block)
        return previous

    def connect(self, signature, slot):
        """Old-style PythonQt connection: widget.connect("clicked(bool)", slot)."""
        getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot):
        """Old-style PythonQt disconnection (ScriptedLoadableModuleWidget does it once unloaded)."""
        getattr(self, signature.split("(")[0]).disconnect(slot)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.text = ""

    def isWidgetType(self):
        return True

    def setEnabled(self, enabled):
        self.enabled = bool(enabled)

    def setVisible(self, visible):
        self.visible = bool(visible)

    def setToolTip(self, text):
        self.toolTip = text

    def setMRMLScene(self, scene):
        self.mrmlScene = scene


class QLabel(QWidget):
    pass


class QPushButton(QWidget):
    SIGNALS = ("clicked", "toggled")

    def __init__(self, text_or_parent=None, parent=None):
        # like Qt: QPushButton(parent) or QPushButton(text, parent)
        text = text_or_parent if isinstance(text_or_parent, str) else ""
        super().__init__(parent if isinstance(text_or_parent, str) else text_or_parent)
        self.text = text
        self.checkable = False
        self.checked = False

    def click(self):
        self._emit("clicked", False)


class QCheckBox(QPushButton):
    SIGNALS = ("stateChanged",)


class QLineEdit(QWidget):
    SIGNALS = ("textChanged",)


class QTextEdit(QLineEdit):
    pass


class QProgressBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._value = 0
        self.values = []  # every value shown, for the tests

    def setValue(self, value):
        self._value = int(value)
        self.values.append(self._value)

    def value(self):
        return self._value


class QTableWidgetItem:
    def __init__(self, text=""):
        self._text = str(text)

    def text(self):
        return self._text


class QTableWidget(QWidget):
    SIGNALS = ("cellClicked",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows, self._columns, self._items, self.headers = 0, 0, {}, []

    def setColumnCount(self, count):
        self._columns = int(count)

    def columnCount(self):
        return self._columns

    def setHorizontalHeaderLabels(self, labels):
        self.headers = list(labels)

    def setRowCount(self, count):
        self._rows = int(count)
        self._items = {key: item for key, item in self._items.items() if key[0] < self._rows}

    def rowCount(self):
        return self._rows

    def setItem(self, row, column, item):
        assert 0 <= row < self._rows and 0 <= column < self._columns, (row, column)
        self._items[(row, column)] = item

    def item(self, row, column):
        return self._items.get((row, column))

    def click(self, row, column=0):
        """Test helper: the user clicks a cell."""
        self._emit("cellClicked", row, column)


class _Item:
    def __init__(self):
        self.enabled = True

    def setEnabled(self, enabled):
        self.enabled = bool(enabled)


class _ItemModel:
    def __init__(self, combo):
        self._combo = combo

    def item(self, index):
        return self._combo._items[index][2]


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []  # (label, data, item)
        self._index = -1

    def addItem(self, label, data=None):
        self._items.append((label, data, _Item()))
        if self._index < 0:
            self.setCurrentIndex(0)

    def clear(self):
        self._items = []
        self.setCurrentIndex(-1)

    def count(self):
        return len(self._items)

    def model(self):
        return _ItemModel(self)

    def findData(self, data):
        return next((i for i, item in enumerate(self._items) if item[1] == data), -1)

    def setCurrentIndex(self, index):
        if index != self._index:
            self._index = index
            self._emit("currentIndexChanged", index)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        self.setCurrentIndex(index)

    @property
    def currentData(self):
        return self._items[self._index][1] if 0 <= self._index < len(self._items) else None

    @property
    def currentText(self):
        return self._items[self._index][0] if 0 <= self._index < len(self._items) else ""


class QSpinBox(QWidget):
    SIGNALS = ("valueChanged",)


class QDoubleSpinBox(QSpinBox):
    pass


class QSlider(QSpinBox):
    pass


class QColor:
    def __init__(self, *args):
        self.args = args


class QTimer(QObject):
    SIGNALS = ("timeout",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.active = False
        self.interval = 0
        self.single = False

    def setInterval(self, msec):
        self.interval = msec

    def setSingleShot(self, single):
        self.single = single

    def start(self, msec=None):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def fire(self):
        """Test helper: what the event loop does when the timer elapses."""
        if self.single:
            self.active = False
        self.timeout.emit()

    @staticmethod
    def singleShot(msec, callback):
        callback()


class QVBoxLayout(QObject):
    """Layouts are QObjects: a named one in a .ui is a child that childWidgetVariables finds."""

    def addWidget(self, widget):
        self.widgets = [*getattr(self, "widgets", []), widget]


class QSettings:
    def value(self, key, default=None):
        return default

    def contains(self, key):
        return False


class QIcon:
    def __init__(self, path=""):
        self.path = path


# ----------------------------------------------------------------------------- CTK
class ctkSliderWidget(QWidget):
    """Real behaviour kept: value clamped to the range and rounded to `decimals`."""
    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._minimum, self._maximum, self._value = 0.0, 99.0, 0.0
        self.decimals = 2
        self.singleStep = 1.0
        self.pageStep = 10.0
        self.suffix = ""

    def _set(self, value):
        value = round(min(max(float(value), self._minimum), self._maximum), int(self.decimals))
        if value != self._value:
            self._value = value
            self._emit("valueChanged", value)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        self._set(value)

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, value):
        self._minimum = float(value)
        self._maximum = max(self._maximum, self._minimum)
        self._set(self._value)

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, value):
        self._maximum = float(value)
        self._minimum = min(self._minimum, self._maximum)
        self._set(self._value)

    def setRange(self, minimum, maximum):
        self._minimum, self._maximum = float(minimum), float(max(minimum, maximum))
        self._set(self._value)


class ctkCollapsibleButton(QPushButton):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.collapsed = False


def _ctk_module():
    ctk = types.ModuleType("ctk")
    ctk.ctkSliderWidget = ctkSliderWidget
    ctk.ctkCollapsibleButton = ctkCollapsibleButton
    for name in ("ctkCheckBox", "ctkCheckablePushButton", "ctkDoubleSlider", "ctkDoubleSpinBox", "ctkComboBox",
                 "ctkRangeWidget", "ctkDoubleRangeSlider", "ctkPathLineEdit", "ctkDirectoryButton",
                 "ctkColorPickerButton"):
        setattr(ctk, name, type(name, (QWidget,), {}))
    return ctk


def _qt_module():
    qt = types.ModuleType("qt")
    for klass in (QObject, QWidget, QLabel, QPushButton, QCheckBox, QLineEdit, QTextEdit, QProgressBar,
                  QComboBox, QSpinBox, QDoubleSpinBox, QSlider, QColor, QTimer, QVBoxLayout, QSettings, QIcon,
                  QTableWidget, QTableWidgetItem):
        setattr(qt, klass.__name__, klass)
    qt.QFormLayout = QVBoxLayout
    qt.QDesktopServices = types.SimpleNamespace(openUrl=lambda url: True)
    qt.QUrl = types.SimpleNamespace(fromLocalFile=lambda path: path)
    qt.QFileDialog = types.SimpleNamespace(getExistingDirectory=lambda *args: "")
    qt.Qt = types.SimpleNamespace(WaitCursor=3)
    return qt


# ----------------------------------------------------------------------------- qMRML
class _SortFilterProxyModel:
    def __init__(self):
        self.hiddenNodeIDs = []


class qMRMLNodeComboBox(QWidget):
    SIGNALS = ("currentNodeChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes = ()
        self.mrmlScene = None
        self.noneEnabled = True
        self.addEnabled = False
        self._node = None
        self._proxy = _SortFilterProxyModel()

    def sortFilterProxyModel(self):
        return self._proxy

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        if node is not self._node:
            self._node = node
            self._emit("currentNodeChanged", node)

    def selectableNodes(self):
        """What the user can pick: nodes of the types, minus the hidden IDs (test helper)."""
        hidden = set(self._proxy.hiddenNodeIDs)
        nodes = []
        for node_type in self.nodeTypes:
            collection = self.mrmlScene.GetNodesByClass(node_type)
            collection.UnRegister(self.mrmlScene)  # the caller owns the collection (see nodes.py)
            for index in range(collection.GetNumberOfItems()):
                node = collection.GetItemAsObject(index)
                if node.GetID() not in hidden and node not in nodes:
                    nodes.append(node)
        return nodes


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged",)
    isEntered = True  # as qSlicerScriptedLoadableModuleWidget, the module panel's parent

    def setMRMLScene(self, scene):
        self.mrmlScene = scene
        self._emit("mrmlSceneChanged", scene)

    def setLayout(self, layout):
        self._layout = layout

    def layout(self):
        return getattr(self, "_layout", QVBoxLayout())

    def show(self):
        pass


# ----------------------------------------------------------------------------- .ui files
UI_CLASSES = {
    "QLabel": QLabel, "QPushButton": QPushButton, "QComboBox": QComboBox, "QProgressBar": QProgressBar,
    "QCheckBox": QCheckBox, "QLineEdit": QLineEdit, "QSpinBox": QSpinBox, "QDoubleSpinBox": QDoubleSpinBox,
    "QTableWidget": QTableWidget,
    "ctkSliderWidget": ctkSliderWidget, "ctkCollapsibleButton": ctkCollapsibleButton,
    "qMRMLNodeComboBox": qMRMLNodeComboBox, "qMRMLWidget": qMRMLWidget,
}


def _ui_value(prop):
    child = next(iter(prop), None)
    if child is None:
        return None
    if child.tag in ("double", "number"):
        return float(child.text) if child.tag == "double" else int(child.text)
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "string":
        return child.text or ""
    if child.tag == "stringlist":
        return tuple(s.text for s in child)
    return None


def load_ui(path) -> QWidget:
    """Build stand-in widgets from a Qt Designer file, as slicer.util.loadUI would.

    Properties are applied in the file's order (as uic does), so a slider's range is set
    before its value; dynamic properties (stdset="0", e.g. SlicerParameterName) become
    QObject properties.
    """
    root = ET.parse(path).getroot()

    def build(element, parent):
        klass = UI_CLASSES.get(element.get("class"), QWidget)
        widget = klass(parent)
        widget.objectName = element.get("name")
        for prop in element.findall("property"):
            value = _ui_value(prop)
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), value)
            elif value is not None:
                setattr(widget, prop.get("name"), value)

        def walk(node):  # child widgets sit inside <layout><item> elements
            for sub in node:
                if sub.tag == "widget":
                    build(sub, widget)
                elif sub.tag in ("layout", "item"):
                    if sub.tag == "layout" and sub.get("name"):
                        QVBoxLayout(widget).objectName = sub.get("name")
                    walk(sub)

        walk(element)
        return widget

    top = build(root.find("widget"), None)
    named = {w.objectName: w for w in [top, *top.findChildren(QWidget)]}
    for connection in root.iter("connection"):  # e.g. mrmlSceneChanged -> setMRMLScene
        sender, receiver = named[connection.findtext("sender")], named[connection.findtext("receiver")]
        getattr(sender, connection.findtext("signal").split("(")[0]).connect(
            getattr(receiver, connection.findtext("slot").split("(")[0]))
    return top


def child_widget_variables(widget):
    """slicer.util.childWidgetVariables: one attribute per named descendant QObject (the real
    one walks children(), which holds the layouts too)."""
    ui = types.SimpleNamespace()
    for child in widget.findChildren(None):
        if child.objectName:
            setattr(ui, child.objectName, child)
    return ui


# ----------------------------------------------------------------------------- installing
def _load_package(name: str, folder: Path):
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _ModuleManager(QObject):
    SIGNALS = ("moduleAboutToBeUnloaded",)


class _App(QObject):
    """slicer.app: only what the module and ScriptedLoadableModule call."""
    SIGNALS = ("startupCompleted",)

    def __init__(self):
        super().__init__()
        self._module_manager = _ModuleManager()
        self.override_cursors = []  # every setOverrideCursor, for the tests
        self.layout_manager = None

    def setOverrideCursor(self, cursor):
        self.override_cursors.append(cursor)

    def restoreOverrideCursor(self):
        pass

    def layoutManager(self):
        return self.layout_manager

    def moduleManager(self):
        return self._module_manager

    def startupEnvironment(self):
        return None

    def processEvents(self):
        pass

    def testingEnabled(self):
        return True

    def translate(self, context, text):
        return text


# Modules that install() and load_module_file() put in place; anything else imported
# meanwhile (numpy submodules, ...) stays, as C extensions cannot be imported twice.
PLACED_MODULES = ("qt", "ctk", "slicer.i18n", "slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule",
                  "UADContrastive", "UADContrastiveSlicerLib")


class isolated_modules:
    """Context manager: sys.modules without the stand-ins and Slicer's reference modules
    afterwards, and with whatever they replaced put back."""

    def __enter__(self):
        self._saved = {n: m for n, m in sys.modules.items() if self._placed(n)}
        return self

    @staticmethod
    def _placed(name):
        return any(name == p or name.startswith(p + ".") for p in PLACED_MODULES)

    def __exit__(self, *exc):
        for name in [n for n in sys.modules if self._placed(n)]:
            del sys.modules[name]
        sys.modules.update(self._saved)
        return False


def install(monkeypatch, scene):
    """Put Slicer's real Python (from the reference) and the stand-ins in place.

    Attributes go through `monkeypatch`; run inside `isolated_modules()` so that the
    modules loaded here leave sys.modules afterwards.
    """
    require_reference()
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    importlib.import_module("slicer.util")  # slicer-core's copy of Slicer's util.py

    sys.modules["qt"] = _qt_module()
    sys.modules["ctk"] = _ctk_module()
    for name in ("qMRMLNodeComboBox", "qMRMLWidget"):
        monkeypatch.setattr(slicer, name, globals()[name], raising=False)
    for name in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qSlicerWidget"):
        monkeypatch.setattr(slicer, name, type(name, (QWidget,), {}), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", _App(), raising=False)
    # Slicer's own sources, unchanged, from the reference folder.
    i18n = _load_file("slicer.i18n", REFERENCE_PYTHON / "i18n.py")
    monkeypatch.setattr(slicer, "i18n", i18n, raising=False)
    wrapper = _load_package("slicer.parameterNodeWrapper", REFERENCE_PYTHON / "parameterNodeWrapper")
    monkeypatch.setattr(slicer, "parameterNodeWrapper", wrapper, raising=False)
    scripted = _load_file("slicer.ScriptedLoadableModule", REFERENCE_PYTHON / "ScriptedLoadableModule.py")
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", scripted, raising=False)
    return slicer


def load_module_file(monkeypatch, module_file: Path):
    """Execute UADContrastive.py (after install()) and return it as a module."""
    module_dir = str(module_file.parent)
    if module_dir not in sys.path:
        monkeypatch.syspath_prepend(module_dir)
    return _load_file("UADContrastive", module_file)
